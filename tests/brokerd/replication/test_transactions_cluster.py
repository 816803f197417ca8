"""Transactions on a three-broker cluster, with real transactional producers.

``__transaction_state`` is a replicated internal topic (replication factor 3, min ISR 2,
compacted); the coordinator of a transactional id is the leader of its partition, which is what
FindCoordinator answers. The partitions of a transaction are led by different brokers, so the
coordinator's markers travel to other brokers (WriteTxnMarkers), and a leader checks a producer's
first batch with a coordinator elsewhere (AddPartitionsToTxn, verify-only). confluent-kafka,
aiokafka and kafka-python commit and abort; read_committed sees only committed records; a second
producer fences the first; a transaction past its timeout is aborted; misuse gets Kafka's
errors; and when the coordinator's broker is SIGKILLed, the new leader of the partition loads
the ids: it completes a commit that was prepared (its marker sent again once the partition is
back) and aborts the transaction the dead one left open.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from pathlib import Path

import pytest
from brokerd_wire import Wire, request_class
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kio.index import load_payload_module
from kio.static.constants import EntityType

from brokerd.coordination.internal_topics import partition_for
from brokerd.records import ATTR_TRANSACTIONAL, build_batch
from tests.brokerd.replication.clustertest import cluster_brokers, partition_of, start_cluster, wait_for
from tests.brokerd.test_brokerd_transactions import consume as consume_until_quiet
from tests.brokerd.test_brokerd_transactions import producer, unique

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STATE = "__transaction_state"
STATE_PARTITIONS = 3
PARTITIONS = 3
INVALID_TXN_STATE = 48
TRANSACTION_ABORTABLE = 120


def consume(c, topic: str, partitions: int, isolation: str, *, settle: float = 0.8) -> dict[int, list]:
    return consume_until_quiet(c, topic, partitions, isolation, settle=settle)


def assert_consumed(c, topic: str, partitions: int, isolation: str, expected: dict) -> None:
    """What a consumer of that isolation level reads becomes ``expected`` (the markers of a
    transaction are written after EndTxn is answered, so the last stable offset may trail)."""
    deadline = time.monotonic() + 20
    while (got := consume(c, topic, partitions, isolation)) != expected:
        assert time.monotonic() < deadline, f"{got} != {expected}"


class Cluster:
    def __init__(self, brokers, bootstrap: str) -> None:
        self.brokers = brokers
        self.bootstrap = bootstrap

    def node(self, node_id: int):
        return next(b for b in self.brokers if b.node_id == node_id)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, etcd_server):
    settings = {
        "group.initial.rebalance.delay.ms": 0,
        "transaction.state.log.num.partitions": STATE_PARTITIONS,
        "offsets.topic.num.partitions": 3,
        "transaction.max.timeout.ms": 60000,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 200,
        # leaderships go back to their preferred replicas soon after a killed broker returns, so
        # that each test finds coordinators spread over the three brokers
        "leader.imbalance.check.interval.seconds": 1,
    }
    root = Path(tmp_path_factory.mktemp("txncluster"))
    brokers = cluster_brokers(root, etcd_server, f"/kastle-test/{uuid.uuid4().hex[:12]}/", settings=settings)
    try:
        yield Cluster(brokers, start_cluster(brokers))
    finally:
        for b in brokers:
            b.stop()


def create_topic(c: Cluster, partitions: int = PARTITIONS) -> str:
    name = unique("txc")
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 3)])[name].result(20)
    for i in range(partitions):
        wait_for(lambda i=i: (p := partition_of(c.bootstrap, name, i)) and len(p.isrs) == 3,
                 what=f"{name}-{i}")  # fmt: skip
    return name


def find_coordinator(c: Cluster, tid: str, version: int = 3) -> tuple[int, int]:
    """FindCoordinator(transaction) for ``tid``, asked of the first broker that answers: (error
    code, node id)."""
    b = next(b for b in c.brokers if b.proc is not None and b.proc.poll() is None)
    with Wire(b.ports["PLAINTEXT"], b.host) as w:
        if version >= 4:
            resp = w.request(request_class(10, version)(key_type=1, coordinator_keys=(tid,)))
            return resp.coordinators[0].error_code, resp.coordinators[0].node_id
        resp = w.request(request_class(10, version)(key=tid, key_type=1))
        return resp.error_code, resp.node_id


def coordinator_of(c: Cluster, tid: str) -> int:
    return wait_for(lambda: (a := find_coordinator(c, tid)) and a[0] == 0 and a[1],
                    what=f"coordinator of {tid}")  # fmt: skip


def test_the_coordinator_is_the_leader_of_the_ids_partition(cluster) -> None:
    tids = [unique("find") for _ in range(6)]
    for tid in tids:
        coordinator_of(cluster, tid)  # the first look-up has the controller create the topic
    for tid in tids:
        leader = partition_of(cluster.bootstrap, STATE, partition_for(tid, STATE_PARTITIONS)).leader
        assert find_coordinator(cluster, tid, 3) == (0, leader)
        assert find_coordinator(cluster, tid, 4) == (0, leader)  # the batched form
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    meta = admin.list_topics(STATE, timeout=10).topics[STATE]
    assert len(meta.partitions) == STATE_PARTITIONS
    assert all(len(p.replicas) == 3 for p in meta.partitions.values())
    configs = admin.describe_configs([ConfigResource("topic", STATE)])
    values = {k: v.value for k, v in next(iter(configs.values())).result(10).items()}
    assert values["cleanup.policy"] == "compact"
    assert values["min.insync.replicas"] == "2"


def test_commit_and_abort_across_brokers(cluster) -> None:
    topic = create_topic(cluster)
    leaders = {partition_of(cluster.bootstrap, topic, i).leader for i in range(PARTITIONS)}
    assert len(leaders) > 1  # markers go to more than one broker
    p = producer(cluster, unique("tx"))
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=b"c1-%d" % i, partition=i % PARTITIONS)
    p.commit_transaction(15)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=b"ab-%d" % i, partition=i % PARTITIONS)
    p.flush(15)
    p.abort_transaction(15)
    p.begin_transaction()
    p.produce(topic, value=b"c2-0", partition=0)
    p.commit_transaction(15)
    assert_consumed(cluster, topic, PARTITIONS, "read_committed", {
        0: [b"c1-0", b"c1-3", b"c2-0"], 1: [b"c1-1", b"c1-4"], 2: [b"c1-2", b"c1-5"],
    })  # fmt: skip
    assert_consumed(cluster, topic, PARTITIONS, "read_uncommitted", {
        0: [b"c1-0", b"c1-3", b"ab-0", b"c2-0"],
        1: [b"c1-1", b"c1-4", b"ab-1"],
        2: [b"c1-2", b"c1-5", b"ab-2"],
    })  # fmt: skip


def test_second_producer_fences_the_first(cluster) -> None:
    topic = create_topic(cluster, 1)
    tid = unique("tx")
    first = producer(cluster, tid)
    first.begin_transaction()
    first.produce(topic, value=b"zombie", partition=0)
    first.flush(10)
    second = producer(cluster, tid)
    second.begin_transaction()
    second.produce(topic, value=b"winner", partition=0)
    second.commit_transaction(15)
    with pytest.raises(KafkaException) as info:
        first.commit_transaction(10)
    assert info.value.args[0].code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
    )  # fmt: skip
    assert_consumed(cluster, topic, 1, "read_committed", {0: [b"winner"]})


def test_timed_out_transaction_is_aborted(cluster) -> None:
    topic = create_topic(cluster, 1)
    p = producer(cluster, unique("tx"), **{"transaction.timeout.ms": 1000})
    p.begin_transaction()
    p.produce(topic, value=b"late", partition=0)
    p.flush(10)
    deadline = time.monotonic() + 20  # once aborted, read_committed reads past it
    plain = Producer({"bootstrap.servers": cluster.bootstrap})
    plain.produce(topic, value=b"after", partition=0)
    plain.flush(10)
    while consume(cluster, topic, 1, "read_committed", settle=0.3) != {0: [b"after"]}:
        assert time.monotonic() < deadline, "the transaction was not aborted"
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_misuse_gets_kafkas_errors(cluster) -> None:
    too_long = Producer({
        "bootstrap.servers": cluster.bootstrap, "transactional.id": unique("tx"),
        "transaction.timeout.ms": 120000,
    })  # fmt: skip
    with pytest.raises(KafkaException) as info:
        too_long.init_transactions(15)
    assert info.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT

    topic = create_topic(cluster)
    tid = unique("tx")
    coordinator = cluster.node(coordinator_of(cluster, tid))
    with Wire(coordinator.ports["PLAINTEXT"], coordinator.host) as w:
        resp = w.request(request_class(22, 4)(
            transactional_id=tid, transaction_timeout=datetime.timedelta(seconds=30), producer_id=-1,
            producer_epoch=-1,
        ))  # fmt: skip
        assert resp.error_code == 0
        pid, epoch = resp.producer_id, resp.producer_epoch
        end = w.request(request_class(26, 3)(transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                                             committed=True))  # fmt: skip
        assert end.error_code == INVALID_TXN_STATE  # no transaction to end
    # a partition led by another broker than the coordinator: its leader asks the coordinator
    leaders = {i: partition_of(cluster.bootstrap, topic, i).leader for i in range(PARTITIONS)}
    index = next(i for i, node in leaders.items() if node != coordinator.node_id)
    leader = cluster.node(leaders[index])
    for version, expected in ((10, INVALID_TXN_STATE), (11, TRANSACTION_ABORTABLE)):
        batch = build_batch([(None, b"v")], timestamp_ms=int(time.time() * 1000), producer_id=pid,
                            producer_epoch=epoch, base_sequence=0, attributes=ATTR_TRANSACTIONAL)  # fmt: skip
        module = load_payload_module(0, version, EntityType.request)
        data = module.TopicProduceData(
            name=topic, partition_data=(module.PartitionProduceData(index=index, records=bytes(batch)),)
        )
        with Wire(leader.ports["PLAINTEXT"], leader.host) as w:
            resp = w.request(request_class(0, version)(
                transactional_id=tid, acks=-1, timeout=datetime.timedelta(seconds=5), topic_data=(data,)
            ))  # fmt: skip
        assert resp.responses[0].partition_responses[0].error_code == expected


def test_aiokafka_and_kafka_python_transactional_producers(cluster) -> None:
    from aiokafka import AIOKafkaProducer
    from kafka import KafkaProducer

    topic = create_topic(cluster)

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, transactional_id=unique("tx-aio"))
        await p.start()
        try:
            async with p.transaction():
                for i in range(PARTITIONS):
                    await p.send_and_wait(topic, b"aio-1", partition=i)
            await p.begin_transaction()
            await p.send_and_wait(topic, b"aio-aborted", partition=0)
            await p.abort_transaction()
        finally:
            await p.stop()

    asyncio.run(run())
    kp = KafkaProducer(bootstrap_servers=cluster.bootstrap, transactional_id=unique("tx-kp"))
    try:
        kp.init_transactions()
        kp.begin_transaction()
        for i in range(PARTITIONS):
            kp.send(topic, b"kp-1", partition=i)
        kp.commit_transaction()
        kp.begin_transaction()
        kp.send(topic, b"kp-aborted", partition=1)
        kp.flush()
        kp.abort_transaction()
    finally:
        kp.close(timeout=5)
    assert_consumed(cluster, topic, PARTITIONS, "read_committed", {
        0: [b"aio-1", b"kp-1"], 1: [b"aio-1", b"kp-1"], 2: [b"aio-1", b"kp-1"],
    })  # fmt: skip
    assert_consumed(cluster, topic, PARTITIONS, "read_uncommitted", {
        0: [b"aio-1", b"aio-aborted", b"kp-1"],
        1: [b"aio-1", b"kp-1", b"kp-aborted"],
        2: [b"aio-1", b"kp-1"],
    })  # fmt: skip


def restart(c: Cluster, *brokers) -> None:
    """Start killed brokers again and wait until the transaction coordinators are spread over
    the three brokers again (the preferred leaders of ``__transaction_state``)."""
    for b in brokers:
        if b.proc is None or b.proc.poll() is not None:
            b.start(timeout=60)
    def spread() -> bool:
        parts = [partition_of(c.bootstrap, STATE, i) for i in range(STATE_PARTITIONS)]
        return all(parts) and len({p.leader for p in parts}) == STATE_PARTITIONS

    wait_for(spread, timeout=60, what="coordinators on every broker")


def _state(c: Cluster, tid: str) -> str | None:
    """The id's state as its coordinator describes it (DescribeTransactions), or None."""
    error, node = find_coordinator(c, tid)
    if error or node <= 0:
        return None
    b = c.node(node)
    try:
        with Wire(b.ports["PLAINTEXT"], b.host) as w:
            found = w.request(request_class(65, 0)(transactional_ids=(tid,))).transaction_states[0]
    except OSError:
        return None
    return found.transaction_state if found.error_code == 0 else None


