"""The replication admin APIs against one shared cluster of three real brokerd processes (on
127.0.0.1, .2 and .3) on a real etcd, driven by confluent-kafka and kafka-python admin clients.
Every test produces before it administers and consumes after, and compares what it reads.

confluent-kafka (2.16, librdkafka 2.16) has no partition reassignment calls and describes
topics with Metadata, not DescribeTopicPartitions: kafka-python's admin client covers those."""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ElectionType, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from brokerd.protocol import kio_adapter
from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, start_brokers, wait_for
from tests.etcd_server import EtcdServer

UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS, NO_REASSIGNMENT_IN_PROGRESS = 3, 37, 85


class Cluster:
    def __init__(self, brokers: list[ClusterBroker]) -> None:
        self.brokers = brokers
        self.bootstrap = ",".join(b.bootstrap for b in brokers)
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        # One idempotent producer for the module (fewer connections to the shared cluster)
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                                  "enable.idempotence": True, "topic.metadata.refresh.interval.ms": 500})

    def kafka_python_admin(self):
        with warnings.catch_warnings():  # kafka-python 3 reads its schemas with a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=20000)

    def create_topic(self, name: str, partitions: int, rf: int = 3) -> None:
        # every broker registered (one a test restarted, or one whose lease a loaded machine let
        # lapse, registers again), or replicas would be placed over fewer
        wait_for(lambda: len(self.admin.list_topics(timeout=10).brokers) == len(self.brokers), what="brokers")
        self.admin.create_topics([NewTopic(name, partitions, replication_factor=rf)])[name].result(timeout=20)

        def ready():
            topic = self.admin.list_topics(name, timeout=10).topics[name]
            parts = topic.partitions.values()
            return topic.error is None and len(parts) == partitions and all(p.leader >= 0 for p in parts)

        wait_for(ready, what=f"topic {name}'s leaders")

    def produce(self, topic: str, count: int) -> list[tuple[int, bytes]]:
        producer = self.producer
        sent: list[tuple[int, bytes]] = []
        errors: list = []

        def done(err, msg):
            if err is not None:
                errors.append(err)
            else:
                sent.append((msg.partition(), msg.value()))

        for i in range(count):
            producer.produce(topic, f"{topic}-{i}".encode(), key=str(i).encode(), on_delivery=done)
        assert producer.flush(30) == 0
        assert not errors, errors
        return sent

    def consume(self, topic: str, count: int) -> list[tuple[int, bytes]]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
            got: list[tuple[int, bytes]] = []
            wait_for(lambda: _poll_into(consumer, got) >= count, timeout=30, what=f"{count} of {topic}")
            return got
        finally:
            consumer.close()


