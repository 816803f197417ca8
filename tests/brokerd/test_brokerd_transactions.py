"""Transactions on a standalone broker, with real transactional producers.

confluent-kafka, aiokafka and kafka-python commit and abort; read_committed consumers see only
committed records (in order), read_uncommitted ones everything; a second producer with the same
transactional id fences the first; a transaction open past its timeout is aborted and its
producer fenced; misuse gets Kafka's errors; and open, committed and aborted transactions keep
their meaning across a crash of the broker.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import time

import pytest
from brokerd_wire import Wire, request_class
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.index import load_payload_module
from kio.static.constants import EntityType

from brokerd.records import ATTR_TRANSACTIONAL, build_batch
from tests.brokerd.conftest import Broker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(
        tmp_path_factory.mktemp("txn"),
        settings={
            "group.initial.rebalance.delay.ms": 0,
            "transaction.state.log.num.partitions": 3,
            "transaction.max.timeout.ms": 60000,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 200,
        },
    )
    b.start()
    yield b
    b.stop()


def create_topic(b: Broker, partitions: int = 2) -> str:
    name = unique("txt")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    return name


def producer(b: Broker, tid: str, **conf) -> Producer:
    p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": tid, "linger.ms": 5, **conf})
    p.init_transactions(15)
    return p


def consume(
    b: Broker, topic: str, partitions: int, isolation: str, *, settle: float = 1.5
) -> dict[int, list]:
    """Every value each partition shows to a consumer of that isolation level (until quiet)."""
    c = Consumer({
        "bootstrap.servers": b.bootstrap, "group.id": unique("reader"), "isolation.level": isolation,
        "enable.auto.commit": False, "fetch.wait.max.ms": 50,
    })  # fmt: skip
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict[int, list] = {p: [] for p in range(partitions)}
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() - quiet_since < settle and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            if m.error():
                raise KafkaException(m.error())
            out[m.partition()].append(m.value())
            quiet_since = time.monotonic()
        return out
    finally:
        c.close()


def test_commit_and_abort_read_committed_and_uncommitted(broker) -> None:
    topic = create_topic(broker)
    p = producer(broker, unique("tx"))
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, value=b"c1-%d" % i, partition=i % 2)
    p.commit_transaction(15)
    p.begin_transaction()
    for i in range(4):
        p.produce(topic, value=b"ab-%d" % i, partition=i % 2)
    p.flush(15)
    p.abort_transaction(15)
    p.begin_transaction()
    p.produce(topic, value=b"c2-0", partition=0)
    p.produce(topic, value=b"c2-1", partition=1)
    p.commit_transaction(15)
    committed = consume(broker, topic, 2, "read_committed")
    assert committed == {
        0: [b"c1-0", b"c1-2", b"c1-4", b"c2-0"],
        1: [b"c1-1", b"c1-3", b"c1-5", b"c2-1"],
    }
    everything = consume(broker, topic, 2, "read_uncommitted")  # markers stay hidden
    assert everything == {
        0: [b"c1-0", b"c1-2", b"c1-4", b"ab-0", b"ab-2", b"c2-0"],
        1: [b"c1-1", b"c1-3", b"c1-5", b"ab-1", b"ab-3", b"c2-1"],
    }


def test_open_transaction_holds_back_read_committed_and_the_lso(broker) -> None:
    topic = create_topic(broker, 1)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    plain.produce(topic, value=b"before", partition=0)
    plain.flush(10)
    p = producer(broker, unique("tx"))
    p.begin_transaction()
    p.produce(topic, value=b"open", partition=0)
    p.flush(10)
    plain.produce(topic, value=b"after", partition=0)  # behind the open transaction
    plain.flush(10)
    assert consume(broker, topic, 1, "read_committed", settle=0.8) == {0: [b"before"]}
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "isolation.level": "read_committed"}
    )
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 1)  # the LSO
    finally:
        c.close()
    p.commit_transaction(15)
    assert consume(broker, topic, 1, "read_committed") == {0: [b"before", b"open", b"after"]}


def test_second_producer_fences_the_first(broker) -> None:
    topic = create_topic(broker, 1)
    tid = unique("tx")
    first = producer(broker, tid)
    first.begin_transaction()
    first.produce(topic, value=b"zombie", partition=0)
    first.flush(10)
    second = producer(broker, tid)  # aborts the first's open transaction, bumps the epoch
    second.begin_transaction()
    second.produce(topic, value=b"winner", partition=0)
    second.commit_transaction(15)
    with pytest.raises(KafkaException) as info:
        first.commit_transaction(10)
    assert info.value.args[0].code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    )
    assert consume(broker, topic, 1, "read_committed") == {0: [b"winner"]}


def test_timed_out_transaction_is_aborted_and_its_producer_fenced(broker) -> None:
    topic = create_topic(broker, 1)
    p = producer(broker, unique("tx"), **{"transaction.timeout.ms": 1000})
    p.begin_transaction()
    p.produce(topic, value=b"late", partition=0)
    p.flush(10)
    deadline = time.monotonic() + 15  # the coordinator aborts it: the LSO passes the marker
    while (
        consume(broker, topic, 1, "read_uncommitted", settle=0.3) != {0: [b"late"]} or _lso(broker, topic) < 2
    ):
        assert time.monotonic() < deadline, "the transaction was not aborted"
        time.sleep(0.2)
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    assert consume(broker, topic, 1, "read_committed", settle=0.5) == {0: []}


def _lso(b: Broker, topic: str) -> int:
    c = Consumer(
        {"bootstrap.servers": b.bootstrap, "group.id": unique("g"), "isolation.level": "read_committed"}
    )
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def test_transaction_timeout_above_the_broker_maximum(broker) -> None:
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "transactional.id": unique("tx"),
            "transaction.timeout.ms": 120000,
        }
    )
    with pytest.raises(KafkaException) as info:
        p.init_transactions(10)
    assert info.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT


def _init(w: Wire, tid: str) -> tuple[int, int]:
    resp = w.request(
        request_class(22, 4)(
            transactional_id=tid,
            transaction_timeout=datetime.timedelta(seconds=30),
            producer_id=-1,
            producer_epoch=-1,
        )
    )
    assert resp.error_code == 0
    return resp.producer_id, resp.producer_epoch


@pytest.mark.parametrize(("version", "expected"), [(10, 48), (11, 120)])
def test_produce_to_a_partition_not_in_the_transaction(broker, version: int, expected: int) -> None:
    """INVALID_TXN_STATE, or TRANSACTION_ABORTABLE at the Produce versions that have it."""
    topic = create_topic(broker, 1)
    tid = unique("tx")
    with Wire(broker.port) as w:
        pid, epoch = _init(w, tid)
        batch = build_batch(
            [(None, b"v")],
            timestamp_ms=int(time.time() * 1000),
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=0,
            attributes=ATTR_TRANSACTIONAL,
        )
        module = load_payload_module(0, version, EntityType.request)
        data = module.TopicProduceData(
            name=topic, partition_data=(module.PartitionProduceData(index=0, records=bytes(batch)),)
        )
        resp = w.request(request_class(0, version)(
            transactional_id=tid, acks=-1, timeout=datetime.timedelta(seconds=5), topic_data=(data,)
        ))  # fmt: skip
        assert resp.responses[0].partition_responses[0].error_code == expected


def test_transactions_survive_a_broker_crash(broker) -> None:
    topic = create_topic(broker, 1)
    tid = unique("tx")
    p = producer(broker, tid)
    p.begin_transaction()
    p.produce(topic, value=b"committed", partition=0)
    p.commit_transaction(15)
    p.begin_transaction()
    p.produce(topic, value=b"aborted", partition=0)
    p.flush(10)
    p.abort_transaction(15)
    p.begin_transaction()
    p.produce(topic, value=b"open", partition=0)
    p.flush(10)
    broker.kill()
    broker.start()
    # the open transaction still holds back read_committed; the aborted one stays hidden
    assert consume(broker, topic, 1, "read_committed", settle=1.0) == {0: [b"committed"]}
    assert consume(broker, topic, 1, "read_uncommitted", settle=0.5) == {
        0: [b"committed", b"aborted", b"open"]
    }
    again = producer(broker, tid)  # the coordinator, read back from its log, aborts the open one
    again.begin_transaction()
    again.produce(topic, value=b"after", partition=0)
    again.commit_transaction(15)
    assert consume(broker, topic, 1, "read_committed") == {0: [b"committed", b"after"]}


def test_offsets_committed_in_the_transaction(broker) -> None:
    """send_offsets_to_transaction: the group's offset appears only when the transaction commits."""
    source = create_topic(broker, 1)
    group = unique("eos")
    p = producer(broker, unique("tx"))
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        tp = TopicPartition(source, 0, 7)
        p.begin_transaction()
        p.send_offsets_to_transaction([tp], c.consumer_group_metadata(), 10)
        p.abort_transaction(15)
        assert c.committed([TopicPartition(source, 0)], timeout=10)[0].offset < 0  # dropped
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition(source, 0, 9)], c.consumer_group_metadata(), 10)
        p.commit_transaction(15)
        deadline = time.monotonic() + 10
        while c.committed([TopicPartition(source, 0)], timeout=10)[0].offset != 9:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        c.close()


