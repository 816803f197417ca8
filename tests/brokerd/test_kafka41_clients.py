"""The three Python Kafka clients see brokerd as an Apache Kafka 4.1 broker, and their admin
clients read the broker's configs as Kafka reports them.

- kafka-python infers the broker release from ApiVersions (``check_version``);
- aiokafka (0.13+) no longer names a release: it keeps the broker's ranges per connection and
  picks each request's version from them;
- librdkafka enables its protocol features from ApiVersions and uses its highest versions.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from brokerd_wire import KAFKA_41
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource

# kafka-python 3 loads its schemas with importlib.resources' deprecated helpers (attributed to
# importlib, not kafka): import it inside the tests, under this filter.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

STATIC, DEFAULT, DYNAMIC = "STATIC_BROKER_CONFIG", "DEFAULT_CONFIG", "DYNAMIC_BROKER_CONFIG"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    from tests.brokerd.conftest import Broker

    b = Broker(
        tmp_path_factory.mktemp("kafka41"),
        settings={
            "group.initial.rebalance.delay.ms": 0,  # Kafka's development config
            "num.partitions": 3,
            "super.users": "User:ANONYMOUS",
        },
    )
    b.start()
    yield b
    b.stop()


def test_kafka_python_infers_kafka_4_1_and_produces_by_topic_id(broker) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.protocol.consumer import FetchRequest
    from kafka.protocol.producer import ProduceRequest

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert admin._client.check_version() == (4, 1)
        negotiated = admin._client._manager.broker_version_data
        assert (negotiated.api_version(ProduceRequest), negotiated.api_version(FetchRequest)) == (13, 18)
    finally:
        admin.close()
    # so its producer names the topic by id (Produce v13) and its consumer fetches at v18
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    sent = [producer.send("by-id", f"m{i}".encode()).get(timeout=15) for i in range(3)]
    producer.close()
    assert [m.offset for m in sent if m.partition == sent[0].partition][:1] == [0]
    consumer = KafkaConsumer("by-id", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10000)
    try:
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == 3:
                break
        assert sorted(values) == [b"m0", b"m1", b"m2"]
    finally:
        consumer.close()


def test_aiokafka_negotiates_from_kafka_41_ranges(broker) -> None:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.metadata import MetadataRequest

    async def run():
        client = AIOKafkaClient(bootstrap_servers=broker.bootstrap)
        await client.bootstrap()
        try:
            conn = await client._get_conn(1)
            # Metadata at aiokafka's own highest version: the range it was given allows it
            prepared = MetadataRequest([]).prepare(conn._versions)
            return conn._versions, prepared
        finally:
            await client.close()

    versions, prepared = asyncio.run(run())
    assert versions == KAFKA_41
    assert max(c.API_VERSION for c in MetadataRequest._CLASSES) == prepared.API_VERSION


def test_librdkafka_detects_kafka_4_features(broker) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("kafka41.librdkafka")
    log.addHandler(Collect())
    log.setLevel(logging.DEBUG)
    log.propagate = False
    producer = Producer({"bootstrap.servers": broker.bootstrap, "debug": "feature,protocol", "logger": log})
    producer.produce("librdkafka-features", b"x")
    assert producer.flush(15) == 0
    text = "\n".join(lines)
    for expected in ("ApiKey Produce (0) Versions 0..13", "ApiKey Fetch (1) Versions 4..18",
                     "ApiKey Metadata (3) Versions 0..13"):
        assert expected in text
    # Metadata v13 (Kafka 4.0, KIP-1102) is librdkafka's highest: it is used once advertised
    assert "Sent MetadataRequest (v13" in text
    assert "Enabling feature MsgVer2" in text and "Enabling feature IdempotentProducer" in text


def test_kafka_python_admin_lists_config_resources_and_describes_broker_configs(broker) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KafkaPythonResource
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic("listed", 1, 1)])
        listed = admin.list_config_resources()
        assert listed["broker"] == ["1"] and "listed" in listed["topic"]
        assert admin.list_config_resources(["BROKER"]) == {"broker": ["1"]}
        described = admin.describe_configs([KafkaPythonResource("BROKER", "1")], include_synonyms=True,
                                           config_filter="all")
        configs = described["broker"]["1"]
    finally:
        admin.close()
    listener = f"PLAINTEXT://{broker.bootstrap}"
    expected = {
        "listeners": (listener, STATIC),
        "advertised.listeners": (listener, STATIC),
        "log.dirs": (str(broker.data_dir.resolve()), STATIC),
        "num.partitions": ("3", STATIC),
        "group.initial.rebalance.delay.ms": ("0", STATIC),
        "default.replication.factor": ("1", DEFAULT),
        "min.insync.replicas": ("1", DEFAULT),
        "auto.create.topics.enable": ("true", DEFAULT),
        "message.max.bytes": ("1048588", DEFAULT),
        "group.min.session.timeout.ms": ("6000", DEFAULT),
    }
    assert {k: (configs[k]["value"], configs[k]["config_source"]) for k in expected} == expected
    assert [(s["value"], s["source"]) for s in configs["group.initial.rebalance.delay.ms"]["synonyms"]] == [
        ("0", STATIC), ("3000", DEFAULT)]
    assert configs["listeners"]["read_only"] and configs["log.dirs"]["config_type"] == "LIST"


def test_confluent_admin_describes_broker_configs_and_alters_dynamic_ones(broker) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    [future] = admin.describe_configs([resource]).values()
    configs = future.result(timeout=15)
    listener = f"PLAINTEXT://{broker.bootstrap}"
    assert (configs["listeners"].value, configs["listeners"].source) == (
        listener, ConfigSource.STATIC_BROKER_CONFIG.value)
    assert configs["advertised.listeners"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["log.dirs"].value == str(broker.data_dir.resolve())
    assert (configs["num.partitions"].value, configs["num.partitions"].source) == (
        "3", ConfigSource.STATIC_BROKER_CONFIG.value)
    for key, value in (("min.insync.replicas", "1"), ("message.max.bytes", "1048588"),
                       ("default.replication.factor", "1"), ("group.min.session.timeout.ms", "6000")):
        assert (configs[key].value, configs[key].source) == (value, ConfigSource.DEFAULT_CONFIG.value)
    assert configs["group.initial.rebalance.delay.ms"].value == "0"
    assert configs["group.initial.rebalance.delay.ms"].is_read_only
    # a dynamic broker config, by a super user (ANONYMOUS here), as before
    change = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
        ConfigEntry("log.cleaner.backoff.ms", "20000", incremental_operation=AlterConfigOpType.SET)])
    [future] = admin.incremental_alter_configs([change]).values()
    future.result(timeout=15)
    [future] = admin.describe_configs([resource]).values()
    entry = future.result(timeout=15)["log.cleaner.backoff.ms"]
    assert (entry.value, entry.source) == ("20000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
