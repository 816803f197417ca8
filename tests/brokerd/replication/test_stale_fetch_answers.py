"""A follower's fetch answer that arrives after its partition moved on is dropped.

Three brokers behind the fault-injecting proxies (``faultnet``). Partition 0 moves from its
leader to a follower by a preferred election while that follower's fetch to the old leader is
still out; partition 1 stays with the old leader, so the follower keeps fetching from it. The
old leader's answer, held on the way, carries records the new leader never had when it was
elected; when it arrives the new leader has appended records of its own. Appending the answer
would put the deposed leader's records after them in the new leader's log (Kafka's fetcher only
processes an answer whose partition is still fetched at the offset and leader epoch it asked)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import wait_for
from tests.brokerd.replication.fault_checker import FaultCluster

TOPIC = "stale-answers"
OLD, NEW, OTHER = 1, 2, 3  # partition 0's leader, the replica elected in its place, the third


def _produce(bootstrap: str, values: list[str], partition: int = 0) -> list[int]:
    """acks=1, one batch per record (the deposed leader's answer carries several batches);
    the offsets acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0, "log_level": 2})
    offsets: list[int] = []

    def acknowledged(err, msg) -> None:
        offsets.append(-1 if err else msg.offset())

    for value in values:
        producer.produce(TOPIC, value.encode(), partition=partition, on_delivery=acknowledged)
        assert producer.flush(30) == 0
    return offsets


def _log(bootstrap: str, end: int, partition: int = 0) -> list[tuple[int, str]]:
    """The partition from offset 0 to ``end`` (exclusive), once the high watermark reached it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "stale-read", "log_level": 2})
    try:
        wait_for(
            lambda: consumer.get_watermark_offsets(TopicPartition(TOPIC, partition), timeout=10)[1] >= end,
            timeout=60,
            what=f"the high watermark at {end}",
        )
        consumer.assign([TopicPartition(TOPIC, partition, 0)])
        log: list[tuple[int, str]] = []

        def read_all() -> bool:
            got = consumer.consume(100, 0.5)
            log.extend((m.offset(), m.value().decode()) for m in got if m.error() is None)
            return bool(log) and log[-1][0] >= end - 1

        wait_for(read_all, timeout=60, what=f"{TOPIC}-{partition} read to {end}")
        return log
    finally:
        consumer.close()


def _leader_seen_by(broker) -> int:
    """Partition 0's leader in ``broker``'s own Metadata answer."""
    with Wire(broker.ports["PLAINTEXT"], host=broker.host) as wire:
        answer = wire.request(request_class(3, 1)(topics=None))
    topic = next(t for t in answer.topics if t.name == TOPIC)
    return next(p.leader_id for p in topic.partitions if p.partition_index == 0)


def test_a_fetch_answer_from_a_deposed_leader_never_lands_in_the_new_leaders_log(tmp_path: Path) -> None:
    # Replicas stay in the ISR while their fetches are held.
    cluster = FaultCluster(tmp_path, settings={"replica.lag.time.max.ms": 60000})
    try:
        cluster.start()
        admin = cluster.admin()
        topic = NewTopic(TOPIC, 2, replica_assignment=[[OLD, NEW, OTHER], [OLD, OTHER, NEW]])
        admin.create_topics([topic])[TOPIC].result(timeout=30)
        wait_for(cluster.in_sync, timeout=60, what="the topic in sync")
        _produce(cluster.bootstrap, [f"before-{i}" for i in range(5)])
        # NEW becomes partition 0's preferred replica while OLD still leads it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from kafka.admin import KafkaAdminClient
            from kafka.structs import TopicPartition as KTopicPartition
        kadmin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=20000)
        try:
            assert kadmin.alter_partition_reassignments({KTopicPartition(TOPIC, 0): [NEW, OLD, OTHER]}) == {
                KTopicPartition(TOPIC, 0): None
            }
        finally:
            kadmin.close()
        wait_for(lambda: cluster.partitions(TOPIC)[0].replicas == [NEW, OLD, OTHER], what="the new order")
        wait_for(cluster.in_sync, timeout=60, what="every ISR full")

        # NEW's next fetch waits on the way to OLD; meanwhile OLD takes records one batch each.
        cluster.net.hold(NEW, OLD)
        time.sleep(1.0)  # the fetch OLD had parked is answered; the next one is held
        _produce(cluster.bootstrap, [f"stale-{i}" for i in range(10)])
        # The held fetch reaches OLD, whose answer (those records) is held on the way back.
        cluster.net.hold(OLD, NEW)
        cluster.net.release(NEW, OLD)
        time.sleep(0.5)
        answer = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(TOPIC, 0)]).result(timeout=20)
        assert list(answer.values()) == [None]
        # Every broker's view has the election (OLD's too: it must not take the next records).
        for broker in cluster.brokers:
            wait_for(lambda b=broker: _leader_seen_by(b) == NEW, what=f"broker {broker.node_id}'s view")
        fresh = _produce(cluster.bootstrap, [f"fresh-{i}" for i in range(3)])
        cluster.net.heal()
        # NEW acknowledged them at its log end, which the burst on OLD never reached.
        assert -1 not in fresh and max(fresh) < 5 + 1 + 3, fresh

        wait_for(cluster.in_sync, timeout=60, what="every ISR full after the heal")
        log = _log(cluster.bootstrap, max(fresh) + 1)
    finally:
        cluster.close()
    offsets = [o for o, _v in log]
    values = [v for _o, v in log]
    assert offsets == list(range(len(log))), log
    # NEW had at most the first record of the burst when it was elected.
    assert not [v for v in values if v.startswith("stale-") and v != "stale-0"], values
    assert values[-3:] == ["fresh-0", "fresh-1", "fresh-2"], values
    # The scenario happened: the held answer reached NEW after the election, and was dropped.
    assert "dropping a fetch answer from broker 1" in cluster.broker(NEW).log_text()
