"""The follower side of Kafka's replication throttle on real brokers (127.0.0.1, .2) and etcd: a
replica a reassignment adds, named in its topic's follower.replication.throttled.replicas, copies
no faster than the broker's follower.replication.throttled.rate, while an unthrottled replica moved
at the same time copies at once; a produce with acks=all to the throttled topic's in-sync replicas
is not held back."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, start_brokers, wait_for
from tests.etcd_server import EtcdServer

RATE = 1 << 20  # bytes per second
SIZE = 5 << 20  # bytes in each moved partition


@pytest.fixture(scope="module")
def brokers(
    tmp_path_factory: pytest.TempPathFactory, etcd_server: EtcdServer
) -> Iterator[list[ClusterBroker]]:
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    started = cluster_brokers(
        tmp_path_factory.mktemp("throttle"),
        etcd_server,
        prefix,
        count=2,
        settings={"super.users": "User:ANONYMOUS"},  # broker configs are a super user's to alter
    )
    try:
        start_brokers(started)
        yield started
    finally:
        for broker in started:
            broker.kill()


def _alter(admin: AdminClient, resource: ConfigResource) -> None:
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=20)


def _fill(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    value = b"x" * (64 << 10)
    for _ in range(SIZE // len(value)):
        producer.produce(topic, value, partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0


def test_a_throttled_replica_copies_at_the_rate_an_unthrottled_one_at_once(brokers) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.admin import KafkaAdminClient
        from kafka.structs import TopicPartition

    source, target = brokers
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 2, what="both brokers")
    for name in ("slow", "fast"):
        admin.create_topics([NewTopic(name, 1, replica_assignment=[[source.node_id]])])[name].result(
            timeout=20
        )
        wait_for(
            lambda n=name: admin.list_topics(n, timeout=10).topics[n].partitions[0].leader == source.node_id
        )
        _fill(bootstrap, name)
    rate = ConfigEntry(
        "follower.replication.throttled.rate", str(RATE), incremental_operation=AlterConfigOpType.SET
    )
    _alter(admin, ConfigResource("BROKER", str(target.node_id), incremental_configs=[rate]))
    replicas = ConfigEntry(
        "follower.replication.throttled.replicas",
        f"0:{target.node_id}",
        incremental_operation=AlterConfigOpType.SET,
    )
    _alter(admin, ConfigResource("TOPIC", "slow", incremental_configs=[replicas]))
    described = admin.describe_configs([ConfigResource("BROKER", str(target.node_id))])
    config = next(iter(described.values())).result(timeout=20)
    assert config["follower.replication.throttled.rate"].value == str(RATE)

    moving = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    try:
        started = time.monotonic()
        targets = {TopicPartition(n, 0): [source.node_id, target.node_id] for n in ("slow", "fast")}
        assert moving.alter_partition_reassignments(targets) == dict.fromkeys(targets)
        done: dict[str, float] = {}

        def in_sync() -> bool:
            for name in ("slow", "fast"):
                part = admin.list_topics(name, timeout=10).topics[name].partitions[0]
                if name not in done and sorted(part.isrs) == sorted([source.node_id, target.node_id]):
                    done[name] = time.monotonic() - started
            return len(done) == 2

        wait_for(in_sync, timeout=60, interval=0.05, what="both moves to complete")
    finally:
        moving.close()
    # at most one second's worth is saved up, so the copy takes at least the rest at the rate
    assert done["slow"] >= (SIZE - RATE) / RATE * 0.9, done
    assert done["fast"] < done["slow"], done