def test_a_new_coordinator_completes_a_prepared_commit(cluster) -> None:
    """EndTxn(commit) is answered once PrepareCommit is durable; the marker cannot be written
    while the partition's only replica is down. SIGKILL of the coordinator then: the new leader of
    the id's partition loads PrepareCommit and sends the marker again until the partition is back."""
    tid = unique("tx")
    coordinator = cluster.node(coordinator_of(cluster, tid))
    leader = next(b for b in cluster.brokers if b is not coordinator)
    topic = unique("txc")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 1, replica_assignment=[[leader.node_id]])])[topic].result(20)
    wait_for(lambda: (p := partition_of(cluster.bootstrap, topic, 0)) and p.leader == leader.node_id,
             what=topic)  # fmt: skip
    p = producer(cluster, tid)
    p.begin_transaction()
    p.produce(topic, value=b"prepared", partition=0)
    assert p.flush(15) == 0
    leader.kill()
    try:
        p.commit_transaction(30)  # answered: PrepareCommit is durable, the marker is not written
        assert _state(cluster, tid) == "PrepareCommit"
        coordinator.kill()
        wait_for(lambda: (a := find_coordinator(cluster, tid)) and a[0] == 0 and a[1] != coordinator.node_id,
                 timeout=30, what="a new coordinator")  # fmt: skip
        wait_for(lambda: _state(cluster, tid) == "PrepareCommit", timeout=30, what="the prepared commit")
        leader.start(timeout=60)
        wait_for(lambda: _state(cluster, tid) == "CompleteCommit", timeout=30, what="the commit completed")
        assert_consumed(cluster, topic, 1, "read_committed", {0: [b"prepared"]})
    finally:
        restart(cluster, leader, coordinator)


