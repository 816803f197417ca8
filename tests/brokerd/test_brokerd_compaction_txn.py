"""Compaction of a topic written in transactions, on a real brokerd with confluent-kafka.

Committed, aborted and still-open transactions on a compacted topic: the cleaner removes the
aborted transaction's records, compacts the committed ones like any record, keeps each marker
while a batch of its transaction remains and removes it once none does and
``delete.retention.ms`` has passed, and cleans nothing at or past the last stable offset (the
open transaction's records, and everything after them, stay until it ends). read_committed and
read_uncommitted consumers agree with that before and after a restart of the broker.
"""

from __future__ import annotations

import contextlib
import struct
import time

import pytest
from compaction_checks import check_indexes, read_partition
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.brokerd.test_brokerd_compaction import FAST_CLEANER, create, wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

TOPIC = "ledger"
KEYS = [f"k{i}".encode() for i in range(8)]


def read(broker, isolation: str) -> list[tuple[int, bytes, bytes]]:
    """(offset, key, value) of every record a consumer of that isolation level sees."""
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": "verify", "enable.auto.commit": False,
        "isolation.level": isolation, "enable.partition.eof": True, "fetch.wait.max.ms": 10,
    })  # fmt: skip
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        out: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(msg.error())
            out.append((msg.offset(), msg.key(), msg.value()))
        raise AssertionError(f"no end of partition after {len(out)} records")
    finally:
        consumer.close()


def in_transaction(producer: Producer, records: list[tuple[bytes, bytes]], commit: bool) -> None:
    producer.begin_transaction()
    for key, value in records:
        producer.produce(TOPIC, key=key, value=value, partition=0)
    assert producer.flush(10) == 0
    if commit:
        producer.commit_transaction(15)
    else:
        producer.abort_transaction(15)
    time.sleep(0.12)  # past segment.ms: the next write rolls the segment


def markers(broker) -> list[tuple[int, int]]:
    """(producer id, base offset) of every control batch left in the partition's segments."""
    return [(b.producer_id, b.base_offset) for b, _r in read_partition(broker.data_dir / f"{TOPIC}-0")
            if b.is_control_batch]  # fmt: skip


def latest(records: list[tuple[int, bytes, bytes]]) -> dict[bytes, bytes]:
    return {k: v for _o, k, v in records}


def test_compaction_removes_aborted_records_and_spent_markers_and_stops_at_the_lso(broker_factory) -> None:
    broker = broker_factory(settings={**FAST_CLEANER, "transaction.state.log.num.partitions": 1})
    create(broker, TOPIC, **{"cleanup.policy": "compact", "segment.ms": "100",
                             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1500"})  # fmt: skip
    writer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "writer", "linger.ms": 0})
    writer.init_transactions(15)
    in_transaction(writer, [(k, b"first-" + k) for k in KEYS], commit=True)
    in_transaction(writer, [(k, b"aborted-" + k) for k in KEYS], commit=False)
    in_transaction(writer, [(k, b"second-" + k) for k in KEYS[:4]], commit=True)
    expected = {k: (b"second-" if i < 4 else b"first-") + k for i, k in enumerate(KEYS)}
    assert len(markers(broker)) == 3

    # a transaction left open: it and everything after it must stay uncleaned while it is open
    hanging = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "hanging", "linger.ms": 0})
    hanging.init_transactions(15)
    hanging.begin_transaction()
    hanging.produce(TOPIC, key=KEYS[0], value=b"open", partition=0)
    assert hanging.flush(10) == 0
    time.sleep(0.12)
    in_transaction(writer, [(b"after", b"v1")], commit=True)
    in_transaction(writer, [(b"after", b"v2")], commit=True)
    in_transaction(writer, [(b"roll", b"x")], commit=True)  # seals the segment before it

    def cleaned() -> list | None:
        seen = read(broker, "read_uncommitted")
        values = [v for _o, _k, v in seen]
        below = [v for v in values if v.startswith((b"first-", b"second-"))]
        spent = not any(v.startswith(b"aborted-") for v in values)
        return seen if spent and len(below) == len(KEYS) else None

    seen = wait_until(cleaned, 30, "a cleaner pass removing the aborted records")
    values = [v for _o, _k, v in seen]
    # past the LSO nothing was compacted: both values of "after" are there, as the open record
    assert values.count(b"v1") == 1 and values.count(b"v2") == 1 and b"open" in values
    assert latest(read(broker, "read_committed")) == expected  # up to the LSO: the open record

    # the aborted transaction has no batch left: its marker goes after delete.retention.ms; the
    # commit markers of the transactions with records left stay
    aborted_marker_gone = wait_until(lambda: len(markers(broker)) == 5, 30, "the abort marker to go")
    assert aborted_marker_gone

    # the open transaction commits: the LSO moves on and the rest is compacted too
    hanging.commit_transaction(15)
    in_transaction(writer, [(b"roll", b"y")], commit=True)
    final = {**expected, KEYS[0]: b"open", b"after": b"v2", b"roll": b"y"}

    def compacted_to_the_end() -> list | None:
        seen = read(broker, "read_uncommitted")
        return seen if [v for _o, _k, v in seen].count(b"v1") == 0 else None

    wait_until(compacted_to_the_end, 30, "a pass past the former LSO")
    assert latest(read(broker, "read_committed")) == final

    # after a crash, the producer state and the index read back agree with the cleaned log
    broker.kill()
    broker.start()
    assert latest(read(broker, "read_committed")) == final
    assert latest(read(broker, "read_uncommitted")) == final
    assert check_indexes(broker.data_dir / f"{TOPIC}-0") > 0
    again = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "writer", "linger.ms": 0})
    again.init_transactions(15)
    in_transaction(again, [(KEYS[1], b"third")], commit=True)
    assert latest(read(broker, "read_committed"))[KEYS[1]] == b"third"


