"""Consumer groups on a three-broker cluster keep their committed offsets in the replicated
``__consumer_offsets`` topic: the coordinator of a group is the leader of the group's partition
(Kafka's hash of the group id), and when that broker is killed with SIGKILL the new leader
loads the group from its copy of the log, so confluent-kafka and kafka-python consumers resume
from their committed offsets."""

from __future__ import annotations

import gc
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from brokerd.coordination.internal_topics import java_string_hash, partition_for
from tests.brokerd.replication.clustertest import cluster_brokers, partition_of, start_cluster, wait_for
from tests.etcd_server import EtcdServer

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy"),
    # kafka-python leaves the socket of a connection to a killed broker to the garbage collector
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

OFFSETS = "__consumer_offsets"
TOPIC = "orders"
PARTITIONS = 3
RECORDS = 90


def test_java_string_hash_picks_kafkas_partition() -> None:
    # Values Java's String.hashCode gives: "hello" 99162322; "Aa" and "BB" collide at 2112;
    # "polygenelubricants" is Integer.MIN_VALUE, which Kafka's Utils.abs maps to 0.
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50
    assert java_string_hash("\U0001f600") == 31 * 0xD83D + 0xDE00  # UTF-16 surrogates, as Java counts
    negative = next(f"consumer-group-{i}" for i in range(1000) if java_string_hash(f"group-{i}") < 0)
    assert partition_for(negative, 50) == abs(java_string_hash(negative)) % 50


