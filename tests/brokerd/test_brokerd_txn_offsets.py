"""Offsets committed inside a transaction live in ``__consumer_offsets`` as the producer's
transactional records, which its commit or abort marker there decides.

The broker is killed between TxnOffsetCommit and EndTxn: the group coordinator that loads the
partition again rebuilds the pending offsets from the log (OffsetFetch with require_stable
answers UNSTABLE_OFFSET_COMMIT for them, KIP-447), and the marker that ends the transaction
afterwards applies or drops them.
"""

from __future__ import annotations

import datetime
import json
import time

import pytest
from brokerd_wire import Wire, request_class
from confluent_kafka.admin import AdminClient, NewTopic
from kio.index import load_payload_module
from kio.static.constants import EntityType

from tests.brokerd.conftest import Broker
from tests.brokerd.test_brokerd_transactions import unique

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

UNSTABLE_OFFSET_COMMIT = 88


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(
        tmp_path_factory.mktemp("txnoffsets"),
        settings={"group.initial.rebalance.delay.ms": 0, "transaction.state.log.num.partitions": 3},
    )
    b.start()
    yield b
    b.stop()


def fetch(b: Broker, group: str, topic: str) -> tuple[int, int]:
    """OffsetFetch v8 with require_stable: (error code, committed offset) of partition 0,
    retried while the coordinator loads its partition after a restart."""
    module = load_payload_module(9, 8, EntityType.request)
    request = request_class(9, 8)(
        require_stable=True,
        groups=(
            module.OffsetFetchRequestGroup(
                group_id=group,
                topics=(module.OffsetFetchRequestTopics(name=topic, partition_indexes=(0,)),),
            ),
        ),
    )
    deadline = time.monotonic() + 30
    while True:
        with Wire(b.port) as w:
            [g] = w.request(request).groups
        if g.error_code == 0:
            part = g.topics[0].partitions[0]
            return part.error_code, part.committed_offset
        assert time.monotonic() < deadline, f"OffsetFetch kept failing: {g.error_code}"
        time.sleep(0.2)


def wait_for(b: Broker, group: str, topic: str, expected: tuple[int, int]) -> None:
    deadline = time.monotonic() + 30
    while (got := fetch(b, group, topic)) != expected:
        assert time.monotonic() < deadline, f"{got} != {expected}"
        time.sleep(0.2)


RETRIABLE = {14, 15, 51}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, CONCURRENT_TRANSACTIONS


def call(b: Broker, request, error_of=lambda r: r.error_code):
    """One request, repeated (on a new connection) while the coordinator is loading or busy."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with Wire(b.port) as w:
                resp = w.request(request)
        except OSError:
            resp = None
        if resp is not None and error_of(resp) not in RETRIABLE:
            return resp
        assert time.monotonic() < deadline, f"{type(request).__name__} kept failing"
        time.sleep(0.2)


def offsets_in_transaction(b: Broker, tid: str, pid: int, epoch: int, group: str, topic: str, offset: int):
    call(b, request_class(10, 3)(key=group, key_type=0))  # creates __consumer_offsets
    add = request_class(25, 3)(transactional_id=tid, producer_id=pid, producer_epoch=epoch, group_id=group)
    resp = call(b, add)
    assert resp.error_code == 0
    module = load_payload_module(28, 3, EntityType.request)
    part = module.TxnOffsetCommitRequestPartition(
        partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata=""
    )
    resp = call(b, request_class(28, 3)(
        transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch, generation_id=-1,
        member_id="", group_instance_id=None,
        topics=(module.TxnOffsetCommitRequestTopic(name=topic, partitions=(part,)),),
    ), lambda r: r.topics[0].partitions[0].error_code)  # fmt: skip
    assert resp.topics[0].partitions[0].error_code == 0


def end_txn(b: Broker, tid: str, pid: int, epoch: int, commit: bool) -> None:
    resp = call(
        b, request_class(26, 3)(transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit)
    )
    assert resp.error_code == 0


def transactional_producer(b: Broker) -> tuple[str, str, str, int, int]:
    """A new topic, group and transactional id, and the id's producer id and epoch."""
    topic = unique("src")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    group = unique("eos")
    tid = unique("tx")
    timeout = datetime.timedelta(seconds=60)
    init = request_class(22, 4)(
        transactional_id=tid, transaction_timeout=timeout, producer_id=-1, producer_epoch=-1
    )
    resp = call(b, init)
    return topic, group, tid, resp.producer_id, resp.producer_epoch


def test_a_restart_between_the_offsets_and_the_end_of_the_transaction(broker) -> None:
    topic, group, tid, pid, epoch = transactional_producer(broker)

    offsets_in_transaction(broker, tid, pid, epoch, group, topic, 5)
    assert fetch(broker, group, topic) == (UNSTABLE_OFFSET_COMMIT, -1)
    broker.kill()
    broker.start()
    # read back from __consumer_offsets: still pending, not committed
    assert fetch(broker, group, topic) == (UNSTABLE_OFFSET_COMMIT, -1)
    end_txn(broker, tid, pid, epoch, True)
    wait_for(broker, group, topic, (0, 5))

    offsets_in_transaction(broker, tid, pid, epoch, group, topic, 9)
    broker.kill()
    broker.start()
    assert fetch(broker, group, topic) == (UNSTABLE_OFFSET_COMMIT, -1)
    end_txn(broker, tid, pid, epoch, False)
    wait_for(broker, group, topic, (0, 5))  # the abort marker dropped 9

    # once decided, the transaction's outcome survives another restart (the marker is in the log)
    broker.kill()
    broker.start()
    wait_for(broker, group, topic, (0, 5))
    assert not list(broker.data_dir.rglob("pending_txn_offsets.json"))


def test_offsets_an_earlier_version_held_in_its_file_are_decided_by_their_transaction(broker) -> None:
    """A broker upgraded while a transaction held offsets in the former file
    (``pending_txn_offsets.json``) commits them when that transaction commits, then removes
    the file."""
    topic, group, tid, pid, epoch = transactional_producer(broker)
    call(broker, request_class(10, 3)(key=group, key_type=0))
    add = request_class(25, 3)(transactional_id=tid, producer_id=pid, producer_epoch=epoch, group_id=group)
    assert call(broker, add).error_code == 0
    broker.stop()
    held = {"version": 1, "producers": {str(pid): {group: [[topic, 0, 11, -1, "", 1]]}}}
    path = broker.data_dir / "__producer_state" / "pending_txn_offsets.json"
    path.write_text(json.dumps(held))
    broker.start()
    assert fetch(broker, group, topic) == (UNSTABLE_OFFSET_COMMIT, -1)
    end_txn(broker, tid, pid, epoch, True)
    wait_for(broker, group, topic, (0, 11))
    assert not path.exists()
