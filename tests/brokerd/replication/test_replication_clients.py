"""Real clients see a three-broker cluster (brokers, replicas, ISR) and keep producing and
consuming while a partition's leader moves: kafka-python, aiokafka and kcat."""

from __future__ import annotations

import asyncio
import gc
import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd.replication.clustertest import cluster_brokers, wait_for
from tests.etcd_server import EtcdServer

pytestmark = [
    # kafka-python reads its resources through the deprecated importlib.resources API
    pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy"),
    # and leaves the socket of a connection to a killed broker to the garbage collector
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_kafka_python_aiokafka_and_kcat_through_a_leader_move(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix)
    try:
        for broker in brokers:
            broker.start(timeout=30)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("moves", 1, replication_factor=3)])["moves"].result(timeout=20)

        def p0():
            topic = (
                AdminClient({"bootstrap.servers": bootstrap}).list_topics("moves", timeout=10).topics["moves"]
            )
            return topic.error is None and topic.partitions.get(0)

        first = wait_for(lambda: (p := p0()) and sorted(p.isrs) == [1, 2, 3] and p, what="in sync")

        # kcat: three brokers, and the partition's replicas and ISR.
        out = subprocess.run(["kcat", "-L", "-b", bootstrap, "-t", "moves", "-m", "10"],
                             capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        assert " 3 brokers:" in out and "replicas: " in out and "isrs: " in out

        # kafka-python: metadata with every broker, and acks=all writes (closed before the kill:
        # it leaves sockets to a dead broker to the garbage collector).
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=15000)
        for i in range(20):
            producer.send("moves", b"kp-%d" % i, partition=0).get(timeout=20)
        assert {b.node_id for b in producer._metadata.brokers()} == {1, 2, 3}
        producer.close()
        leader = next(b for b in brokers if b.node_id == first.leader)

        # aiokafka: acks=all writes across the leader's SIGKILL, then a full read from the new leader.
        async def with_aiokafka() -> list[bytes]:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30000)
            await producer.start()
            try:
                assert {b.nodeId for b in producer.client.cluster.brokers()} == {1, 2, 3}
                await producer.send_and_wait("moves", b"ak-0", partition=0)
                leader.kill()
                for i in range(1, 10):
                    await producer.send_and_wait("moves", b"ak-%d" % i, partition=0)
            finally:
                await producer.stop()
            live = ",".join(b.bootstrap for b in brokers if b is not leader)
            consumer = AIOKafkaConsumer(bootstrap_servers=live, auto_offset_reset="earliest",
                                        enable_auto_commit=False)  # fmt: skip
            await consumer.start()
            try:
                consumer.assign([TopicPartition("moves", 0)])
                await consumer.seek_to_beginning()
                got: list[bytes] = []
                while len(got) < 30:
                    batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
                    for records in batch.values():
                        got.extend(r.value for r in records)
                return got
            finally:
                await consumer.stop()

        got = asyncio.run(with_aiokafka())
        moved = wait_for(lambda: (p := p0()) and p.leader not in (-1, leader.node_id) and p, what="moved")
        assert moved.leader != first.leader
        assert got == [b"kp-%d" % i for i in range(20)] + [b"ak-%d" % i for i in range(10)]

        # The old leader returns, catches up and rejoins the ISR; kafka-python reads it all.
        leader.start(timeout=30)
        wait_for(lambda: (p := p0()) and sorted(p.isrs) == [1, 2, 3], timeout=60, what="back in the ISR")
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 consumer_timeout_ms=10000)  # fmt: skip
        consumer.assign([TopicPartition("moves", 0)])
        consumer.seek_to_beginning()
        values = [m.value for _, m in zip(range(30), consumer, strict=False)]
        consumer.close()
        assert values == got
    finally:
        for broker in brokers:
            broker.kill()
        gc.collect()  # kafka-python's sockets to the killed broker, while this test's filter holds