def indexed_aborts(pdir) -> set[tuple[int, int]]:
    """(producer id, marker offset) of every entry of the partition's .txnindex files (Kafka's
    34-byte layout)."""
    out = set()
    for path in pdir.glob("*.txnindex"):
        data = path.read_bytes()
        for pos in range(0, len(data) - 33, 34):
            _version, pid, _first, last, _lso = struct.unpack_from(">hqqqq", data, pos)
            out.add((pid, last))
    return out


def test_a_crash_at_every_swap_never_leaves_an_indexed_abort_without_its_marker(broker_factory) -> None:
    """The broker kills itself once each swap is in place (before the pass ends): an aborted
    transaction whose records are gone stays in the aborted-transaction index until a pass ends,
    and its marker goes only after that, whenever the crash lands."""
    quiet = {**FAST_CLEANER, "log.cleaner.threads": 0, "transaction.state.log.num.partitions": 1}
    broker = broker_factory(settings=quiet)
    create(broker, TOPIC, **{"cleanup.policy": "compact", "segment.ms": "100",
                             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100"})  # fmt: skip
    pdir = broker.data_dir / f"{TOPIC}-0"
    writer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "writer", "linger.ms": 0})
    writer.init_transactions(15)
    in_transaction(writer, [(k, b"first-" + k) for k in KEYS], commit=True)
    in_transaction(writer, [(k, b"aborted-" + k) for k in KEYS], commit=False)
    in_transaction(writer, [(k, b"second-" + k) for k in KEYS], commit=True)
    in_transaction(writer, [(b"roll", b"x")], commit=True)
    expected = {**{k: b"second-" + k for k in KEYS}, b"roll": b"x"}
    assert len(indexed_aborts(pdir)) == 1

    crashes = 0
    for _round in range(6):
        broker.stop()
        broker.settings.update({"log.cleaner.threads": 1, "test.cleaner.kill.at": "installed"})
        with contextlib.suppress(RuntimeError):  # it may die before it reports healthy
            broker.start()
        deadline = time.monotonic() + 10
        steady = False
        while broker.proc.poll() is None and not steady:
            assert time.monotonic() < deadline, "neither a swap nor a settled log"
            time.sleep(0.1)
            # what stays: the markers of the transactions with records left (second, roll)
            steady = not indexed_aborts(pdir) and len(markers(broker)) == 2
        crashes += broker.proc.poll() == -9
        # read back with the cleaner off: recovery completed the swap the kill interrupted
        if broker.proc.poll() is None:
            broker.stop()
        broker.settings.update(quiet)
        broker.settings.pop("test.cleaner.kill.at")
        broker.start()
        present = set(markers(broker))
        assert indexed_aborts(pdir) <= present, "an indexed abort lost its marker"
        assert latest(read(broker, "read_committed")) == expected
        assert not any(v.startswith(b"aborted-") for _o, _k, v in read(broker, "read_committed"))
        if steady:
            break
    else:
        raise AssertionError("the cleaner never settled")
    assert crashes >= 2  # the pass that removed the aborted records, and the one that removed its marker
    assert latest(read(broker, "read_uncommitted")) == expected