def test_new_coordinator_aborts_what_a_killed_one_left_open(cluster) -> None:
    """SIGKILL of the coordinator's broker with a transaction open: the new leader of the id's
    partition loads it from its replica, and the next producer of the id finds it there."""
    topic = create_topic(cluster)
    tid = unique("tx")
    first = producer(cluster, tid)
    first.begin_transaction()
    for i in range(PARTITIONS):
        first.produce(topic, value=b"committed", partition=i)
    first.commit_transaction(15)
    first.begin_transaction()
    for i in range(PARTITIONS):
        first.produce(topic, value=b"open", partition=i)
    first.flush(10)
    dead = cluster.node(coordinator_of(cluster, tid))
    dead.kill()
    try:
        wait_for(lambda: (a := find_coordinator(cluster, tid)) and a[0] == 0 and a[1] != dead.node_id,
                 timeout=30, what="a new coordinator")  # fmt: skip
        survivors = Cluster([b for b in cluster.brokers if b is not dead], "")
        survivors.bootstrap = ",".join(b.bootstrap for b in survivors.brokers)
        second = producer(survivors, tid)  # aborts the open transaction, fencing the first producer
        second.begin_transaction()
        for i in range(PARTITIONS):
            second.produce(topic, value=b"after", partition=i)
        second.commit_transaction(15)
        assert_consumed(survivors, topic, PARTITIONS, "read_committed", {
            i: [b"committed", b"after"] for i in range(PARTITIONS)
        })
    finally:
        restart(cluster, dead)