def test_aiokafka_transactional_producer(broker) -> None:
    from aiokafka import AIOKafkaProducer

    topic = create_topic(broker, 1)

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx-aio"))
        await p.start()
        try:
            async with p.transaction():
                await p.send_and_wait(topic, b"aio-1", partition=0)
            await p.begin_transaction()
            await p.send_and_wait(topic, b"aio-aborted", partition=0)
            await p.abort_transaction()
            async with p.transaction():
                await p.send_and_wait(topic, b"aio-2", partition=0)
        finally:
            await p.stop()

    asyncio.run(run())
    assert consume(broker, topic, 1, "read_committed") == {0: [b"aio-1", b"aio-2"]}


def test_kafka_python_transactional_producer(broker) -> None:
    from kafka import KafkaProducer

    topic = create_topic(broker, 1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx-kp"))
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"kp-1", partition=0)
        p.commit_transaction()
        p.begin_transaction()
        p.send(topic, b"kp-aborted", partition=0)
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        p.send(topic, b"kp-2", partition=0)
        p.commit_transaction()
    finally:
        p.close(timeout=5)
    assert consume(broker, topic, 1, "read_committed") == {0: [b"kp-1", b"kp-2"]}
    assert consume(broker, topic, 1, "read_uncommitted") == {0: [b"kp-1", b"kp-aborted", b"kp-2"]}


def test_clients_cannot_write_the_transaction_state_topic(broker) -> None:
    producer(broker, unique("tx"))  # the topic exists from the first transactional producer on
    p = Producer({"bootstrap.servers": broker.bootstrap})
    errors = []
    p.produce(
        "__transaction_state", value=b"forged", partition=0, on_delivery=lambda err, _m: errors.append(err)
    )
    p.flush(15)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_EXCEPTION]
