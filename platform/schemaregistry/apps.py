from django.apps import AppConfig


class SchemaRegistryConfig(AppConfig):
    name = "schemaregistry"
    verbose_name = "Schema Registry"

    def ready(self) -> None:
        from sharedkit import kafka_admin

        from . import storage

        kafka_admin.on_forget(storage.forget)