def group_coordinator(c: Cluster, group: str) -> int:
    """FindCoordinator(group): the leader of the group's __consumer_offsets partition."""

    def ask() -> int | None:
        for b in c.brokers:
            if b.proc is None or b.proc.poll() is not None:
                continue
            with Wire(b.ports["PLAINTEXT"], b.host) as w:
                resp = w.request(request_class(10, 3)(key=group, key_type=0))
            return resp.node_id if resp.error_code == 0 else None
        return None

    return wait_for(ask, timeout=30, what=f"coordinator of {group}")


def stable_offset(c: Cluster, group: str, topic: str) -> tuple[int, int] | None:
    """OffsetFetch v8 with require_stable from the group's coordinator: (error, offset), or None
    while it is moving or loading."""
    node = c.node(group_coordinator(c, group))
    module = load_payload_module(9, 8, EntityType.request)
    request = request_class(9, 8)(
        require_stable=True,
        groups=(
            module.OffsetFetchRequestGroup(
                group_id=group, topics=(module.OffsetFetchRequestTopics(name=topic, partition_indexes=(0,)),)
            ),
        ),
    )
    try:
        with Wire(node.ports["PLAINTEXT"], node.host) as w:
            [g] = w.request(request).groups
    except OSError:
        return None
    if g.error_code != 0:
        return None
    part = g.topics[0].partitions[0]
    return int(part.error_code), part.committed_offset


