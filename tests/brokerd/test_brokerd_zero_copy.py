"""Fetch by sendfile from segment files (plaintext listeners), on both event loops and turned off.

Each client consumes what concurrent producers wrote (small and large records, compressed and
not, many partitions, segments rolling); the zero-copy byte counter on /metrics shows whether
the records really went by sendfile. Retention deleting segments under a reading consumer
neither corrupts a response nor stops the broker.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.brokerd.test_brokerd_clients import create_topic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

PARTITIONS = 6
SMALL = 300  # records per producer of a few bytes
LARGE = 40  # records per producer of 200 KB


def zero_copy_bytes(broker) -> float:
    with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(r"^kastle_fetch_zero_copy_bytes_total (\S+)$", text, re.M)
    assert m, "kastle_fetch_zero_copy_bytes_total missing from /metrics"
    return float(m.group(1))


def produce_concurrently(bootstrap: str, topic: str) -> dict[bytes, int]:
    """Two producers (lz4 and uncompressed) at once; returns {value: partition}."""
    expected: dict[bytes, int] = {}
    errors: list = []

    def run(name: str, codec: str) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "compression.type": codec})
        values = [f"{name}-small-{i}".encode() for i in range(SMALL)]
        values += [f"{name}-large-{i}-".encode() + bytes([i % 251]) * 200_000 for i in range(LARGE)]
        for i, value in enumerate(values):
            part = i % PARTITIONS
            expected[value] = part
            producer.produce(topic, value, partition=part,
                             on_delivery=lambda err, _msg: err and errors.append(err))
            producer.poll(0)
        assert producer.flush(30) == 0

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("a", "lz4"), ("b", "none"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return expected


def consume_confluent(bootstrap: str, topic: str, n: int) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "zc", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 50, "max.partition.fetch.bytes": 300_000})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < n and time.monotonic() < deadline:
            for msg in c.consume(1000, 0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                out.append((msg.partition(), msg.value()))
    finally:
        c.close()
    return out


def consume_kafka_python(bootstrap: str, topic: str, n: int) -> list[tuple[int, bytes]]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                      consumer_timeout_ms=5000, fetch_max_wait_ms=50, max_partition_fetch_bytes=300_000)
    try:
        c.assign([KTP(topic, p) for p in range(PARTITIONS)])
        out = []
        for msg in c:
            out.append((msg.partition, msg.value))
            if len(out) >= n:
                break
        return out
    finally:
        c.close()


def consume_aiokafka(bootstrap: str, topic: str, n: int) -> list[tuple[int, bytes]]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as ATP

    async def run() -> list[tuple[int, bytes]]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=50,
                             max_partition_fetch_bytes=300_000)
        await c.start()
        try:
            c.assign([ATP(topic, p) for p in range(PARTITIONS)])
            out: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + 30
            while len(out) < n and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    out.extend((m.partition, m.value) for m in msgs)
            return out
        finally:
            await c.stop()

    return asyncio.run(run())


MODES = [
    pytest.param({"fetch.zero.copy": True, "event.loop": "uvloop"}, id="sendfile-uvloop"),
    pytest.param({"fetch.zero.copy": True, "event.loop": "asyncio"}, id="sendfile-asyncio"),
    pytest.param({"fetch.zero.copy": False}, id="copy"),
]


@pytest.mark.parametrize("settings", MODES)
def test_clients_consume_what_concurrent_producers_wrote(broker_factory, settings) -> None:
    broker = broker_factory(settings=settings)
    # small segments: the records span many rolled segments
    create_topic(broker.bootstrap, "zc", PARTITIONS, {"segment.bytes": "1048576"})
    expected = produce_concurrently(broker.bootstrap, "zc")
    n = len(expected)
    for consume in (consume_confluent, consume_kafka_python, consume_aiokafka):
        got = consume(broker.bootstrap, "zc", n)
        assert len(got) == n, (consume.__name__, len(got), n)
        assert {v: p for p, v in got} == expected, consume.__name__
        # per partition, each producer's records arrive in the order they were sent
        for p in range(PARTITIONS):
            for name in (b"a-small-", b"b-small-", b"a-large-", b"b-large-"):
                seq = [int(v[len(name):].split(b"-")[0]) for q, v in got if q == p and v.startswith(name)]
                assert seq == sorted(seq), (consume.__name__, p, name)
    sent = zero_copy_bytes(broker)
    if settings["fetch.zero.copy"]:
        assert sent > 2 * LARGE * 200_000, sent  # most of the records went by sendfile
    else:
        assert sent == 0


def test_retention_deletes_segments_under_a_reading_consumer(broker_factory) -> None:
    broker = broker_factory(settings={"fetch.zero.copy": True})
    create_topic(broker.bootstrap, "ret", 1, {"segment.bytes": "1048576"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})
    value = b"r" * 10_000
    for i in range(600):
        producer.produce("ret", value + str(i).encode(), partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ret", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 50, "max.partition.fetch.bytes": 150_000,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("ret", 0, 0)])
    seen: list[int] = []
    deleted = False
    try:
        deadline = time.monotonic() + 30
        while (not seen or seen[-1] < 599) and time.monotonic() < deadline:
            for msg in c.consume(50, 0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                assert msg.value()[:10_000] == value
                seen.append(int(msg.value()[10_000:]))
            if not deleted and len(seen) >= 50:
                # delete the segments ahead of the consumer while its fetches are in flight
                (fut,) = admin.delete_records([TopicPartition("ret", 0, 400)]).values()
                assert fut.result(10).low_watermark == 400
                deleted = True
    finally:
        c.close()
    assert deleted and seen[-1] == 599, seen[-5:]
    assert seen == sorted(seen)  # whatever was read before the deletion, then from 400 on
    assert set(range(400, 600)) <= set(seen)  # nothing after the new log start is lost
    assert zero_copy_bytes(broker) > 0
    assert broker.healthz() == 200
