from django.apps import AppConfig


class ConsumerGroupsConfig(AppConfig):
    name = "consumergroups"
    verbose_name = "Consumer groups (managed on the brokers through the Kafka protocol)"
