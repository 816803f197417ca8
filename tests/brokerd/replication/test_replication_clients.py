"""Real clients see a three-broker cluster (brokers, replicas, ISR) and keep producing and
consuming while a partition's leader moves: kafka-python, aiokafka, kcat and confluent-kafka."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd.replication.clustertest import cluster_brokers, start_brokers, wait_for
from tests.etcd_server import EtcdServer

pytestmark = [
    # kafka-python reads its resources through the deprecated importlib.resources API
    pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy"),
    # and leaves the socket of a connection to a killed broker to the garbage collector
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_kafka_python_aiokafka_kcat_and_confluent_kafka_through_leader_moves(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix)
    try:
        start_brokers(brokers)
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

        # confluent-kafka: metadata, then an idempotent acks=all producer and a consumer both
        # running while the current leader is killed and the partition moves again.
        meta = admin.list_topics("moves", timeout=10)
        row = meta.topics["moves"].partitions[0]
        assert sorted(meta.brokers) == [1, 2, 3] and sorted(row.replicas) == [1, 2, 3]
        assert sorted(row.isrs) == [1, 2, 3]
        acked: list[bytes] = []
        stop = threading.Event()

        def produce() -> None:
            producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                 "linger.ms": 5})  # fmt: skip
            def delivered(err, msg) -> None:
                if err is None:
                    acked.append(msg.value())

            n = 0
            while not stop.is_set():
                producer.produce("moves", b"ck-%d" % n, partition=0, on_delivery=delivered)
                producer.poll(0)
                n += 1
                time.sleep(0.005)
            producer.flush(60)

        writer = threading.Thread(target=produce, daemon=True)
        writer.start()
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "ck-reader",
                           "enable.auto.commit": False})  # fmt: skip
        reader.assign([CkPartition("moves", 0, 30)])
        read: list[bytes] = []

        def poll_until(count: int) -> bool:
            read.extend(m.value() for m in reader.consume(100, 0.2) if m.error() is None)
            return len(read) >= count

        wait_for(lambda: poll_until(20) and len(acked) >= 20, what="confluent-kafka producing and consuming")
        second = next(b for b in brokers if b.node_id == p0().leader)
        second.kill()
        before = len(acked)
        wait_for(lambda: len(acked) > before + 20, timeout=30, what="producing after the leader's kill")
        stop.set()
        writer.join(60)
        wait_for(lambda: poll_until(len(acked)), timeout=30, what="every acknowledged record read")
        reader.close()
        assert read == acked == sorted(acked, key=lambda v: int(v[3:]))  # in order, once each
        assert (p := p0()) and p.leader not in (-1, second.node_id)
    finally:
        for broker in brokers:
            broker.kill()
        gc.collect()  # kafka-python's sockets to the killed broker, while this test's filter holds