def test_offsets_in_a_transaction_survive_the_group_coordinators_death(cluster) -> None:
    """SIGKILL of the group coordinator's broker between TxnOffsetCommit and EndTxn: the new
    leader of the group's __consumer_offsets partition rebuilds the pending offsets from its
    replica (UNSTABLE_OFFSET_COMMIT), and the commit marker the transaction coordinator then
    sends it makes them the group's."""
    from confluent_kafka import Consumer, TopicPartition

    topic = create_topic(cluster, 1)
    group = unique("eos")
    dead = cluster.node(group_coordinator(cluster, group))
    tid = next(t for t in (unique("tx") for _ in range(50)) if coordinator_of(cluster, t) != dead.node_id)
    p = producer(cluster, tid)
    reader = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    meta = reader.consumer_group_metadata()
    reader.close()
    p.begin_transaction()
    p.produce(topic, value=b"out", partition=0)
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 5)], meta, 15)
    assert stable_offset(cluster, group, topic) == (88, -1)  # UNSTABLE_OFFSET_COMMIT
    dead.kill()
    try:
        moved = lambda: group_coordinator(cluster, group) != dead.node_id  # noqa: E731
        wait_for(moved, timeout=30, what="a new coordinator")
        loaded = wait_for(lambda: stable_offset(cluster, group, topic), timeout=30, what="the loaded group")
        assert loaded == (88, -1)
        p.commit_transaction(30)
        committed = lambda: stable_offset(cluster, group, topic) == (0, 5)  # noqa: E731
        wait_for(committed, timeout=30, what="the committed offset")
    finally:
        dead.start(timeout=60)

