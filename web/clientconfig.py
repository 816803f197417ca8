"""Copy-ready client configuration for a cluster and an API key, in each client's own dialect.

The settings themselves come from `pki.clients.client_configs` (one definition for the portal,
docs and tests); this module only writes them out as code. The secret is a placeholder unless the
caller has it (right after the key is created: the downloads offered then are the only time the
real secret is ever written out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusters.models import Cluster
from pki.clients import KEY_PLACEHOLDER, SECRET_PLACEHOLDER, client_configs


@dataclass(frozen=True)
class Snippet:
    id: str
    title: str
    filename: str
    text: str


def _properties(title: str, conf: dict[str, Any]) -> str:
    return "\n".join([f"# {title}", *(f"{k}={v}" for k, v in conf.items())]) + "\n"


def librdkafka_properties(cluster: Cluster, key: str, secret: str = SECRET_PLACEHOLDER) -> str:
    conf = client_configs(cluster, key=key, secret=secret)["confluent_kafka"]
    title = f"Kastle cluster {cluster.name} ({cluster.public_id}); librdkafka: kcat -F, confluent-kafka"
    return _properties(title, conf)


def registry_properties(registry_url: str | None, key: str, secret: str) -> dict[str, str]:
    """Confluent's serializer settings for the cluster's Schema Registry (none before it runs)."""
    if not registry_url:
        return {}
    return {
        "schema.registry.url": registry_url,
        "basic.auth.credentials.source": "USER_INFO",
        "basic.auth.user.info": f"{key}:{secret}",
    }


def java_properties(
    cluster: Cluster, key: str, secret: str = SECRET_PLACEHOLDER, *, registry_url: str | None = None
) -> str:
    conf = {
        **client_configs(cluster, key=key, secret=secret)["java"],
        **registry_properties(registry_url, key, secret),
    }
    return _properties(f"Kastle cluster {cluster.name} ({cluster.public_id}); Java client.properties", conf)


def _py_dict(conf: dict[str, Any]) -> str:
    return "{\n" + "".join(f"    {k!r}: {v!r},\n".replace("'", '"') for k, v in conf.items()) + "}"


def _py_kwargs(conf: dict[str, Any]) -> str:
    return "dict(\n" + "".join(f"    {k}={v!r},\n".replace("'", '"') for k, v in conf.items()) + ")"


def _schema_registry(config: dict[str, Any], registry_url: str, key: str, secret: str) -> str:
    return f"""from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

registry = SchemaRegistryClient({{
    "url": "{registry_url}",
    "basic.auth.user.info": "{key}:{secret}",
}})
schema = '{{"type": "record", "name": "Order", "fields": [{{"name": "amount", "type": "int"}}]}}'
serialize = AvroSerializer(registry, schema)  # registers the schema under my-topic-value

config = {_py_dict(config)}
producer = Producer(config)
value = serialize({{"amount": 42}}, SerializationContext("my-topic", MessageField.VALUE))
producer.produce("my-topic", key=b"order-1", value=value)
producer.flush(10)
"""


def snippets(
    cluster: Cluster, key: str | None, secret: str = SECRET_PLACEHOLDER, *, registry_url: str | None = None
) -> list[Snippet]:
    configs = client_configs(cluster, key=key or KEY_PLACEHOLDER, secret=secret)
    confluent = f"""from confluent_kafka import Consumer, Producer

config = {_py_dict(configs["confluent_kafka"])}

producer = Producer(config)
producer.produce("my-topic", key=b"order-1", value=b'{{"amount": 42}}')
producer.flush(10)

consumer = Consumer({{**config, "group.id": "my-app", "auto.offset.reset": "earliest"}})
consumer.subscribe(["my-topic"])
message = consumer.poll(10)
print(message.value() if message else "no message yet")
consumer.close()
"""
    aio = dict(configs["aiokafka"])
    cafile = aio.pop("ssl_cafile", None)
    aio_setup = aio_import = ""
    if cafile:
        aio_import = "from aiokafka.helpers import create_ssl_context\n"
        aio_setup = f'config["ssl_context"] = create_ssl_context(cafile="{cafile}")\n'
    aiokafka = f"""import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
{aio_import}
config = {_py_kwargs(aio)}
{aio_setup}

async def main():
    producer = AIOKafkaProducer(**config)
    await producer.start()
    await producer.send_and_wait("my-topic", b'{{"amount": 42}}', key=b"order-1")
    await producer.stop()

    consumer = AIOKafkaConsumer("my-topic", group_id="my-app", auto_offset_reset="earliest", **config)
    await consumer.start()
    message = await consumer.getone()
    print(message.value)
    await consumer.stop()


asyncio.run(main())
"""
    kafka_python = f"""from kafka import KafkaConsumer, KafkaProducer

config = {_py_kwargs(configs["kafka_python"])}

producer = KafkaProducer(**config)
producer.send("my-topic", key=b"order-1", value=b'{{"amount": 42}}')
producer.flush()

consumer = KafkaConsumer("my-topic", group_id="my-app", auto_offset_reset="earliest", **config)
for message in consumer:
    print(message.value)
    break
"""
    kcat_conf = dict(configs["kcat"])
    bootstrap = kcat_conf.pop("bootstrap")
    auth = " ".join(f"-X {k}='{v}'" if k == "sasl.password" else f"-X {k}={v}" for k, v in kcat_conf.items())
    kcat = f"""# list brokers and topics
kcat -b {bootstrap} {auth} -L

# produce one message (key:value)
echo 'order-1:{{"amount": 42}}' | kcat -b {bootstrap} {auth} -t my-topic -K: -P

# read the topic from the beginning
kcat -b {bootstrap} {auth} -t my-topic -C -o beginning -e
"""
    registry = []
    if registry_url:
        text = _schema_registry(configs["confluent_kafka"], registry_url, key or KEY_PLACEHOLDER, secret)
        registry = [Snippet("schema-registry", "Schema Registry (Avro)", "kastle_schema_registry.py", text)]
    return [
        Snippet("confluent", "confluent-kafka (Python)", "kastle_confluent.py", confluent),
        *registry,
        Snippet("aiokafka", "aiokafka (Python, asyncio)", "kastle_aiokafka.py", aiokafka),
        Snippet("kafka-python", "kafka-python", "kastle_kafka_python.py", kafka_python),
        Snippet("kcat", "kcat", "kastle_kcat.sh", kcat),
        Snippet(
            "java",
            "Java client.properties",
            "client.properties",
            java_properties(cluster, key or KEY_PLACEHOLDER, secret, registry_url=registry_url),
        ),
    ]
