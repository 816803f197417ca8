from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"
    verbose_name = "Transactions (seen and aborted on the brokers through the Kafka protocol)"
