"""Client settings for a cluster, per client, as data (the portal renders them as snippets).

``client_configs(cluster, key=..., secret=...)`` returns::

    {"confluent_kafka": {librdkafka properties},          # also Java-style property names
     "kafka_python":    {KafkaProducer/KafkaConsumer keyword arguments},
     "aiokafka":        {AIOKafkaProducer keyword arguments; "ssl_cafile" -> create_ssl_context(cafile=...)},
     "kcat":            {librdkafka properties for -X / -F},
     "java":            {client.properties}}

On a SASL_SSL cluster every config verifies the broker against the CA bundle saved as
``ca_location`` (default ``kastle-ca.pem``, what ``GET /api/v1/clusters/{id}/ca.pem`` and the
portal download are saved as); host names are verified too (librdkafka's default).
"""

from __future__ import annotations

from typing import Any

from clusters.models import Cluster

from .services import CA_FILENAME, SASL_SSL

KEY_PLACEHOLDER = "<API_KEY>"
SECRET_PLACEHOLDER = "<API_SECRET>"


def client_configs(
    cluster: Cluster,
    *,
    key: str = KEY_PLACEHOLDER,
    secret: str = SECRET_PLACEHOLDER,
    mechanism: str = "PLAIN",
    ca_location: str = CA_FILENAME,
) -> dict[str, dict[str, Any]]:
    bootstrap = cluster.bootstrap_servers or ""
    protocol = cluster.security_protocol or "SASL_PLAINTEXT"
    tls = protocol == SASL_SSL
    librdkafka: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        "sasl.mechanism": mechanism,
        "sasl.username": key,
        "sasl.password": secret,
    }
    if tls:
        librdkafka["ssl.ca.location"] = ca_location
        librdkafka["ssl.endpoint.identification.algorithm"] = "https"
    python_common: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": key,
        "sasl_plain_password": secret,
    }
    kafka_python = dict(python_common)
    aiokafka = dict(python_common)
    if tls:
        kafka_python.update(ssl_cafile=ca_location, ssl_check_hostname=True)
        aiokafka["ssl_cafile"] = ca_location  # ssl_context=aiokafka.helpers.create_ssl_context(cafile=...)
    module = "plain.PlainLoginModule" if mechanism == "PLAIN" else "scram.ScramLoginModule"
    java: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        "sasl.mechanism": mechanism,
        "sasl.jaas.config": (
            f"org.apache.kafka.common.security.{module} required "
            f'username="{key}" password="{secret}";'
        ),
    }
    if tls:
        java.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": ca_location})
    return {
        "confluent_kafka": librdkafka,
        "kafka_python": kafka_python,
        "aiokafka": aiokafka,
        "kcat": {k: v for k, v in librdkafka.items() if k != "bootstrap.servers"} | {"bootstrap": bootstrap},
        "java": java,
    }


def kcat_args(cluster: Cluster, **kwargs: Any) -> list[str]:
    """``kcat`` arguments for the cluster: ``-b BOOTSTRAP -X key=value ...``."""
    conf = client_configs(cluster, **kwargs)["kcat"]
    args = ["-b", conf.pop("bootstrap")]
    for name, value in conf.items():
        args += ["-X", f"{name}={value}"]
    return args
