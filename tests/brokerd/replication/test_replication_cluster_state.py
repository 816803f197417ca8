"""State a cluster keeps as one, against one shared cluster of three real brokerd processes (on
127.0.0.1, .2 and .3) on a real etcd: producer ids unique across the brokers and restarts, and
topics auto-created by any broker with the cluster's defaults."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kio.index import load_payload_module
from kio.static.constants import EntityType

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, start_brokers, wait_for
from tests.etcd_server import EtcdServer

UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS = 3, 5, 14


@pytest.fixture(scope="module")
def brokers(
    tmp_path_factory: pytest.TempPathFactory, etcd_server: EtcdServer
) -> Iterator[list[ClusterBroker]]:
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    settings = {"default.replication.factor": 2, "num.partitions": 2}  # auto-created topics get these
    root = tmp_path_factory.mktemp("state-cluster")
    brokers = cluster_brokers(root, etcd_server, prefix, settings=settings)
    try:
        start_brokers(brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        yield brokers
    finally:
        for broker in brokers:
            broker.kill()


def bootstrap(brokers: list[ClusterBroker]) -> str:
    return ",".join(b.bootstrap for b in brokers)


def producer_ids(broker: ClusterBroker, count: int) -> list[int]:
    """``count`` InitProducerId answers of ``broker`` (an idempotent producer's, no transactional id)."""
    ids: list[int] = []
    with Wire(broker.port, host=broker.host) as w:
        while len(ids) < count:
            answer = w.request(request_class(22, 4)(transactional_id=None,
                                                    transaction_timeout=datetime.timedelta(seconds=60),
                                                    producer_id=-1, producer_epoch=-1))  # fmt: skip
            if answer.error_code == COORDINATOR_LOAD_IN_PROGRESS:
                continue  # its next block is on the way (the client retries, as librdkafka does)
            assert answer.error_code == 0 and answer.producer_epoch == 0
            ids.append(answer.producer_id)
    return ids


def test_producer_ids_are_unique_across_brokers_and_restarts(brokers: list[ClusterBroker]) -> None:
    seen = [pid for broker in brokers for pid in producer_ids(broker, 5)]
    assert len(set(seen)) == len(seen), f"a producer id was handed out twice: {sorted(seen)}"
    # more than a block from one broker: it takes its next block from the cluster's counter
    many = producer_ids(brokers[0], 1100)
    assert len(set(many)) == 1100 and not set(many) & set(seen)
    seen += many
    victim = brokers[1]
    victim.kill()  # no clean stop: nothing is handed back
    victim.start(timeout=30)
    after = [pid for broker in brokers for pid in producer_ids(broker, 5)]
    assert len(set(after)) == len(after) and not set(after) & set(seen)


def metadata(broker: ClusterBroker, name: str, *, auto: bool):
    """Topic ``name`` as ``broker`` alone answers Metadata v12 (allowing auto-creation or not)."""
    topic = load_payload_module(3, 12, EntityType.request).MetadataRequestTopic(topic_id=None, name=name)
    with Wire(broker.port, host=broker.host) as w:
        answer = w.request(request_class(3, 12)(topics=(topic,), allow_auto_topic_creation=auto,
                                                include_topic_authorized_operations=False))  # fmt: skip
    return answer


def test_topics_are_auto_created_by_any_broker_with_the_cluster_defaults(
    brokers: list[ClusterBroker],
) -> None:
    controller_id = metadata(brokers[0], "x", auto=False).controller_id
    other = next(b for b in brokers if b.node_id != controller_id)  # not the controller
    assert metadata(other, "not-asked", auto=False).topics[0].error_code == UNKNOWN_TOPIC_OR_PARTITION
    first = metadata(other, "auto-made", auto=True).topics[0]
    assert first.error_code in (0, LEADER_NOT_AVAILABLE)  # created meanwhile, or being created

    def created():
        t = metadata(other, "auto-made", auto=False).topics[0]
        return t.error_code == 0 and all(p.leader_id >= 0 for p in t.partitions) and t

    topic = wait_for(created, what="the auto-created topic")
    assert len(topic.partitions) == 2  # num.partitions
    assert all(len(p.replica_nodes) == 2 and len(p.isr_nodes) == 2 for p in topic.partitions)
    assert metadata(other, "not-asked", auto=False).topics[0].error_code == UNKNOWN_TOPIC_OR_PARTITION
    # a producer writing to a topic nobody created (librdkafka asks with auto-creation allowed)
    producer = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all"})
    for i in range(10):
        producer.produce("auto-written", f"v{i}".encode(), partition=i % 2)
    assert producer.flush(60) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap(brokers), "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition("auto-written", p, 0) for p in (0, 1)])
    got: list[bytes] = []
    wait_for(lambda: got.extend(m.value() for m in consumer.consume(10, 0.5) if m.error() is None)
             or len(got) >= 10, timeout=30, what="the records back")  # fmt: skip
    consumer.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(10))


def test_the_high_watermark_does_not_go_back_when_the_whole_cluster_restarts(
    brokers: list[ClusterBroker],
) -> None:
    """Every broker killed at once and restarted: the first leader is the last in-sync replica,
    alone in the ISR, so its high watermark is its log end at once; a consumer never sees the
    end offset below what was acknowledged (no high watermark restarting at 0)."""
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    admin.create_topics([NewTopic("hw", 1, replication_factor=3)])["hw"].result(timeout=20)
    wait_for(lambda: (t := admin.list_topics("hw", timeout=10).topics["hw"]).error is None
             and sorted(t.partitions[0].isrs) == [1, 2, 3], what="hw in sync")  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all"})
    for i in range(100):
        producer.produce("hw", f"r{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    for broker in brokers:
        broker.kill()
    for broker in reversed(brokers):
        broker.start(timeout=30)
    # ListOffsets (latest) to the partition's leader, as consumers ask for the end offset; through
    # the admin client, which looks the leader up for each request (librdkafka's consumer can keep
    # answering "unknown partition" for one it first looked up while it had no leader, although
    # every broker's Metadata names the leader by then)
    reader = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    ends: list[int] = []

    def end_offset() -> int | None:
        futures = reader.list_offsets({TopicPartition("hw", 0): OffsetSpec.latest()}, request_timeout=2)
        try:
            [answer] = [future.result(timeout=10) for future in futures.values()]
        except KafkaException:
            return None  # no leader yet (LEADER_NOT_AVAILABLE / NOT_LEADER_OR_FOLLOWER)
        ends.append(answer.offset)
        return answer.offset

    wait_for(lambda: (e := end_offset()) is not None and e >= 100 and len(ends) >= 5, timeout=60,
             interval=0.05, what="the end offset from the restarted leader")  # fmt: skip
    assert all(end >= 100 for end in ends), ends
