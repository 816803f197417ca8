"""Real clients against a real brokerd: confluent-kafka, aiokafka, kafka-python and kcat."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# kafka-python 3 loads its protocol schemas with importlib.resources' deprecated helpers; the
# warning is attributed to importlib, not kafka, so the project-wide filter does not catch it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


def create_topic(bootstrap: str, name: str, partitions: int, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=5)
    futures[name].result(10)


def produce_confluent(bootstrap: str, topic: str, messages: list[dict], **conf: object) -> list:
    delivered: list = []
    errors: list = []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    for m in messages:
        producer.produce(topic, on_delivery=on_delivery, **m)
    assert producer.flush(15) == 0
    assert not errors, errors
    return delivered


def consume_assigned(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 15) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append(msg)
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_keys_headers_codecs_across_partitions(broker, codec: str) -> None:
    topic = f"orders-{codec}"
    create_topic(broker.bootstrap, topic, 3)
    messages = [
        {
            "key": f"k{i}".encode(),
            "value": f"value-{i}-".encode() * 20,
            "partition": i % 3,
            "headers": [("h", f"{i}".encode()), ("empty", b"")],
        }
        for i in range(60)
    ]
    delivered = produce_confluent(broker.bootstrap, topic, messages, **{"compression.type": codec})
    assert len(delivered) == 60
    got = consume_assigned(broker.bootstrap, topic, 3, 60)
    by_key = {m.key(): m for m in got}
    assert len(by_key) == 60
    for i in range(60):
        m = by_key[f"k{i}".encode()]
        assert m.value() == f"value-{i}-".encode() * 20
        assert m.partition() == i % 3
        assert m.headers() == [("h", f"{i}".encode()), ("empty", b"")]
    # offsets are dense per partition
    for p in range(3):
        assert sorted(m.offset() for m in got if m.partition() == p) == list(range(20))


def test_timestamps_and_list_offsets_by_time(broker) -> None:
    topic = "ts"
    create_topic(broker.bootstrap, topic, 1)
    base = 1_700_000_000_000
    # one record per batch, strictly increasing timestamps, plus one out-of-order maximum
    stamps = [base + i * 1000 for i in range(10)]
    stamps[4] = base + 50_000  # the max timestamp sits at offset 4
    for ts in stamps:
        produce_confluent(
            broker.bootstrap, topic, [{"value": str(ts).encode(), "timestamp": ts}], **{"linger.ms": 0}
        )
    got = consume_assigned(broker.bootstrap, topic, 1, 10)
    assert [m.timestamp()[1] for m in got] == stamps
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x"})
    try:
        q = consumer.offsets_for_times([TopicPartition(topic, 0, base + 2500)], timeout=10)
        assert q[0].offset == 3  # first record with timestamp >= base+2500
        q = consumer.offsets_for_times([TopicPartition(topic, 0, base)], timeout=10)
        assert q[0].offset == 0
        q = consumer.offsets_for_times([TopicPartition(topic, 0, base + 60_000)], timeout=10)
        assert q[0].offset == -1  # none: end
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, 10)
    finally:
        consumer.close()
    # max timestamp (ListOffsets v7+, -3) through kafka-python's raw protocol is covered in the wire tests


def test_create_time_is_kept_and_log_append_time_is_stamped(broker) -> None:
    create_topic(broker.bootstrap, "lat", 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_confluent(broker.bootstrap, "lat", [{"value": b"x", "timestamp": 1000}])
    (msg,) = consume_assigned(broker.bootstrap, "lat", 1, 1)
    kind, ts = msg.timestamp()
    assert kind == 2  # TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000


def test_create_and_delete_topics_with_admin_clients(broker) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = admin.create_topics([NewTopic("made", 4, 1)], validate_only=True)
    fs["made"].result(10)
    assert "made" not in admin.list_topics(timeout=10).topics
    fs = admin.create_topics([NewTopic("made", 4, 1, config={"retention.ms": "60000"})])
    fs["made"].result(10)
    md = admin.list_topics(timeout=10)
    assert len(md.topics["made"].partitions) == 4
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic("made", 1, 1)])["made"].result(10)
    assert info.value.args[0].name() == "TOPIC_ALREADY_EXISTS"
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic("badcfg", 1, 1, config={"no.such": "1"})])["badcfg"].result(10)
    assert info.value.args[0].name() == "INVALID_CONFIG"
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"].result(10)
    assert info.value.args[0].name() == "TOPIC_EXCEPTION"  # librdkafka's name for INVALID_TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic("rf3", 1, 3)])["rf3"].result(10)
    assert info.value.args[0].name() == "INVALID_REPLICATION_FACTOR"

    produce_confluent(broker.bootstrap, "made", [{"value": b"v", "partition": 2}])
    partition_dir = broker.data_dir / "made-2"
    assert partition_dir.exists()
    admin.delete_topics(["made"], operation_timeout=5)["made"].result(10)
    assert "made" not in admin.list_topics(timeout=10).topics
    assert not any(p.name.startswith("made-") for p in broker.data_dir.iterdir())
    with pytest.raises(KafkaException) as info:
        admin.delete_topics(["made"])["made"].result(10)
    assert info.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"

    # kafka-python's admin client too
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic

    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        kadmin.create_topics([KNewTopic("kp", 2, 1)])
        assert "kp" in kadmin.list_topics()
        kadmin.delete_topics(["kp"])
        assert "kp" not in kadmin.list_topics()
    finally:
        kadmin.close()


def test_auto_create_on_by_default(broker) -> None:
    produce_confluent(broker.bootstrap, "auto-made", [{"value": b"x"}])
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["auto-made"].partitions) == 1


def test_auto_create_off(broker_factory) -> None:
    b = broker_factory(settings={"auto.create.topics.enable": False, "num.partitions": 2})
    producer = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 1500})
    errors = []
    producer.produce("nope", b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert "nope" not in md.topics
    # an explicit CreateTopics with -1 partitions uses num.partitions
    create_topic(b.bootstrap, "explicit", -1)
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["explicit"].partitions) == 2


def test_aiokafka_produce_and_consume(broker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    create_topic(broker.bootstrap, "aio", 2)

    async def run() -> list:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(
                    "aio",
                    f"v{i}".encode(),
                    key=f"k{i}".encode(),
                    partition=i % 2,
                    headers=[("n", str(i).encode())],
                )
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            consumer.assign([ATP("aio", 0), ATP("aio", 1)])
            out = []
            while len(out) < 20:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 10)
                for msgs in batch.values():
                    out.extend(msgs)
            return out
        finally:
            await consumer.stop()

    got = asyncio.run(run())
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(20))
    assert all(m.headers == (("n", m.value[1:]),) for m in got)


def test_kafka_python_produce_and_consume(broker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    create_topic(broker.bootstrap, "kpy", 2)
    # kafka-python 3 defaults to idempotence, which needs InitProducerId (idempotent producers)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", compression_type="lz4", enable_idempotence=False
    )
    try:
        futures = [
            producer.send(
                "kpy", key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2, headers=[("n", b"1")]
            )
            for i in range(20)
        ]
        metas = [f.get(timeout=10) for f in futures]
    finally:
        producer.close()
    assert sorted(m.offset for m in metas if m.partition == 0) == list(range(10))
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        fetch_max_wait_ms=50,
    )
    try:
        consumer.assign([KTP("kpy", 0), KTP("kpy", 1)])
        got = list(consumer)
    finally:
        consumer.close()
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(20))
    assert all(m.headers == [("n", b"1")] for m in got)


def test_kcat_produce_consume_and_metadata(broker) -> None:
    lines = "\n".join(f"key{i}:value{i}" for i in range(10)) + "\n"
    subprocess.run(
        ["kcat", "-P", "-b", broker.bootstrap, "-t", "kc", "-K:", "-z", "snappy"],
        input=lines.encode(),
        check=True,
        timeout=30,
    )
    out = subprocess.run(
        ["kcat", "-C", "-b", broker.bootstrap, "-t", "kc", "-e", "-f", "%o %k %s\n"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    assert out.splitlines() == [f"{i} key{i} value{i}" for i in range(10)]
    meta = subprocess.run(
        ["kcat", "-L", "-b", broker.bootstrap, "-t", "kc"], capture_output=True, check=True, timeout=30
    ).stdout.decode()
    assert f"broker 1 at {broker.bootstrap}" in meta
    assert 'topic "kc" with 1 partitions' in meta


def test_confluent_offset_out_of_range_resets(broker) -> None:
    """An out-of-range Fetch answers error 1 with an empty (never null) record set, as Kafka.

    librdkafka fails a whole Fetch response on a null record set ("invalid MessageSetSize -1"),
    so it would never see OFFSET_OUT_OF_RANGE and never apply ``auto.offset.reset``.
    """
    create_topic(broker.bootstrap, "oor", 1)
    produce_confluent(broker.bootstrap, "oor", [{"value": b"v0"}, {"value": b"v1"}])
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        consumer.assign([TopicPartition("oor", 0, 100)])
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.value()))
        assert got == [(0, b"v0"), (1, b"v1")]
    finally:
        consumer.close()