def _consume(bootstrap: str, group: str, count: int, *, commit: bool) -> list[tuple[int, int]]:
    """Up to ``count`` records of the group's assignment (partition, offset); commits them."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
    })  # fmt: skip
    consumer.subscribe([TOPIC])
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append((message.partition(), message.offset()))
    if commit:
        consumer.commit(asynchronous=False)
    consumer.close()
    return seen


def test_groups_resume_from_committed_offsets_after_the_coordinator_is_killed(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient

    settings = {"group.initial.rebalance.delay.ms": 0}
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, settings=settings)
    try:
        bootstrap = start_cluster(brokers, TOPIC, PARTITIONS)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(RECORDS):
            producer.produce(TOPIC, value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(30) == 0

        # confluent-kafka: the first consumer of group "billing" reads and commits a part.
        first = _consume(bootstrap, "billing", 30, commit=True)
        assert len(first) == 30

        # The internal topic exists now: 50 partitions, replicated 3 ways, is_internal.
        offsets_md = admin.list_topics(OFFSETS, timeout=10).topics[OFFSETS]
        assert offsets_md.error is None and len(offsets_md.partitions) == 50
        assert all(len(p.replicas) == 3 for p in offsets_md.partitions.values())
        kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)
        described = {t["name"]: t for t in kadmin.describe_topics([OFFSETS, TOPIC])}  # Metadata
        assert described[OFFSETS]["is_internal"] is True and described[TOPIC]["is_internal"] is False
        paged = kadmin.describe_topic_partitions([OFFSETS, TOPIC])["topics"]  # DescribeTopicPartitions
        assert {t["name"]: t["is_internal"] for t in paged} == {OFFSETS: True, TOPIC: False}
        kadmin.close()

        # The group's coordinator is the leader of partition abs(hash("billing")) % 50.
        index = partition_for("billing", 50)
        coordinator = admin.describe_consumer_groups(["billing"])["billing"].result(timeout=20).coordinator
        leader = wait_for(lambda: (p := partition_of(bootstrap, OFFSETS, index)) and p.leader,
                          what="a leader of the group's partition")  # fmt: skip
        assert coordinator.id == leader
        wait_for(lambda: sorted(partition_of(bootstrap, OFFSETS, index).isrs) == [1, 2, 3],
                 what="the group's partition in sync")  # fmt: skip
        committed_before = _committed(bootstrap, "billing")
        assert sum(committed_before.values()) == 30

        victim = next(b for b in brokers if b.node_id == leader)
        victim.kill()
        rest = [b for b in brokers if b is not victim]
        live = ",".join(b.bootstrap for b in rest)
        wait_for(lambda: (p := partition_of(live, OFFSETS, index)) and p.leader not in (-1, leader),
                 timeout=30, what="a new leader of the group's partition")  # fmt: skip
        # The new coordinator answers with the same committed offsets, and a new consumer of the
        # group resumes exactly there: the rest of the records, none of the first 30 again.
        assert wait_for(lambda: _committed(live, "billing") == committed_before, timeout=30,
                        what="committed offsets on the new coordinator")  # fmt: skip
        second = _consume(live, "billing", RECORDS - 30, commit=True)
        everything = {(i % PARTITIONS, i // PARTITIONS) for i in range(RECORDS)}
        assert sorted(second) == sorted(everything - set(first))

        # kafka-python: a group committed before the old coordinator comes back, then it
        # comes back, the group's coordinator is killed again, and the group resumes.
        def kafka_python_read(count: int) -> list[tuple[int, int]]:
            consumer = KafkaConsumer(
                TOPIC, bootstrap_servers=live, group_id="audit", enable_auto_commit=False,
                auto_offset_reset="earliest", consumer_timeout_ms=20000, session_timeout_ms=6000,
            )  # fmt: skip
            got = []
            for message in consumer:
                got.append((message.partition, message.offset))
                if len(got) == count:
                    break
            consumer.commit()
            consumer.close()
            return got

        # kafka-python raises a refused connection to a broker Metadata still lists: wait until
        # the killed broker is gone from it (brokers keep a departed one listed a few seconds)
        wait_for(lambda: len(AdminClient({"bootstrap.servers": live}).list_topics(timeout=10).brokers) == 2,
                 what="the killed broker out of Metadata")  # fmt: skip
        head = kafka_python_read(40)
        assert len(head) == 40
        victim.start(timeout=30)
        audit_index = partition_for("audit", 50)
        wait_for(lambda: sorted(partition_of(bootstrap, OFFSETS, audit_index).isrs) == [1, 2, 3],
                 timeout=60, what="the audit group's partition in sync again")  # fmt: skip
        audit_leader = partition_of(bootstrap, OFFSETS, audit_index).leader
        audit_victim = next(b for b in brokers if b.node_id == audit_leader)
        committed_audit = _committed(bootstrap, "audit")
        audit_victim.kill()
        live = ",".join(b.bootstrap for b in brokers if b is not audit_victim)
        wait_for(lambda: len(AdminClient({"bootstrap.servers": live}).list_topics(timeout=10).brokers) == 2,
                 what="the killed broker out of Metadata")  # fmt: skip
        assert wait_for(lambda: _committed(live, "audit") == committed_audit, timeout=30,
                        what="the audit group's offsets on its new coordinator")  # fmt: skip
        tail = kafka_python_read(RECORDS - 40)
        assert sorted(head + tail) == sorted((i % PARTITIONS, i // PARTITIONS) for i in range(RECORDS))
    finally:
        for broker in brokers:
            broker.kill()
        gc.collect()  # kafka-python's sockets to killed brokers, here where their warnings are expected


def _committed(bootstrap: str, group: str) -> dict[int, int] | None:
    """The group's committed offsets per partition of TOPIC (None while its coordinator is
    not answering)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    except Exception:
        return None
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def test_offsets_records_use_kafkas_schemas(tmp_path: Path) -> None:
    """A broker alone keeps its groups in __consumer_offsets too (replication factor 1), with
    Kafka's OffsetCommitKey v1 / OffsetCommitValue v3 and GroupMetadataKey v2 layouts."""
    from tests.brokerd.conftest import Broker

    settings = {"group.initial.rebalance.delay.ms": 0, "kastle.plan.max.partitions": 5}
    broker = Broker(tmp_path / "alone", settings=settings).start()
    try:
        bootstrap = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS)])[TOPIC].result(timeout=20)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(RECORDS):
            producer.produce(TOPIC, value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(30) == 0
        assert len(_consume(bootstrap, "schemas", 10, commit=True)) == 10

        index = partition_for("schemas", 50)
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
        reader.assign([TopicPartition(OFFSETS, index, 0)])
        keys: dict[int, list[bytes]] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (1 in keys and 2 in keys):
            message = reader.poll(0.5)
            if message is not None and message.error() is None and message.value() is not None:
                (version,) = struct.unpack_from(">h", message.key())
                keys.setdefault(version, []).append(message.key())
                if version == 1:
                    # OffsetCommitValue v3: version, offset, leader epoch, metadata, commit time
                    value_version, offset, _epoch, meta_len = struct.unpack_from(">hqih", message.value())
                    assert value_version == 3 and offset >= 0 and meta_len >= 0
                elif version == 2:
                    assert struct.unpack_from(">h", message.value())[0] == 3  # GroupMetadataValue v3
        reader.close()
        group = b"schemas"
        assert keys[2][0] == struct.pack(">hh", 2, len(group)) + group
        tp_key = keys[1][0]
        assert tp_key.startswith(struct.pack(">hh", 1, len(group)) + group + struct.pack(">h", len(TOPIC)))

        # Its 50 partitions are not the tenant's: the plan's cap of 5 still has room for 2 more.
        admin.create_topics([NewTopic("more", 2)])["more"].result(timeout=20)

        # Tenants cannot write to it, delete it or create internal topics themselves, and a
        # pattern subscription leaves it out (clients read is_internal from Metadata).
        errors: list = []
        writer = Producer({"bootstrap.servers": bootstrap, "message.send.max.retries": 0})
        writer.produce(OFFSETS, value=b"x", key=b"k", partition=index,
                       on_delivery=lambda e, _m: errors.append(e))  # fmt: skip
        writer.flush(20)
        assert errors and errors[0].code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION
        with pytest.raises(KafkaException) as refused:
            admin.delete_topics([OFFSETS])[OFFSETS].result(timeout=20)
        assert refused.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
        with pytest.raises(KafkaException) as refused:
            txn_topic = "__transaction_state"
            admin.create_topics([NewTopic(txn_topic, 1)])[txn_topic].result(timeout=20)
        assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
        from kafka import KafkaConsumer

        pattern = KafkaConsumer(bootstrap_servers=bootstrap, group_id="pattern", consumer_timeout_ms=500)
        pattern.subscribe(pattern="^.*")  # kafka-python's exclude_internal_topics, by default
        deadline = time.monotonic() + 30
        while not pattern.assignment() and time.monotonic() < deadline:
            pattern.poll(200)
        assert {tp.topic for tp in pattern.assignment()} == {TOPIC, "more"}
        pattern.close()
        gc.collect()  # kafka-python's sockets, here where their warnings are expected

        # and the group keeps its offsets over a restart, read back from the topic
        before = _committed(broker.bootstrap, "schemas")
        assert before is not None and sum(before.values()) == 10
        broker.restart()
        assert _committed(broker.bootstrap, "schemas") == before
    finally:
        broker.kill()

