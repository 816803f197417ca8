"""`kastle`: the command-line tool for Kastle.

It talks to the control plane only through the public REST API (`/api/v1/`) and to a cluster's
brokers with a real Kafka client (confluent-kafka). It imports nothing from the control plane.
"""
