"""A consumer-protocol group (``group.protocol=consumer``) on a three-broker cluster survives a
``kill -9`` of its coordinator's broker: the group's members, epochs and target assignment are in
the replicated ``__consumer_offsets`` topic with its committed offsets, so the leader that takes
the group's partition over loads them, and the running members carry on with it. Every record is
read exactly once across the kill (commits are synchronous before it) and the committed offsets
end at the log end."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from brokerd.coordination.internal_topics import partition_for
from tests.brokerd.replication.clustertest import cluster_brokers, partition_of, start_cluster, wait_for
from tests.etcd_server import EtcdServer

TOPIC, PARTITIONS, RECORDS, GROUP = "payments", 4, 120, "ledger"
OFFSETS = "__consumer_offsets"


def _member(bootstrap: str, given_up: list) -> Consumer:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": GROUP, "group.protocol": "consumer",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
        "topic.metadata.refresh.interval.ms": 1000,
    })  # fmt: skip
    consumer.subscribe([TOPIC],
                       on_revoke=lambda _c, ps: given_up.extend(("revoked", p.partition) for p in ps),
                       on_lost=lambda _c, ps: given_up.extend(("lost", p.partition) for p in ps))
    return consumer


def _poll(members: list[Consumer], seen: list[tuple[int, int]], until) -> None:
    deadline = time.monotonic() + 90
    while not until() and time.monotonic() < deadline:
        for member in members:
            message = member.poll(0.1)
            if message is not None and message.error() is None:
                seen.append((message.partition(), message.offset()))
                member.commit(message, asynchronous=False)


def test_a_consumer_protocol_group_keeps_working_when_its_coordinator_is_killed(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    settings = {"group.consumer.heartbeat.interval.ms": 500, "group.consumer.session.timeout.ms": 10000}
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, settings=settings)
    members: list[Consumer] = []
    try:
        bootstrap = start_cluster(brokers, TOPIC, PARTITIONS)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(RECORDS // 2):
            producer.produce(TOPIC, value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(30) == 0

        given_up: list[tuple[str, int]] = []
        members = [_member(bootstrap, given_up), _member(bootstrap, given_up)]
        seen: list[tuple[int, int]] = []

        def split() -> bool:
            owned = [{tp.partition for tp in m.assignment()} for m in members]
            return all(owned) and not owned[0] & owned[1] and len(owned[0] | owned[1]) == PARTITIONS

        _poll(members, seen, lambda: split() and len(seen) == RECORDS // 2)
        assert split() and len(seen) == RECORDS // 2
        given_up.clear()  # the second member's arrival took partitions from the first
        before = [sorted(tp.partition for tp in m.assignment()) for m in members]

        index = partition_for(GROUP, 50)
        leader = partition_of(bootstrap, OFFSETS, index).leader
        wait_for(lambda: sorted(partition_of(bootstrap, OFFSETS, index).isrs) == [1, 2, 3],
                 what="the group's partition in sync")  # fmt: skip
        victim = next(b for b in brokers if b.node_id == leader)
        victim.kill()
        live = ",".join(b.bootstrap for b in brokers if b is not victim)
        wait_for(lambda: (p := partition_of(live, OFFSETS, index)) and p.leader not in (-1, leader),
                 timeout=30, what="a new coordinator")  # fmt: skip

        # the rest, on partitions whose leaders may have moved too, through the new coordinator
        producer = Producer({"bootstrap.servers": live, "acks": "all"})
        for i in range(RECORDS // 2, RECORDS):
            producer.produce(TOPIC, value=b"%d" % i, partition=i % PARTITIONS)
        assert producer.flush(60) == 0
        _poll(members, seen, lambda: len(seen) >= RECORDS)
        assert sorted(seen) == sorted((i % PARTITIONS, i // PARTITIONS) for i in range(RECORDS))
        # the new coordinator loaded the members with their epochs: none was fenced and rejoined
        # (which loses its partitions), none gave a partition up
        assert given_up == []
        assert [sorted(tp.partition for tp in m.assignment()) for m in members] == before

        committed = members[0].committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=20)
        wanted = dict.fromkeys(range(PARTITIONS), RECORDS // PARTITIONS)
        assert {tp.partition: tp.offset for tp in committed} == wanted
    finally:
        for member in members:
            member.close()
        for broker in brokers:
            broker.kill()