def _poll_into(consumer: Consumer, got: list) -> int:
    for msg in consumer.consume(500, timeout=0.5):
        if msg.error() is None:
            got.append((msg.partition(), msg.value()))
    return len(got)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, etcd_server: EtcdServer) -> Iterator[Cluster]:
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    brokers = cluster_brokers(tmp_path_factory.mktemp("admin-cluster"), etcd_server, prefix)
    try:
        start_brokers(brokers)
        cluster = Cluster(brokers)
        wait_for(lambda: len(cluster.admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        yield cluster
    finally:
        for broker in brokers:
            broker.kill()


def _requests_of(broker: ClusterBroker, api: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kastle_requests_total{") and f'api="{api}"' in line)


def test_describe_topic_partitions_pages_the_cluster_view(cluster: Cluster) -> None:
    cluster.create_topic("dtp-a", 5)
    cluster.create_topic("dtp-b", 2)
    sent = cluster.produce("dtp-a", 200)

    # confluent-kafka (librdkafka 2.x) describes topics with Metadata, not DescribeTopicPartitions;
    # both views must agree
    described = cluster.admin.describe_topics(TopicCollection(["dtp-a"]))["dtp-a"].result(timeout=20)
    meta = cluster.admin.list_topics("dtp-a", timeout=10).topics["dtp-a"]
    assert [p.id for p in described.partitions] == list(range(5))
    for p in described.partitions:
        assert p.leader.id == meta.partitions[p.id].leader
        assert sorted(r.id for r in p.replicas) == [1, 2, 3]
        assert sorted(r.id for r in p.isr) == sorted(meta.partitions[p.id].isrs)

    admin = cluster.kafka_python_admin()
    try:
        before = sum(_requests_of(b, "DescribeTopicPartitions") for b in cluster.brokers)
        # three partitions a page: dtp-a 0-2, then dtp-a 3-4 and dtp-b 0, then dtp-b 1
        page = admin.describe_topic_partitions(["dtp-b", "dtp-a"], response_partition_limit=3)
        assert [t["name"] for t in page["topics"]] == ["dtp-a"]
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [0, 1, 2]
        assert page["next_cursor"] == {"topic_name": "dtp-a", "partition_index": 3}
        page = admin.describe_topic_partitions(["dtp-b", "dtp-a"], response_partition_limit=3,
                                               cursor=page["next_cursor"])
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in page["topics"]] == [
            ("dtp-a", [3, 4]), ("dtp-b", [0])]
        assert page["next_cursor"] == {"topic_name": "dtp-b", "partition_index": 1}
        page = admin.describe_topic_partitions(["dtp-b", "dtp-a"], response_partition_limit=3,
                                               cursor=page["next_cursor"])
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in page["topics"]] == [
            ("dtp-b", [1])]
        assert page["next_cursor"] is None
        assert sum(_requests_of(b, "DescribeTopicPartitions") for b in cluster.brokers) > before
        # exactly filling a page points the cursor at the next topic's start
        page = admin.describe_topic_partitions(["dtp-a", "dtp-b"], response_partition_limit=5)
        assert [t["name"] for t in page["topics"]] == ["dtp-a"]
        assert page["next_cursor"] == {"topic_name": "dtp-b", "partition_index": 0}
        # an unknown topic answers UNKNOWN_TOPIC_OR_PARTITION with no partitions
        page = admin.describe_topic_partitions(["dtp-missing"])
        assert [(t["name"], t["error_code"], t["partitions"]) for t in page["topics"]] == [
            ("dtp-missing", UNKNOWN_TOPIC_OR_PARTITION, [])]
        # no topics named: every topic, by name, each partition with its leader and epoch
        page = admin.describe_topic_partitions([])
        by_name = {t["name"]: t for t in page["topics"]}
        assert {"dtp-a", "dtp-b"} <= set(by_name)
        assert [t["name"] for t in page["topics"]] == sorted(by_name)
        for p in by_name["dtp-a"]["partitions"]:
            assert p["leader_id"] == meta.partitions[p["partition_index"]].leader
            assert p["leader_epoch"] >= 0 and p["offline_replicas"] == []
    finally:
        admin.close()

    assert sorted(cluster.consume("dtp-a", len(sent))) == sorted(sent)


def _partition(cluster: Cluster, topic: str, index: int):
    def ask():
        return cluster.admin.list_topics(topic, timeout=10).topics[topic].partitions[index]

    for _attempt in range(2):  # one may time out on a broker just killed: the client moves on
        with contextlib.suppress(KafkaException):
            return ask()
    return ask()


def _elect(cluster: Cluster, election_type: ElectionType, topic: str, index: int) -> str | None:
    """confluent-kafka's answer for one partition: None, or Kafka's error name."""
    answer = cluster.admin.elect_leaders(election_type, [TopicPartition(topic, index)]).result(timeout=20)
    (error,) = answer.values()
    return None if error is None else error.name()


def test_preferred_and_unclean_elections_through_the_controller(cluster: Cluster) -> None:
    cluster.create_topic("elect", 2)
    sent = cluster.produce("elect", 200)
    preferred = _partition(cluster, "elect", 0).replicas[0]
    victim = next(b for b in cluster.brokers if b.node_id == preferred)

    # the preferred replica goes away: leadership moves, and it cannot be elected back
    victim.kill()
    wait_for(lambda: _partition(cluster, "elect", 0).leader not in (-1, preferred), what="a new leader")
    assert _elect(cluster, ElectionType.PREFERRED, "elect", 0) == "PREFERRED_LEADER_NOT_AVAILABLE"
    assert _elect(cluster, ElectionType.UNCLEAN, "elect", 0) == "ELECTION_NOT_NEEDED"  # it has a leader
    sent += cluster.produce("elect", 100)

    # back and in sync again, it still does not lead until elected
    victim.start(timeout=30)
    wait_for(lambda: preferred in _partition(cluster, "elect", 0).isrs, timeout=30, what="the ISR")
    assert _partition(cluster, "elect", 0).leader != preferred
    admin = cluster.kafka_python_admin()
    try:
        answer = admin.elect_leaders(0, {"elect": [0]})
        assert [(r.topic, [(p.partition_id, p.error_code) for p in r.partition_result])
                for r in answer.replica_election_results] == [("elect", [(0, 0)])]
    finally:
        admin.close()
    wait_for(lambda: _partition(cluster, "elect", 0).leader == preferred, what="the preferred leader")
    assert _elect(cluster, ElectionType.PREFERRED, "elect", 0) == "ELECTION_NOT_NEEDED"
    assert _elect(cluster, ElectionType.PREFERRED, "elect", 7) == "UNKNOWN_TOPIC_OR_PART"

    sent += cluster.produce("elect", 100)
    assert sorted(cluster.consume("elect", len(sent))) == sorted(sent)


# kafka-python leaves the socket of a refused connection (to the killed bootstrap broker) to the
# garbage collector: collected at the end of the test, while this filter holds
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unclean_elections_bring_a_leaderless_partition_back(cluster: Cluster) -> None:
    """Both replicas of two partitions go down, the in-sync one last; the other comes back
    outside the ISR. The topic does not allow unclean elections, so the partitions stay
    leaderless until an operator asks for one: confluent-kafka for partition 0, kafka-python
    for partition 1. Nothing was written after the ISR shrank, so nothing is lost."""
    controller = cluster.admin.describe_cluster().result(timeout=20).controller.id
    in_sync, behind = (b for b in cluster.brokers if b.node_id != controller)  # the controller stays up
    order = [in_sync.node_id, behind.node_id]
    created = cluster.admin.create_topics([NewTopic("dirty", 2, replica_assignment=[order, order])])
    created["dirty"].result(timeout=20)
    wait_for(lambda: all(sorted(_partition(cluster, "dirty", i).isrs) == sorted(order) for i in (0, 1)),
             what="dirty in sync")  # fmt: skip
    sent = cluster.produce("dirty", 200)

    def led_by(index: int) -> int:
        return _partition(cluster, "dirty", index).leader

    try:
        behind.kill()
        wait_for(lambda: all(_partition(cluster, "dirty", i).isrs == [in_sync.node_id] for i in (0, 1)),
                 what="the ISR without the killed replica")  # fmt: skip
        in_sync.kill()
        wait_for(lambda: led_by(0) == led_by(1) == -1, what="no leader")
        # (the brokers report no leader before the controller has written it: until then the
        # dead preferred replica is still the leader on record, and the election not needed)
        refused = "PREFERRED_LEADER_NOT_AVAILABLE"
        wait_for(lambda: _elect(cluster, ElectionType.PREFERRED, "dirty", 0) == refused,
                 what="the controller to record no leader")  # fmt: skip
        assert _elect(cluster, ElectionType.UNCLEAN, "dirty", 0) == "ELIGIBLE_LEADERS_NOT_AVAILABLE"
        behind.start(timeout=30)
        wait_for(lambda: len(cluster.admin.list_topics(timeout=10).brokers) == 2, what="the replica back")
        # live but not in sync: never made leader without being asked
        for _ in range(10):
            assert led_by(0) == led_by(1) == -1
            time.sleep(0.1)

        assert _elect(cluster, ElectionType.UNCLEAN, "dirty", 0) is None
        admin = cluster.kafka_python_admin()
        try:
            answer = admin.elect_leaders(1, {"dirty": [1]})  # 1: unclean
            assert [(r.topic, [(p.partition_id, p.error_code) for p in r.partition_result])
                    for r in answer.replica_election_results] == [("dirty", [(1, 0)])]  # fmt: skip
        finally:
            admin.close()
            gc.collect()
        wait_for(lambda: led_by(0) == led_by(1) == behind.node_id, what="the unclean leader")
        assert _elect(cluster, ElectionType.UNCLEAN, "dirty", 0) == "ELECTION_NOT_NEEDED"
        assert all(_partition(cluster, "dirty", i).isrs == [behind.node_id] for i in (0, 1))
        assert sorted(cluster.consume("dirty", len(sent))) == sorted(sent)
    finally:
        for broker in (behind, in_sync):
            if broker.proc is None or broker.proc.poll() is not None:
                broker.start(timeout=30)
    # the other replica comes back, follows and rejoins the ISR; writes go on
    wait_for(lambda: all(sorted(_partition(cluster, "dirty", i).isrs) == sorted(order) for i in (0, 1)),
             timeout=30, what="both replicas in sync again")  # fmt: skip
    sent += cluster.produce("dirty", 100)
    assert sorted(cluster.consume("dirty", len(sent))) == sorted(sent)


def test_the_controller_gives_leaderships_back_to_preferred_replicas(
    tmp_path: Path, etcd_server: EtcdServer
) -> None:
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    settings = {"leader.imbalance.check.interval.seconds": 1, "leader.imbalance.per.broker.percentage": 10}
    brokers = cluster_brokers(tmp_path, etcd_server, prefix, settings=settings)
    try:
        start_brokers(brokers)
        cluster = Cluster(brokers)
        wait_for(lambda: len(cluster.admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        cluster.create_topic("rebalanced", 3)
        sent = cluster.produce("rebalanced", 150)
        preferred = {i: _partition(cluster, "rebalanced", i).replicas[0] for i in range(3)}
        victim = next(b for b in brokers if b.node_id == preferred[0])
        victim.kill()
        wait_for(lambda: all(_partition(cluster, "rebalanced", i).leader != victim.node_id for i in range(3)),
                 what="leaderships to leave the killed broker")
        sent += cluster.produce("rebalanced", 150)
        victim.start(timeout=30)
        # nobody asks for an election: the controller's imbalance check gives them back
        wait_for(lambda: all(_partition(cluster, "rebalanced", i).leader == preferred[i] for i in range(3)),
                 timeout=30, what="the preferred leaders back")
        sent += cluster.produce("rebalanced", 150)
        assert sorted(cluster.consume("rebalanced", len(sent))) == sorted(sent)
    finally:
        for broker in brokers:
            broker.kill()


def _create_partitions_error(cluster: Cluster, topic: str, count: int, assignment) -> str | None:
    extra = {} if assignment is None else {"replica_assignment": assignment}
    future = cluster.admin.create_partitions([NewPartitions(topic, count, **extra)])
    try:
        future[topic].result(timeout=20)
    except KafkaException as exc:
        return exc.args[0].name()
    return None


def test_create_partitions_with_assignments_across_the_cluster(cluster: Cluster) -> None:
    cluster.create_topic("grow", 1, rf=2)
    sent = cluster.produce("grow", 100)

    admin = cluster.kafka_python_admin()
    try:
        from kafka.admin import NewPartitions as KNewPartitions

        admin.create_partitions({"grow": KNewPartitions(3, [[2, 3], [3, 1]])})
    finally:
        admin.close()

    def replicas():
        topic = cluster.admin.list_topics("grow", timeout=10).topics["grow"]
        return {i: p.replicas for i, p in topic.partitions.items() if p.leader >= 0}

    wait_for(lambda: len(replicas()) == 3, what="the new partitions' leaders")
    assert replicas()[1] == [2, 3] and replicas()[2] == [3, 1]

    # what Kafka refuses, and why
    assert _create_partitions_error(cluster, "grow", 4, [[1, 1]]) == "INVALID_REPLICA_ASSIGNMENT"
    assert _create_partitions_error(cluster, "grow", 4, [[1, 9]]) == "INVALID_REPLICA_ASSIGNMENT"
    assert _create_partitions_error(cluster, "grow", 4, [[1]]) == "INVALID_REPLICA_ASSIGNMENT"
    admin = cluster.kafka_python_admin()
    try:
        from kafka.admin import NewPartitions as KNewPartitions

        answer = admin.create_partitions({"grow": KNewPartitions(2), "grow-missing": KNewPartitions(2)},
                                         raise_errors=False)
        assert sorted((r.name, r.error_code) for r in answer.results) == [
            ("grow", INVALID_PARTITIONS), ("grow-missing", UNKNOWN_TOPIC_OR_PARTITION)]
    finally:
        admin.close()
    assert len(replicas()) == 3  # nothing half-written

    # confluent-kafka with an assignment too
    assert _create_partitions_error(cluster, "grow", 4, [[1, 2]]) is None
    wait_for(lambda: len(replicas()) == 4, what="the assigned partition's leader")
    assert replicas()[3] == [1, 2]

    # automatic placement: two replicas on two racks (each broker has its own)
    assert _create_partitions_error(cluster, "grow", 6, None) is None
    wait_for(lambda: len(replicas()) == 6, what="the placed partitions' leaders")
    assert all(len(set(r)) == 2 for r in replicas().values())

    wait_for(lambda: len(cluster.producer.list_topics("grow", timeout=10).topics["grow"].partitions) == 6,
             what="the producer to see 6 partitions")
    sent += cluster.produce("grow", 300)
    assert {p for p, _ in sent} == {0, 1, 2, 3, 4, 5}
    assert sorted(cluster.consume("grow", len(sent))) == sorted(sent)


def _create_topic_error(cluster: Cluster, new: NewTopic) -> str | None:
    try:
        cluster.admin.create_topics([new])[new.topic].result(timeout=20)
    except KafkaException as exc:
        return exc.args[0].name()
    return None


def test_create_topics_with_a_replica_assignment(cluster: Cluster) -> None:
    placed = NewTopic("placed", 3, replica_assignment=[[3, 1], [1, 2], [2, 3]])
    assert _create_topic_error(cluster, placed) is None
    admin = cluster.kafka_python_admin()
    try:
        from kafka.admin import NewTopic as KNewTopic

        admin.create_topics([KNewTopic("placed-kp", replica_assignments={0: [2], 1: [3]})])
    finally:
        admin.close()

    def replicas(name):
        topic = cluster.admin.list_topics(name, timeout=10).topics[name]
        return {i: p.replicas for i, p in topic.partitions.items() if p.leader >= 0}

    wait_for(lambda: len(replicas("placed")) == 3 and len(replicas("placed-kp")) == 2, what="the leaders")
    assert replicas("placed") == {0: [3, 1], 1: [1, 2], 2: [2, 3]}
    assert replicas("placed-kp") == {0: [2], 1: [3]}
    for bad in ([[1, 1]], [[1, 9]], [[1, 2], [3]]):
        assert _create_topic_error(cluster, NewTopic("misplaced", len(bad), replica_assignment=bad)) == (
            "INVALID_REPLICA_ASSIGNMENT"), bad
    assert "misplaced" not in cluster.admin.list_topics(timeout=10).topics  # nothing half-written

    wait_for(lambda: len(cluster.producer.list_topics("placed", timeout=10).topics["placed"].partitions) == 3,
             what="the producer to see the topic")
    sent = cluster.produce("placed", 300)
    assert {p for p, _ in sent} == {0, 1, 2}
    assert sorted(cluster.consume("placed", len(sent))) == sorted(sent)


def test_describe_log_dirs_lists_every_replica_a_broker_hosts(cluster: Cluster) -> None:
    cluster.create_topic("dirs", 3, rf=2)
    sent = cluster.produce("dirs", 90)
    meta = cluster.admin.list_topics("dirs", timeout=10).topics["dirs"]
    for broker in cluster.brokers:
        with Wire(broker.port, host=broker.host) as w:
            answer = w.request(request_class(35, 4)(topics=None))
        (result,) = answer.results
        hosted = sorted(p.partition_index for t in result.topics if t.name == "dirs" for p in t.partitions)
        assert hosted == sorted(i for i, p in meta.partitions.items() if broker.node_id in p.replicas)
    # kafka-python asks every broker the metadata names, for this topic only
    admin = cluster.kafka_python_admin()
    try:
        answers = admin.describe_log_dirs(["dirs"])
    finally:
        admin.close()
    hosted_by = {}
    for answer in answers:
        (log_dir,) = answer["log_dirs"]
        assert log_dir["error_code"] == 0
        partitions = [p for t in log_dir["topics"] for p in t["partitions"]]
        hosted_by[answer["broker"]] = sorted((p["partition_index"], p["partition_size"] > 0)
                                             for p in partitions)  # fmt: skip
    assert hosted_by == {
        b.node_id: sorted((i, True) for i, p in meta.partitions.items() if b.node_id in p.replicas)
        for b in cluster.brokers
    }
    assert sorted(cluster.consume("dirs", len(sent))) == sorted(sent)


def test_reassign_a_partition_to_other_brokers_and_list_it_while_it_runs(cluster: Cluster) -> None:
    import os
    import signal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.structs import TopicPartition as KTopicPartition
    cluster.create_topic("moved", 1, rf=1)
    sent = cluster.produce("moved", 500)
    (source,) = _partition(cluster, "moved", 0).replicas
    controller = cluster.admin.list_topics(timeout=10).controller_id
    # the one paused below must not be the controller, which admin requests go to
    first, second = sorted((b for b in cluster.brokers if b.node_id != source),
                           key=lambda b: b.node_id != controller)
    tp = KTopicPartition("moved", 0)
    admin = cluster.kafka_python_admin()
    try:
        from kafka.errors import NoReassignmentInProgressError

        assert admin.alter_partition_reassignments({tp: None}) == {tp: NoReassignmentInProgressError}
        # the second target is paused, so that the move cannot finish before it is listed
        os.kill(second.pid, signal.SIGSTOP)
        try:
            answer = admin.alter_partition_reassignments({tp: [first.node_id, second.node_id]})
            assert answer == {tp: None}
            listed = admin.list_partition_reassignments()
        finally:
            os.kill(second.pid, signal.SIGCONT)
        assert listed == {tp: {"replicas": [first.node_id, second.node_id, source],
                               "adding_replicas": [first.node_id, second.node_id],
                               "removing_replicas": [source]}}
        wait_for(lambda: _partition(cluster, "moved", 0).replicas == [first.node_id, second.node_id],
                 timeout=30, what="the reassignment to complete")
        assert admin.list_partition_reassignments() == {}
    finally:
        admin.close()
    p = _partition(cluster, "moved", 0)
    assert p.leader in (first.node_id, second.node_id) and sorted(p.isrs) == sorted(p.replicas)
    wait_for(lambda: _partition(cluster, "moved", 0).leader == first.node_id, what="the new leader")
    sent += cluster.produce("moved", 100)
    assert sorted(cluster.consume("moved", len(sent))) == sorted(sent)


def _reassign(wire: Wire, topic: str, replicas) -> int:
    mod = kio_adapter.request_module(45, 1)
    partition = mod.ReassignablePartition(partition_index=0, replicas=replicas)
    request = request_class(45, 1)(topics=(mod.ReassignableTopic(name=topic, partitions=(partition,)),))
    return wire.request(request).responses[0].partitions[0].error_code


def _listed(wire: Wire) -> list:
    answer = wire.request(request_class(46, 0)(topics=None))
    return [(t.name, p.partition_index, list(p.adding_replicas)) for t in answer.topics for p in t.partitions]


def test_cancel_a_running_reassignment_and_describe_the_cluster(cluster: Cluster) -> None:
    import os
    import signal

    described = cluster.admin.describe_cluster().result(timeout=20)
    assert described.controller.id == cluster.admin.list_topics(timeout=10).controller_id
    assert described.controller.id in {b.node_id for b in cluster.brokers}
    admin = cluster.kafka_python_admin()
    try:
        assert admin.describe_cluster()["controller_id"] == described.controller.id
    finally:
        admin.close()

    cluster.create_topic("unmoved", 1, rf=1)
    sent = cluster.produce("unmoved", 200)
    (source,) = _partition(cluster, "unmoved", 0).replicas
    controller = next(b for b in cluster.brokers if b.node_id == described.controller.id)
    target = next(b for b in cluster.brokers if b.node_id not in (source, controller.node_id))
    with Wire(controller.port, host=controller.host) as w:
        os.kill(target.pid, signal.SIGSTOP)  # it cannot catch up: the move stays in progress
        try:
            assert _reassign(w, "unmoved", (target.node_id,)) == 0
            assert _listed(w) == [("unmoved", 0, [target.node_id])]
            assert _reassign(w, "unmoved", None) == 0  # cancelled
        finally:
            os.kill(target.pid, signal.SIGCONT)
        assert _listed(w) == []
        assert _reassign(w, "unmoved", None) == NO_REASSIGNMENT_IN_PROGRESS
    wait_for(lambda: _partition(cluster, "unmoved", 0).replicas == [source], what="the original replicas")
    assert _partition(cluster, "unmoved", 0).leader == source
    sent += cluster.produce("unmoved", 100)
    assert sorted(cluster.consume("unmoved", len(sent))) == sorted(sent)
