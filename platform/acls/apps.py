from django.apps import AppConfig


class AclsConfig(AppConfig):
    name = "acls"
    verbose_name = "ACLs"
