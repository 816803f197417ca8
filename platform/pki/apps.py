from django.apps import AppConfig


class PkiConfig(AppConfig):
    name = "pki"
    label = "pki"
    verbose_name = "TLS certificates"
