"""Compacted topics on a real brokerd with real clients (confluent-kafka and kafka-python)."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from compaction_checks import check_indexes, read_partition
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

FAST_CLEANER = {"log.cleaner.backoff.ms": 50, "log.retention.check.interval.ms": 100}


def metric(broker, name: str, topic: str, partition: int = 0) -> float | None:
    with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = rf'^{name}{{partition="{partition}",topic="{topic}"}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else None


def create(broker, topic: str, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(10)


def produce(broker, topic: str, records: list[tuple[bytes | None, bytes | None]], **conf) -> list:
    """Produce in order; returns (key, value, offset) per record, from the delivery reports."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, **conf})
    out: list = []
    errors: list = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            out.append((msg.key(), msg.value(), msg.offset()))

    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    assert producer.flush(10) == 0
    assert not errors, errors[:3]
    return out


def consume_confluent(broker, topic: str, offset: int = 0, timeout: float = 10) -> list[tuple]:
    """(offset, key, value) of everything from ``offset`` to the end."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "verify",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, offset)])
        out: list[tuple] = []
        deadline = time.monotonic() + timeout
        while (not out or out[-1][0] < end - 1) and end > offset:
            assert time.monotonic() < deadline, f"read stopped at {out[-1][0] if out else None} of {end}"
            for msg in consumer.consume(500, 0.2):
                assert not msg.error(), msg.error()
                out.append((msg.offset(), msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def consume_kafka_python(broker, topic: str, offset: int = 0) -> list[tuple]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    try:
        tp = KTP(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        end = consumer.end_offsets([tp])[tp]
        out: list[tuple] = []
        for msg in consumer:
            out.append((msg.offset, msg.key, msg.value))
            if msg.offset >= end - 1:
                break
        return out
    finally:
        consumer.close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_consumers_see_each_keys_latest_value_at_its_offset_and_deleted_keys_go(broker_factory) -> None:
    broker = broker_factory(settings=FAST_CLEANER)
    topic = "table"
    create(broker, topic, **{"cleanup.policy": "compact", "segment.ms": "100",
                             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1500"})
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    superseded: list[int] = []
    for version in range(8):
        records = [(f"key-{k}".encode(), f"v{version}-{k}".encode() * 8) for k in range(40)]
        if version == 7:  # the last round deletes every fifth key
            records = [(key, None if k % 5 == 0 else value) for k, (key, value) in enumerate(records)]
        for key, value, offset in produce(broker, topic, records):
            if key in latest:
                superseded.append(latest[key][0])
            latest[key] = (offset, value)
        time.sleep(0.12)  # past segment.ms: the next produce rolls the segment
    produce(broker, topic, [(b"roll", b"x")])  # seals the segment holding the last round
    latest[b"roll"] = (latest[b"key-39"][0] + 1, b"x")
    live = {k: v for k, v in latest.items() if v[1] is not None}

    def compacted() -> list | None:
        seen = consume_confluent(broker, topic)
        keys = [k for _o, k, _v in seen]
        return seen if len(keys) == len(set(keys)) else None

    seen = wait_until(compacted, 20, "a cleaner pass over the whole log")
    assert {k: (o, v) for o, k, v in seen} == latest  # tombstones are still there
    assert metric(broker, "kastle_log_cleaner_passes_total", topic) >= 1
    assert metric(broker, "kastle_log_cleaner_bytes_cleaned_total", topic) > 0

    # Once delete.retention.ms has passed since that pass, the tombstones go too.
    def tombstones_gone() -> list | None:
        seen = consume_confluent(broker, topic)
        return seen if all(v is not None for _o, _k, v in seen) else None

    seen = wait_until(tombstones_gone, 20, "tombstones to pass delete.retention.ms")
    assert {k: (o, v) for o, k, v in seen} == live
    assert {k: (o, v) for o, k, v in consume_kafka_python(broker, topic)} == live

    # A consumer positioned inside a removed range moves on to the next record kept.
    kept = sorted(o for o, _v in live.values())
    for removed in (superseded[0], superseded[len(superseded) // 2], superseded[-1]):
        following = next(o for o in kept if o > removed)
        assert consume_confluent(broker, topic, removed)[0][0] == following
        assert consume_kafka_python(broker, topic, removed)[0][0] == following
    assert check_indexes(broker.data_dir / f"{topic}-0") > 0


def bomb() -> bytearray:
    """A gzip batch of one record whose payload inflates to 80 MiB of zeros (about 80 KB sent)."""
    import gzip
    import struct

    import crc32c

    payload = gzip.compress(b"\0" * (80 << 20), compresslevel=9)
    after_crc = struct.pack(">hiqqqhii", 1, 0, 0, 0, -1, -1, -1, 1) + payload
    head = struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), -1, 2, crc32c.crc32c(after_crc))
    return bytearray(head + after_crc)


def test_keyless_records_are_refused_with_invalid_record(broker_factory) -> None:
    from brokerd_wire import Wire, make_batch
    from test_brokerd_wire import produce_one

    broker = broker_factory()
    create(broker, "keyed", **{"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0})
    errors = []
    producer.produce("keyed", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)  # (a batch holding a keyless record is refused whole, as Kafka does)
    producer.produce("keyed", key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD
    assert errors[1] is None

    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False, retries=0)
    try:
        with pytest.raises(InvalidRecordError):
            kp.send("keyed", value=b"no key").get(timeout=10)
        assert kp.send("keyed", key=b"k2", value=b"v").get(timeout=10).offset >= 1
    finally:
        kp.close()

    # The record errors name each keyless record of the batch (Produce v8+), not the keyed one.
    with Wire(broker.port) as wire:
        batch = bytearray(make_batch([(b"a", b"1"), (None, b"2"), (b"c", b"3"), (None, b"4")]))
        part = produce_one(wire, "keyed", 0, batch, version=9)
        assert part.error_code == 87 and part.base_offset == -1
        assert [e.batch_index for e in part.record_errors] == [1, 3]
        assert "without key" in part.record_errors[0].batch_index_error_message
        assert "2 record errors" in part.error_message
        part = produce_one(wire, "keyed", 0, bytearray(make_batch([(None, b"x")])), version=7)
        assert part.error_code == 87
        # A batch that would decompress to gigabytes is refused, and the broker carries on.
        part = produce_one(wire, "keyed", 0, bomb(), version=9)
        assert part.error_code == 2 and "decompress to more than" in part.error_message
    assert produce(broker, "keyed", [(b"after", b"bomb")])[0][2] >= 2
    # A delete-policy topic takes keyless records as before.
    create(broker, "plain")
    assert produce(broker, "plain", [(None, b"x")])[0][2] == 0


def test_compact_delete_also_drops_old_segments_by_time_and_size(broker_factory) -> None:
    broker = broker_factory(settings=FAST_CLEANER)
    create(broker, "by-time", **{"cleanup.policy": "compact,delete", "segment.ms": "100",
                                 "retention.ms": "1000", "min.cleanable.dirty.ratio": "0.01"})
    create(broker, "by-size", **{"cleanup.policy": "delete,compact", "segment.ms": "100",
                                 "retention.bytes": "4000", "min.cleanable.dirty.ratio": "0.01"})
    now = int(time.time() * 1000)
    for round_ in range(6):
        for topic in ("by-time", "by-size"):
            # distinct keys (nothing to compact away), old timestamps for the time-based topic
            ts = now - 10_000 if topic == "by-time" and round_ < 5 else None
            producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
            for i in range(20):
                key = f"r{round_}-{i}".encode()
                if ts is None:
                    producer.produce(topic, key=key, value=b"v" * 50)
                else:
                    producer.produce(topic, key=key, value=b"v" * 50, timestamp=ts)
            assert producer.flush(10) == 0
        time.sleep(0.12)
    produce(broker, "by-time", [(b"last", b"1")])
    produce(broker, "by-size", [(b"last", b"1")])

    def low(topic: str) -> int:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "w"})
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[0]
        finally:
            consumer.close()

    assert wait_until(lambda: low("by-time") >= 100, 15, "time retention on a compact,delete topic")
    assert wait_until(lambda: low("by-size") > 0, 15, "size retention on a compact,delete topic")
    for topic in ("by-time", "by-size"):
        seen = consume_confluent(broker, topic, low(topic))
        assert seen[-1][1] == b"last"
    # compact alone keeps old segments, and DeleteRecords is refused on it (POLICY_VIOLATION), as Kafka
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(broker, "compact-only", **{"cleanup.policy": "compact", "retention.ms": "1"})
    produce(broker, "compact-only", [(b"k", b"v")])
    time.sleep(0.3)
    assert low("compact-only") == 0
    result = admin.delete_records([TopicPartition("compact-only", 0, 1)])
    with pytest.raises(Exception, match=r"POLICY_VIOLATION|policy"):
        next(iter(result.values())).result(10)
    described = admin.describe_configs([ConfigResource("topic", "by-size")])
    configs = next(iter(described.values())).result(10)
    assert configs["cleanup.policy"].value == "delete,compact"


def test_an_idempotent_producer_keeps_producing_across_passes_that_emptied_its_batches(
    broker_factory,
) -> None:
    broker = broker_factory(settings=FAST_CLEANER)
    topic = "idem"
    create(broker, topic, **{"cleanup.policy": "compact", "segment.ms": "100",
                             "min.cleanable.dirty.ratio": "0.01"})
    conf = {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 0,
            "message.timeout.ms": 20000}
    idem = Producer(conf)
    errors: list = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    def rounds(n: int, tag: str) -> None:
        for r in range(n):
            for k in range(10):
                idem.produce(topic, key=f"k{k}".encode(), value=f"{tag}{r}".encode(), on_delivery=on_delivery)
                idem.flush(10)  # one batch per record
            # another producer overwrites what the idempotent one wrote last: its batch empties
            produce(broker, topic, [(f"k{k}".encode(), b"other") for k in range(10)])
            time.sleep(0.12)

    rounds(2, "a")
    broker.stop()  # a clean stop snapshots the producer state
    broker.start()
    rounds(1, "b")
    produce(broker, topic, [(b"roll", b"1")])
    last_sequence = 29  # 30 single-record batches so far

    def emptied():
        batches = read_partition(broker.data_dir / f"{topic}-0")
        mine = [b for b, records in batches if b.producer_id >= 0]
        done = len(mine) == 1 and mine[0].base_sequence == last_sequence
        return mine if done else None

    mine = wait_until(emptied, 20, "a pass that empties the idempotent producer's last batch")
    assert mine[0].records_count == 0, "its records were overwritten: the batch stays, empty"
    # Both clients read through the empty batch.
    through = [(o, k) for o, k, _v in consume_kafka_python(broker, topic, mine[0].base_offset)]
    assert through[0][0] > mine[0].last_offset and through[-1][1] == b"roll"
    assert [(o, k) for o, k, _v in consume_confluent(broker, topic, mine[0].base_offset)] == through

    # After a crash, producer state is the snapshot plus a replay of the log after it, which
    # holds only the emptied batch: its sequence must come from its offset span.
    broker.kill()
    broker.start()
    rounds(1, "c")
    idem.produce(topic, key=b"final", value=b"1", on_delivery=on_delivery)
    assert idem.flush(10) == 0
    assert not errors, errors[:3]
    seen = {k: v for _o, k, v in consume_confluent(broker, topic)}
    assert seen[b"final"] == b"1" and all(seen[f"k{k}".encode()] == b"other" for k in range(10))
