"""Every API brokerd advertises, at its lowest and its highest advertised version, over a socket.

brokerd advertises Apache Kafka 4.1's version ranges for the APIs it serves (and no other API).
Each request is encoded with kio from Kafka's message specs, sent to a real brokerd, and the
answer is decoded with the response schema of the same version and checked for what Kafka would
answer: advertising a version is not implementing it.
"""

from __future__ import annotations

import datetime
import struct
import time
import uuid
from dataclasses import fields
from itertools import count

import pytest
from brokerd_wire import KAFKA_41, Wire, make_batch, request_class
from kio.index import load_payload_module
from kio.static.constants import EntityType

from brokerd.records import ATTR_TRANSACTIONAL, build_batch
from tests.brokerd.conftest import Broker

TOPIC = "matrix"
ZERO = datetime.timedelta(0)
_names = count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def build(cls: type, **kwargs):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def req(api_key: int, version: int, **kwargs):
    return build(request_class(api_key, version), **kwargs)


def part(api_key: int, version: int, class_name: str, **kwargs):
    """A nested entity of a request schema, with the fields this version has."""
    module = load_payload_module(api_key, version, EntityType.request)
    return build(getattr(module, class_name), **kwargs)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(
        tmp_path_factory.mktemp("matrix"),
        sasl=True,
        settings={
            "group.initial.rebalance.delay.ms": 0,  # Kafka's development config
            "authorizer.enable": True,
            "super.users": "User:ANONYMOUS",
            "num.partitions": 2,
        },
    )
    b.start()
    with Wire(b.port) as w:
        created = w.request(
            req(
                19,
                5,
                topics=(
                    part(
                        19,
                        5,
                        "CreatableTopic",
                        name=TOPIC,
                        num_partitions=2,
                        replication_factor=1,
                        assignments=(),
                        configs=(),
                    ),
                ),
                timeout=datetime.timedelta(seconds=5),
                validate_only=False,
            )
        )
        assert created.topics[0].error_code == 0
        produce(w, 9, TOPIC, 0, [(b"k", b"v0"), (b"k", b"v1"), (b"k", b"v2")])
        # As clients do before any group request: FindCoordinator (which creates
        # __consumer_offsets), then group requests once its partitions are loaded.
        assert w.request(req(10, 3, key="g", key_type=0)).error_code == 0
        deadline = time.monotonic() + 15
        while w.request(req(16, 4, states_filter=())).error_code != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    yield b
    b.stop()


def produce(w: Wire, version: int, topic, partition: int, records) -> object:
    key = {"topic_id": topic} if version >= 13 else {"name": topic}
    data = part(
        0,
        version,
        "TopicProduceData",
        **key,
        partition_data=(
            part(0, version, "PartitionProduceData", index=partition, records=make_batch(records)),
        ),
    )
    return w.request(
        req(
            0,
            version,
            transactional_id=None,
            acks=-1,
            timeout=datetime.timedelta(seconds=5),
            topic_data=(data,),
        )
    )


def topic_id(w: Wire, name: str = TOPIC) -> uuid.UUID:
    meta = w.request(
        req(
            3,
            12,
            topics=(part(3, 12, "MetadataRequestTopic", name=name, topic_id=None),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
    )
    return meta.topics[0].topic_id


def create_topic(w: Wire, partitions: int = 1) -> str:
    name = unique("t")
    resp = w.request(
        req(
            19,
            7,
            topics=(
                part(
                    19,
                    7,
                    "CreatableTopic",
                    name=name,
                    num_partitions=partitions,
                    replication_factor=1,
                    assignments=(),
                    configs=(),
                ),
            ),
            timeout=datetime.timedelta(seconds=5),
            validate_only=False,
        )
    )
    assert resp.topics[0].error_code == 0
    return name


def join(w: Wire, group: str, version: int = 9) -> tuple[str, int, bytes]:
    """Join a new group alone: (member id, generation, the leader's assignment after SyncGroup)."""
    member = ""
    for _ in range(2):  # v4+: the first join answers MEMBER_ID_REQUIRED with the id to use
        resp = w.request(
            req(
                11,
                version,
                group_id=group,
                session_timeout=datetime.timedelta(seconds=10),
                rebalance_timeout=datetime.timedelta(seconds=10),
                member_id=member,
                group_instance_id=None,
                protocol_type="matrix",
                reason=None,
                protocols=(part(11, version, "JoinGroupRequestProtocol", name="p", metadata=b"meta"),),
            )
        )
        member = resp.member_id
        if resp.error_code == 0:
            break
        assert resp.error_code == 79  # MEMBER_ID_REQUIRED
    assert resp.error_code == 0 and resp.leader == member, resp
    return member, resp.generation_id, b""


def sync(w: Wire, version: int, group: str, member: str, generation: int, assignment: bytes):
    return w.request(
        req(
            14,
            version,
            group_id=group,
            generation_id=generation,
            member_id=member,
            group_instance_id=None,
            protocol_type="matrix",
            protocol_name="p",
            assignments=(
                part(14, version, "SyncGroupRequestAssignment", member_id=member, assignment=assignment),
            ),
        )
    )


def commit(w: Wire, version: int, group: str, offset: int, generation: int = -1, member: str = ""):
    topics = (
        part(
            8,
            version,
            "OffsetCommitRequestTopic",
            name=TOPIC,
            partitions=(
                part(
                    8,
                    version,
                    "OffsetCommitRequestPartition",
                    partition_index=0,
                    committed_offset=offset,
                    committed_leader_epoch=-1,
                    committed_metadata="m",
                ),
            ),
        ),
    )
    return w.request(
        req(
            8,
            version,
            group_id=group,
            generation_id_or_member_epoch=generation,
            member_id=member,
            group_instance_id=None,
            retention_time=datetime.timedelta(milliseconds=-1),
            topics=topics,
        )
    )


# --- one check per API: (wire on PLAINTEXT, version, broker) --------------------------------------


def check_produce(w: Wire, v: int, b: Broker) -> None:
    if v < 3:  # Kafka 4 lists v0-2 for librdkafka's sake and refuses them by closing the connection
        # (kio has no schema below v3) acks, timeout, no topics
        w.send_raw(w.header(0, v, flexible=False) + struct.pack(">hii", 1, 0, 0))
        assert w.closed_by_peer()
        return
    tid = topic_id(w)
    resp = produce(w, v, tid, 1, [(b"k", b"x")])
    [topic] = resp.responses
    assert topic.topic_id == tid
    [p] = topic.partition_responses
    assert (p.index, p.error_code, p.log_start_offset) == (1, 0, 0) and p.base_offset >= 0
    # an id no broker knows is UNKNOWN_TOPIC_ID (Kafka's answer from v13)
    [p] = produce(w, v, uuid.uuid4(), 0, [(b"k", b"x")]).responses[0].partition_responses
    assert p.error_code == 100


def check_produce_lowest_usable(w: Wire, v: int, b: Broker) -> None:
    [p] = produce(w, 3, TOPIC, 1, [(b"k", b"y")]).responses[0].partition_responses
    assert p.error_code == 0 and p.base_offset >= 0


def check_fetch(w: Wire, v: int, b: Broker) -> None:
    tid = topic_id(w)
    topic = part(
        1,
        v,
        "FetchTopic",
        topic=TOPIC,
        topic_id=tid,
        partitions=(
            part(
                1,
                v,
                "FetchPartition",
                partition=0,
                current_leader_epoch=-1,
                fetch_offset=1,
                last_fetched_epoch=-1,
                log_start_offset=-1,
                partition_max_bytes=1 << 20,
            ),
        ),
    )
    resp = w.request(
        req(
            1,
            v,
            cluster_id=None,
            replica_id=-1,
            max_wait=datetime.timedelta(milliseconds=100),
            min_bytes=1,
            max_bytes=1 << 20,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=(topic,),
            forgotten_topics_data=(),
            rack_id="",
        )
    )
    [t] = resp.responses
    assert (t.topic_id == tid) if v >= 13 else (t.topic == TOPIC)
    [p] = t.partitions
    assert p.error_code == 0 and p.high_watermark >= 3
    # the batch holding offset 1 (offsets 0-2), whole: base offset 0, three records
    base, _length = struct.unpack_from(">qi", p.records, 0)
    assert base == 0 and struct.unpack_from(">i", p.records, 57)[0] == 3


def check_list_offsets(w: Wire, v: int, b: Broker) -> None:
    stamps = [-1, -2] + ([-5] if v >= 9 else [])
    topic = part(
        2,
        v,
        "ListOffsetsTopic",
        name=TOPIC,
        partitions=tuple(
            part(
                2,
                v,
                "ListOffsetsPartition",
                partition_index=0,
                current_leader_epoch=-1,
                timestamp=ts,
                max_num_offsets=1,
            )
            for ts in stamps
        ),
    )
    resp = w.request(
        req(2, v, replica_id=-1, isolation_level=0, topics=(topic,), timeout=datetime.timedelta(seconds=1))
    )
    parts = resp.topics[0].partitions
    assert [p.error_code for p in parts] == [0] * len(stamps)
    assert parts[0].offset >= 3 and parts[1].offset == 0
    if v >= 9:  # latest tiered: nothing is tiered without tiered storage
        assert (parts[2].offset, parts[2].leader_epoch) == (-1, -1)


def check_metadata(w: Wire, v: int, b: Broker) -> None:
    resp = w.request(
        req(
            3,
            v,
            topics=(part(3, v, "MetadataRequestTopic", name=TOPIC, topic_id=None),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
    )
    [topic] = resp.topics
    assert topic.name == TOPIC and topic.error_code == 0 and len(topic.partitions) == 2
    assert [(x.node_id, x.port) for x in resp.brokers] == [(1, b.port)]
    if v >= 13:
        assert resp.error_code == 0 and topic.topic_id == topic_id(w)


def check_offset_commit(w: Wire, v: int, b: Broker) -> None:
    group = unique("commit")
    resp = commit(w, v, group, 2)
    assert resp.topics[0].partitions[0].error_code == 0
    assert fetch_offsets(w, 9, group) == 2


def fetch_offsets(w: Wire, v: int, group: str) -> int:
    if v >= 8:
        resp = w.request(
            req(
                9,
                v,
                require_stable=False,
                groups=(
                    part(
                        9,
                        v,
                        "OffsetFetchRequestGroup",
                        group_id=group,
                        member_id=None,
                        member_epoch=-1,
                        topics=(part(9, v, "OffsetFetchRequestTopics", name=TOPIC, partition_indexes=(0,)),),
                    ),
                ),
            )
        )
        [g] = resp.groups
        assert g.error_code == 0
        return g.topics[0].partitions[0].committed_offset
    resp = w.request(
        req(
            9,
            v,
            group_id=group,
            topics=(part(9, v, "OffsetFetchRequestTopic", name=TOPIC, partition_indexes=(0,)),),
        )
    )
    p = resp.topics[0].partitions[0]
    assert p.error_code == 0
    return p.committed_offset


def check_offset_fetch(w: Wire, v: int, b: Broker) -> None:
    group = unique("fetch")
    assert commit(w, 9, group, 1).topics[0].partitions[0].error_code == 0
    assert fetch_offsets(w, v, group) == 1


def check_find_coordinator(w: Wire, v: int, b: Broker) -> None:
    if v < 4:
        resp = w.request(req(10, v, key="g", key_type=0))
        assert (resp.error_code, resp.node_id, resp.port) == (0, 1, b.port)
        return
    resp = w.request(req(10, v, key_type=0, coordinator_keys=("g1", "g2")))
    assert [(c.key, c.error_code, c.node_id, c.port) for c in resp.coordinators] == [
        ("g1", 0, 1, b.port),
        ("g2", 0, 1, b.port),
    ]
    txn_key = ("k" if v < 4 else None)
    if v >= 1:  # key type 1: the transaction coordinator (this broker, alone)
        if txn_key:
            resp = w.request(req(10, v, key="tx", key_type=1))
            assert (resp.error_code, resp.node_id, resp.port) == (0, 1, b.port)
        else:
            resp = w.request(req(10, v, key_type=1, coordinator_keys=("tx",)))
            assert [(c.error_code, c.node_id) for c in resp.coordinators] == [(0, 1)]
    if v >= 6:  # share groups: not served
        resp = w.request(req(10, v, key_type=2, coordinator_keys=(f"g:{uuid.uuid4()}:0",)))
        assert resp.coordinators[0].error_code == 35


def check_join_group(w: Wire, v: int, b: Broker) -> None:
    member, generation, _ = join(w, unique("join"), v)
    assert member and generation == 1


def check_heartbeat(w: Wire, v: int, b: Broker) -> None:
    group = unique("hb")
    member, generation, _ = join(w, group)
    assert sync(w, 5, group, member, generation, b"a").error_code == 0
    resp = w.request(
        req(12, v, group_id=group, generation_id=generation, member_id=member, group_instance_id=None)
    )
    assert resp.error_code == 0
    resp = w.request(
        req(12, v, group_id=group, generation_id=generation, member_id="nobody", group_instance_id=None)
    )
    assert resp.error_code == 25  # UNKNOWN_MEMBER_ID


def check_leave_group(w: Wire, v: int, b: Broker) -> None:
    group = unique("leave")
    member, _, _ = join(w, group)
    members = (
        (part(13, v, "MemberIdentity", member_id=member, group_instance_id=None, reason="done"),)
        if v >= 3
        else ()
    )
    resp = w.request(req(13, v, group_id=group, member_id=member, members=members))
    assert resp.error_code == 0
    if v >= 3:
        assert [(m.member_id, m.error_code) for m in resp.members] == [(member, 0)]


def check_sync_group(w: Wire, v: int, b: Broker) -> None:
    group = unique("sync")
    member, generation, _ = join(w, group)
    resp = sync(w, v, group, member, generation, b"assigned")
    assert (resp.error_code, resp.assignment) == (0, b"assigned")
    if v >= 5:
        assert (resp.protocol_type, resp.protocol_name) == ("matrix", "p")


def check_describe_groups(w: Wire, v: int, b: Broker) -> None:
    group, missing = unique("describe"), unique("missing")
    member, generation, _ = join(w, group)
    sync(w, 5, group, member, generation, b"a")
    resp = w.request(req(15, v, groups=(group, missing), include_authorized_operations=False))
    described = {g.group_id: g for g in resp.groups}
    assert described[group].error_code == 0 and described[group].group_state == "Stable"
    assert [m.member_id for m in described[group].members] == [member]
    if v >= 6:  # KIP-1043: an unknown group is an error, no longer a Dead group
        assert described[missing].error_code == 69 and described[missing].error_message
    else:
        assert (described[missing].error_code, described[missing].group_state) == (0, "Dead")


def check_list_groups(w: Wire, v: int, b: Broker) -> None:
    group = unique("list")
    join(w, group)
    resp = w.request(req(16, v, states_filter=(), types_filter=()))
    assert resp.error_code == 0 and group in {g.group_id for g in resp.groups}


def check_sasl_handshake(w: Wire, v: int, b: Broker) -> None:
    with Wire(b.ports["SASL_PLAINTEXT"]) as s:
        resp = s.request(req(17, v, mechanism="PLAIN"))
        assert resp.error_code == 0 and "PLAIN" in resp.mechanisms
    with Wire(b.ports["SASL_PLAINTEXT"]) as s:
        resp = s.request(req(17, v, mechanism="NOPE"))
        assert resp.error_code == 33  # UNSUPPORTED_SASL_MECHANISM


def check_api_versions(w: Wire, v: int, b: Broker) -> None:
    resp = w.request(req(18, v, client_software_name="matrix", client_software_version="1.0"))
    assert resp.error_code == 0
    assert {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys} == KAFKA_41
    if v >= 3:  # feature flags: the consumer group protocol is group.version 1, finalized
        finalized = {f.name: (f.min_version_level, f.max_version_level) for f in resp.finalized_features}
        assert finalized == {"group.version": (1, 1)} and resp.finalized_features_epoch >= 0
        supported = {f.name: (f.min_version, f.max_version) for f in resp.supported_features}
        # before v4, features whose lowest level is 0 are left out
        assert supported == ({"group.version": (0, 1)} if v >= 4 else {})


def check_create_topics(w: Wire, v: int, b: Broker) -> None:
    name = unique("created")
    topic = part(
        19,
        v,
        "CreatableTopic",
        name=name,
        num_partitions=3,
        replication_factor=1,
        assignments=(),
        configs=(part(19, v, "CreatableTopicConfig", name="retention.ms", value="60000"),),
    )
    resp = w.request(req(19, v, topics=(topic,), timeout=datetime.timedelta(seconds=5), validate_only=False))
    [t] = resp.topics
    assert t.name == name and t.error_code == 0
    if v >= 5:
        assert t.num_partitions == 3 and {c.name: c.value for c in t.configs}["retention.ms"] == "60000"
    if v >= 7:
        assert t.topic_id == topic_id(w, name)
    assert (
        w.request(req(19, v, topics=(topic,), timeout=datetime.timedelta(seconds=5), validate_only=False))
        .topics[0]
        .error_code
        == 36
    )  # TOPIC_ALREADY_EXISTS


def check_delete_topics(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w)
    tid = topic_id(w, name)
    by_id = (part(20, v, "DeleteTopicState", name=None, topic_id=tid),) if v >= 6 else ()
    resp = w.request(req(20, v, topic_names=(name,), timeout=datetime.timedelta(seconds=5), topics=by_id))
    [r] = resp.responses
    assert r.error_code == 0 and r.name == name
    assert topic_id_error(w, name) == 3


def topic_id_error(w: Wire, name: str) -> int:
    meta = w.request(
        req(
            3,
            12,
            topics=(part(3, 12, "MetadataRequestTopic", name=name, topic_id=None),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
    )
    return meta.topics[0].error_code


def check_delete_records(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w)
    produce(w, 9, name, 0, [(None, b"a"), (None, b"b"), (None, b"c")])
    resp = w.request(
        req(
            21,
            v,
            timeout=datetime.timedelta(seconds=5),
            topics=(
                part(
                    21,
                    v,
                    "DeleteRecordsTopic",
                    name=name,
                    partitions=(part(21, v, "DeleteRecordsPartition", partition_index=0, offset=2),),
                ),
            ),
        )
    )
    p = resp.topics[0].partitions[0]
    assert (p.error_code, p.low_watermark) == (0, 2)


def check_init_producer_id(w: Wire, v: int, b: Broker) -> None:
    resp = w.request(
        req(
            22,
            v,
            transactional_id=None,
            transaction_timeout=datetime.timedelta(seconds=60),
            producer_id=-1,
            producer_epoch=-1,
        )
    )
    assert resp.error_code == 0 and resp.producer_id >= 0 and resp.producer_epoch == 0
    # a transactional producer: the coordinator's producer id, epoch 0, then bumped by a second one
    tid = unique("tx-init")
    first = init_txn(w, tid, v)
    again = init_txn(w, tid, v)
    assert again == (first[0], first[1] + 1)
    over = w.request(req(22, v, transactional_id=tid, transaction_timeout=datetime.timedelta(hours=1),
                         producer_id=-1, producer_epoch=-1))
    assert over.error_code == 50  # INVALID_TRANSACTION_TIMEOUT (transaction.max.timeout.ms)


def init_txn(w: Wire, tid: str, v: int = 5) -> tuple[int, int]:
    resp = w.request(req(22, v, transactional_id=tid, transaction_timeout=datetime.timedelta(seconds=60),
                         producer_id=-1, producer_epoch=-1))
    assert resp.error_code == 0, resp
    return resp.producer_id, resp.producer_epoch


def add_partition(w: Wire, tid: str, pid: int, epoch: int, partition: int = 0, v: int = 3) -> int:
    topic = part(24, v, "AddPartitionsToTxnTopic", name=TOPIC, partitions=(partition,))
    resp = w.request(req(24, v, v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid,
                         v3_and_below_producer_epoch=epoch, v3_and_below_topics=(topic,)))
    return resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code


def check_add_partitions_to_txn(w: Wire, v: int, b: Broker) -> None:
    tid = unique("tx-add")
    pid, epoch = init_txn(w, tid)
    if v < 4:
        assert add_partition(w, tid, pid, epoch, v=v) == 0
        assert add_partition(w, tid, pid, epoch + 1, v=v) == (47 if v < 2 else 90)  # fenced
        return
    # v4+: a broker's batched form; verify-only asks whether partitions are in the transaction
    assert add_partition(w, tid, pid, epoch) == 0

    def batched(verify_only: bool, partitions: tuple[int, ...]):
        topic = part(24, v, "AddPartitionsToTxnTopic", name=TOPIC, partitions=partitions)
        txn = part(24, v, "AddPartitionsToTxnTransaction", transactional_id=tid, producer_id=pid,
                   producer_epoch=epoch, verify_only=verify_only, topics=(topic,))
        resp = w.request(req(24, v, transactions=(txn,)))
        assert resp.error_code == 0
        return {r.partition_index: r.partition_error_code
                for r in resp.results_by_transaction[0].topic_results[0].results_by_partition}

    assert batched(True, (0, 1)) == {0: 0, 1: 48}  # INVALID_TXN_STATE: partition 1 was not added
    assert batched(False, (1,)) == {1: 0}
    assert batched(True, (1,)) == {1: 0}


def check_add_offsets_to_txn(w: Wire, v: int, b: Broker) -> None:
    tid = unique("tx-offsets")
    pid, epoch = init_txn(w, tid)
    resp = w.request(req(25, v, transactional_id=tid, producer_id=pid, producer_epoch=epoch, group_id="g"))
    assert resp.error_code == 0
    resp = w.request(req(25, v, transactional_id=unique("tx-none"), producer_id=pid, producer_epoch=epoch,
                         group_id="g"))
    assert resp.error_code == 49  # INVALID_PRODUCER_ID_MAPPING


def check_end_txn(w: Wire, v: int, b: Broker) -> None:
    tid = unique("tx-end")
    pid, epoch = init_txn(w, tid)
    resp = w.request(req(26, v, transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=True))
    assert resp.error_code == 48  # INVALID_TXN_STATE: no transaction to end
    assert add_partition(w, tid, pid, epoch) == 0
    resp = w.request(req(26, v, transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=True))
    assert resp.error_code == 0


def check_write_txn_markers(w: Wire, v: int, b: Broker) -> None:
    topic = part(27, v, "WritableTxnMarkerTopic", name=TOPIC, partition_indexes=(0,))
    marker = part(27, v, "WritableTxnMarker", producer_id=987654, producer_epoch=0, transaction_result=False,
                  topics=(topic,), coordinator_epoch=0)
    resp = w.request(req(27, v, markers=(marker,)))
    assert [(m.producer_id, m.topics[0].partitions[0].error_code) for m in resp.markers] == [(987654, 0)]


def check_txn_offset_commit(w: Wire, v: int, b: Broker) -> None:
    tid = unique("tx-commit")
    group = unique("txg")
    pid, epoch = init_txn(w, tid)

    def commit() -> int:
        p = part(28, v, "TxnOffsetCommitRequestPartition", partition_index=0, committed_offset=1,
                 committed_leader_epoch=-1, committed_metadata="")
        t = part(28, v, "TxnOffsetCommitRequestTopic", name=TOPIC, partitions=(p,))
        resp = w.request(req(28, v, transactional_id=tid, group_id=group, producer_id=pid,
                             producer_epoch=epoch, generation_id=-1, member_id="", group_instance_id=None,
                             topics=(t,)))
        return resp.topics[0].partitions[0].error_code

    assert commit() == 48  # the group's offsets partition was not added (AddOffsetsToTxn)
    assert w.request(req(25, 3, transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                         group_id=group)).error_code == 0
    assert commit() == 0


def check_describe_producers(w: Wire, v: int, b: Broker) -> None:
    """An open transaction shows as its producer's current_txn_start_offset on the partition."""
    topic = create_topic(w)
    tid = unique("tx-producers")
    pid, epoch = init_txn(w, tid)
    tp = part(24, 3, "AddPartitionsToTxnTopic", name=topic, partitions=(0,))
    added = w.request(req(24, 3, v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid,
                          v3_and_below_producer_epoch=epoch, v3_and_below_topics=(tp,)))
    assert added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
    batch = build_batch([(None, b"open")], timestamp_ms=1000, producer_id=pid, producer_epoch=epoch,
                        base_sequence=0, attributes=ATTR_TRANSACTIONAL)
    data = part(0, 9, "TopicProduceData", name=topic,
                partition_data=(part(0, 9, "PartitionProduceData", index=0, records=bytes(batch)),))
    produced = w.request(req(0, 9, transactional_id=tid, acks=-1, timeout=datetime.timedelta(seconds=5),
                             topic_data=(data,)))
    assert produced.responses[0].partition_responses[0].error_code == 0
    resp = w.request(req(61, v, topics=(part(61, v, "TopicRequest", name=topic, partition_indexes=(0, 9)),)))
    known, unknown = resp.topics[0].partitions
    assert [(p.producer_id, p.producer_epoch, p.last_sequence, p.current_txn_start_offset)
            for p in known.active_producers] == [(pid, epoch, 0, 0)]
    assert unknown.error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION


def check_describe_transactions(w: Wire, v: int, b: Broker) -> None:
    tid = unique("tx-describe")
    pid, epoch = init_txn(w, tid)
    assert add_partition(w, tid, pid, epoch) == 0
    # (an unknown id's entry carries start time -1, which kio's reader refuses to decode)
    resp = w.request(req(65, v, transactional_ids=(tid,)))
    (known,) = resp.transaction_states
    assert (known.error_code, known.transaction_state, known.producer_id, known.producer_epoch) == (
        0, "Ongoing", pid, epoch)
    assert [(t.topic, t.partitions) for t in known.topics] == [(TOPIC, (0,))]


def check_list_transactions(w: Wire, v: int, b: Broker) -> None:
    tid = unique("tx-list")
    pid, _epoch = init_txn(w, tid)
    resp = w.request(req(66, v, state_filters=("Empty", "Bogus"), producer_id_filters=(pid,),
                         duration_filter=-1))
    assert resp.error_code == 0 and resp.unknown_state_filters == ("Bogus",)
    assert [(t.transactional_id, t.producer_id, t.transaction_state) for t in resp.transaction_states] == [
        (tid, pid, "Empty")]


def check_offset_for_leader_epoch(w: Wire, v: int, b: Broker) -> None:
    topic = part(
        23,
        v,
        "OffsetForLeaderTopic",
        topic=TOPIC,
        partitions=(
            part(23, v, "OffsetForLeaderPartition", partition=0, current_leader_epoch=-1, leader_epoch=0),
        ),
    )
    resp = w.request(req(23, v, replica_id=-1, topics=(topic,)))
    p = resp.topics[0].partitions[0]
    assert p.error_code == 0 and p.leader_epoch == 0 and p.end_offset >= 3


ACL = {
    "resource_type": 2,
    "resource_name": "acl-topic",
    "resource_pattern_type": 3,
    "principal": "User:bob",
    "host": "*",
    "operation": 3,
    "permission_type": 3,
}  # TOPIC, LITERAL, READ, ALLOW


def acl_filter(api_key: int, v: int, class_name: str | None, name: str):
    values = {
        "resource_type_filter": 2,
        "resource_name_filter": name,
        "pattern_type_filter": 3,
        "principal_filter": "User:bob",
        "host_filter": None,
        "operation": 3,
        "permission_type": 3,
    }
    return part(api_key, v, class_name, **values) if class_name else req(api_key, v, **values)


def create_acl(w: Wire, v: int, name: str) -> None:
    resp = w.request(req(30, v, creations=(part(30, v, "AclCreation", **{**ACL, "resource_name": name}),)))
    assert [r.error_code for r in resp.results] == [0]


def check_describe_acls(w: Wire, v: int, b: Broker) -> None:
    name = unique("acl")
    create_acl(w, 3, name)
    resp = w.request(acl_filter(29, v, None, name))
    assert resp.error_code == 0
    assert [(r.resource_name, [a.principal for a in r.acls]) for r in resp.resources] == [
        (name, ["User:bob"])
    ]


def check_create_acls(w: Wire, v: int, b: Broker) -> None:
    name = unique("acl")
    create_acl(w, v, name)
    assert len(w.request(acl_filter(29, 3, None, name)).resources) == 1


def check_delete_acls(w: Wire, v: int, b: Broker) -> None:
    name = unique("acl")
    create_acl(w, 3, name)
    resp = w.request(req(31, v, filters=(acl_filter(31, v, "DeleteAclsFilter", name),)))
    [result] = resp.filter_results
    assert result.error_code == 0 and [m.resource_name for m in result.matching_acls] == [name]
    assert w.request(acl_filter(29, 3, None, name)).resources == ()


def check_describe_configs(w: Wire, v: int, b: Broker) -> None:
    keys = (
        "listeners",
        "advertised.listeners",
        "log.dirs",
        "group.initial.rebalance.delay.ms",
        "num.partitions",
        "message.max.bytes",
    )
    resp = w.request(
        req(
            32,
            v,
            include_synonyms=True,
            include_documentation=True,
            resources=(
                part(
                    32,
                    v,
                    "DescribeConfigsResource",
                    resource_type=4,
                    resource_name="1",
                    configuration_keys=keys,
                ),
                part(
                    32,
                    v,
                    "DescribeConfigsResource",
                    resource_type=2,
                    resource_name=TOPIC,
                    configuration_keys=None,
                ),
            ),
        )
    )
    broker_result, topic_result = resp.results
    assert broker_result.error_code == 0 and topic_result.error_code == 0
    configs = {c.name: c for c in broker_result.configs}
    assert sorted(configs) == sorted(keys)
    plaintext = f"PLAINTEXT://127.0.0.1:{b.port}"
    assert plaintext in configs["listeners"].value.split(",")
    assert plaintext in configs["advertised.listeners"].value.split(",")
    assert configs["log.dirs"].value == str(b.data_dir.resolve())
    assert configs["group.initial.rebalance.delay.ms"].value == "0"
    assert configs["num.partitions"].value == "2" and configs["message.max.bytes"].value == "1048588"
    static, default = 4, 5
    assert (
        configs["listeners"].config_source == static and configs["message.max.bytes"].config_source == default
    )
    if v >= 1:
        assert [(s.value, s.source) for s in configs["group.initial.rebalance.delay.ms"].synonyms] == [
            ("0", static),
            ("3000", default),
        ]
    if v >= 3:
        assert configs["num.partitions"].config_type == 3 and configs["num.partitions"].documentation
    assert {c.name for c in topic_result.configs} >= {"retention.ms", "cleanup.policy", "max.message.bytes"}


def check_alter_configs(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w)
    resp = w.request(
        req(
            33,
            v,
            validate_only=False,
            resources=(
                part(
                    33,
                    v,
                    "AlterConfigsResource",
                    resource_type=2,
                    resource_name=name,
                    configs=(part(33, v, "AlterableConfig", name="retention.ms", value="120000"),),
                ),
            ),
        )
    )
    assert [(r.resource_name, r.error_code) for r in resp.responses] == [(name, 0)]
    assert described(w, 2, name, "retention.ms") == ("120000", 1)  # DYNAMIC_TOPIC_CONFIG


def described(w: Wire, resource_type: int, name: str, key: str) -> tuple[str, int]:
    resp = w.request(
        req(
            32,
            4,
            include_synonyms=False,
            include_documentation=False,
            resources=(
                part(
                    32,
                    4,
                    "DescribeConfigsResource",
                    resource_type=resource_type,
                    resource_name=name,
                    configuration_keys=(key,),
                ),
            ),
        )
    )
    [c] = resp.results[0].configs
    return c.value, c.config_source


def check_describe_log_dirs(w: Wire, v: int, b: Broker) -> None:
    resp = w.request(req(35, v, topics=None))
    [result] = resp.results
    assert result.error_code == 0 and result.log_dir
    topic = next(t for t in result.topics if t.name == TOPIC)
    assert sorted(p.partition_index for p in topic.partitions) == [0, 1]
    if v >= 4:
        assert result.total_bytes > 0 and result.usable_bytes > 0


def check_sasl_authenticate(w: Wire, v: int, b: Broker) -> None:
    with Wire(b.ports["SASL_PLAINTEXT"]) as s:
        assert s.request(req(17, 1, mechanism="PLAIN")).error_code == 0
        resp = s.request(req(36, v, auth_bytes=b"\0alice\0alice-secret"))
        assert resp.error_code == 0
        if v >= 1:
            assert resp.session_lifetime == ZERO
        # authenticated: the connection now serves Kafka requests
        assert s.request(req(18, 3, client_software_name="m", client_software_version="1")).error_code == 0
    with Wire(b.ports["SASL_PLAINTEXT"]) as s:
        assert s.request(req(17, 1, mechanism="PLAIN")).error_code == 0
        assert (
            s.request(req(36, v, auth_bytes=b"\0alice\0wrong")).error_code == 58
        )  # SASL_AUTHENTICATION_FAILED


def check_create_partitions(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w)
    resp = w.request(
        req(
            37,
            v,
            timeout=datetime.timedelta(seconds=5),
            validate_only=False,
            topics=(part(37, v, "CreatePartitionsTopic", name=name, count=3, assignments=None),),
        )
    )
    assert [(r.name, r.error_code) for r in resp.results] == [(name, 0)]
    meta = w.request(
        req(
            3,
            12,
            topics=(part(3, 12, "MetadataRequestTopic", name=name, topic_id=None),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
    )
    assert len(meta.topics[0].partitions) == 3


def check_delete_groups(w: Wire, v: int, b: Broker) -> None:
    group = unique("deleted")
    assert commit(w, 9, group, 1).topics[0].partitions[0].error_code == 0
    resp = w.request(req(42, v, groups_names=(group,)))
    assert [(r.group_id, r.error_code) for r in resp.results] == [(group, 0)]
    assert fetch_offsets(w, 9, group) == -1


def check_incremental_alter_configs(w: Wire, v: int, b: Broker) -> None:
    value = str(15000 + v + 1)
    resp = w.request(
        req(
            44,
            v,
            validate_only=False,
            resources=(
                part(
                    44,
                    v,
                    "AlterConfigsResource",
                    resource_type=4,
                    resource_name="1",
                    configs=(
                        part(
                            44,
                            v,
                            "AlterableConfig",
                            name="log.cleaner.backoff.ms",
                            config_operation=0,
                            value=value,
                        ),
                    ),
                ),
            ),
        )
    )
    assert [r.error_code for r in resp.responses] == [0]
    assert described(w, 4, "1", "log.cleaner.backoff.ms") == (value, 2)  # DYNAMIC_BROKER_CONFIG
    resp = w.request(
        req(
            44,
            v,
            validate_only=False,
            resources=(
                part(
                    44,
                    v,
                    "AlterConfigsResource",
                    resource_type=4,
                    resource_name="1",
                    configs=(
                        part(
                            44,
                            v,
                            "AlterableConfig",
                            name="listeners",
                            config_operation=0,
                            value="PLAINTEXT://:1",
                        ),
                    ),
                ),
            ),
        )
    )
    assert resp.responses[0].error_code == 40  # INVALID_CONFIG: read-only


def check_offset_delete(w: Wire, v: int, b: Broker) -> None:
    group = unique("offsets")
    assert commit(w, 9, group, 1).topics[0].partitions[0].error_code == 0
    resp = w.request(
        req(
            47,
            v,
            group_id=group,
            topics=(
                part(
                    47,
                    v,
                    "OffsetDeleteRequestTopic",
                    name=TOPIC,
                    partitions=(part(47, v, "OffsetDeleteRequestPartition", partition_index=0),),
                ),
            ),
        )
    )
    assert resp.error_code == 0 and resp.topics[0].partitions[0].error_code == 0
    assert fetch_offsets(w, 9, group) == -1


def check_describe_client_quotas(w: Wire, v: int, b: Broker) -> None:
    user = unique("quota-user")
    set_quota(w, 1, user)
    resp = w.request(
        req(
            48,
            v,
            strict=False,
            components=(part(48, v, "ComponentData", entity_type="user", match_type=0, match=user),),
        )
    )
    assert resp.error_code == 0
    [entry] = resp.entries
    assert [(v.key, v.value) for v in entry.values] == [("producer_byte_rate", 1024.0)]


def set_quota(w: Wire, v: int, user: str):
    resp = w.request(
        req(
            49,
            v,
            validate_only=False,
            entries=(
                part(
                    49,
                    v,
                    "EntryData",
                    entity=(part(49, v, "EntityData", entity_type="user", entity_name=user),),
                    ops=(part(49, v, "OpData", key="producer_byte_rate", value=1024.0, remove=False),),
                ),
            ),
        )
    )
    assert [e.error_code for e in resp.entries] == [0]


def check_alter_client_quotas(w: Wire, v: int, b: Broker) -> None:
    user = unique("quota-user")
    set_quota(w, v, user)
    resp = w.request(
        req(
            48,
            1,
            strict=True,
            components=(part(48, 1, "ComponentData", entity_type="user", match_type=0, match=user),),
        )
    )
    assert len(resp.entries) == 1


def check_describe_cluster(w: Wire, v: int, b: Broker) -> None:
    resp = w.request(
        req(60, v, include_cluster_authorized_operations=False, endpoint_type=1, include_fenced_brokers=True)
    )
    assert resp.error_code == 0 and resp.cluster_id and resp.controller_id == 1
    assert [(x.broker_id, x.host, x.port) for x in resp.brokers] == [(1, "127.0.0.1", b.port)]
    if v >= 2:
        assert [x.is_fenced for x in resp.brokers] == [False]


def subscribe_client_metrics(w: Wire, name: str, **configs: str) -> None:
    entries = tuple(part(44, 1, "AlterableConfig", name=k.replace("_", "."), config_operation=0, value=val)
                    for k, val in configs.items())  # fmt: skip
    resource = part(44, 1, "AlterConfigsResource", resource_type=16, resource_name=name, configs=entries)
    assert w.request(req(44, 1, resources=(resource,), validate_only=False)).responses[0].error_code == 0


def check_list_config_resources(w: Wire, v: int, b: Broker) -> None:
    subscription = unique("sub")
    subscribe_client_metrics(w, subscription, metrics="org.apache.kafka.producer.", interval_ms="60000")
    resp = w.request(req(74, v, resource_types=()))
    assert resp.error_code == 0
    if v == 0:  # ListClientMetricsResources: the client-metrics subscriptions only (no type field)
        assert subscription in {r.resource_name for r in resp.config_resources}
        return
    listed = {(r.resource_type, r.resource_name) for r in resp.config_resources}
    assert {(2, TOPIC), (4, "1"), (16, subscription)} <= listed
    only_brokers = w.request(req(74, v, resource_types=(4,)))
    assert [(r.resource_type, r.resource_name) for r in only_brokers.config_resources] == [(4, "1")]
    assert w.request(req(74, v, resource_types=(8,))).error_code == 35  # broker loggers: not held


def check_elect_leaders(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w, 2)
    asked = (part(43, v, "TopicPartitions", topic=name, partitions=(0, 5)),)
    timeout = datetime.timedelta(seconds=5)
    resp = w.request(req(43, v, election_type=0, topic_partitions=asked, timeout=timeout))
    assert getattr(resp, "error_code", 0) == 0
    (result,) = resp.replica_election_results
    # a broker alone leads every partition it has: no election is needed
    assert result.topic == name
    assert [(p.partition_id, p.error_code) for p in result.partition_result] == [(0, 84), (5, 3)]


def check_alter_partition_reassignments(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w)

    def moved(replicas):
        partition = part(45, v, "ReassignablePartition", partition_index=0, replicas=replicas)
        topics = (part(45, v, "ReassignableTopic", name=name, partitions=(partition,)),)
        resp = w.request(req(45, v, timeout=datetime.timedelta(seconds=5), topics=topics))
        assert resp.error_code == 0
        return resp.responses[0].partitions[0].error_code

    described = w.request(req(75, 0, topics=(part(75, 0, "TopicRequest", name=name),)))
    node = described.topics[0].partitions[0].leader_id
    # a broker alone: its own id is the only replica list; nothing is ever in progress
    assert moved((node,)) == 0
    assert moved((node + 1,)) == 39  # INVALID_REPLICA_ASSIGNMENT
    assert moved(None) == 85  # NO_REASSIGNMENT_IN_PROGRESS


def check_list_partition_reassignments(w: Wire, v: int, b: Broker) -> None:
    resp = w.request(req(46, v, timeout=datetime.timedelta(seconds=5), topics=None))
    assert (resp.error_code, resp.topics) == (0, ())


def check_describe_topic_partitions(w: Wire, v: int, b: Broker) -> None:
    name = create_topic(w, 3)
    asked = (part(75, v, "TopicRequest", name=name), part(75, v, "TopicRequest", name=unique("missing")))
    resp = w.request(req(75, v, topics=asked, response_partition_limit=2))
    known, missing = sorted(resp.topics, key=lambda t: t.name != name)
    assert (missing.error_code, missing.partitions) == (3, ())  # UNKNOWN_TOPIC_OR_PARTITION
    assert [p.partition_index for p in known.partitions] == [0, 1]
    assert all(p.leader_id >= 0 and tuple(p.replica_nodes) == (p.leader_id,) for p in known.partitions)
    assert (resp.next_cursor.topic_name, resp.next_cursor.partition_index) == (name, 2)
    cursor = part(75, v, "Cursor", topic_name=name, partition_index=2)
    resp = w.request(req(75, v, topics=asked[:1], response_partition_limit=2, cursor=cursor))
    assert [p.partition_index for p in resp.topics[0].partitions] == [2] and resp.next_cursor is None


def consumer_heartbeat(w: Wire, v: int, group: str, member: str, epoch: int, **kwargs):
    fields_ = {
        "group_id": group, "member_id": member, "member_epoch": epoch, "instance_id": None, "rack_id": None,
        "rebalance_timeout": datetime.timedelta(seconds=30), "subscribed_topic_names": None,
        "subscribed_topic_regex": None, "server_assignor": None, "topic_partitions": None,
    }  # fmt: skip
    fields_.update(kwargs)
    return w.request(req(68, v, **fields_))


def check_consumer_group_heartbeat(w: Wire, v: int, b: Broker) -> None:
    group, chosen = unique("cgh"), str(uuid.uuid4())
    joined = consumer_heartbeat(w, v, group, chosen if v >= 1 else "", 0, subscribed_topic_names=(TOPIC,),
                                topic_partitions=())  # fmt: skip
    assert joined.error_code == 0 and joined.member_epoch == 1
    member = joined.member_id
    # v1: the member names itself; v0: the coordinator does
    assert member == chosen if v >= 1 else member and member != chosen
    tid = topic_id(w)
    assigned = [(tp.topic_id, tuple(tp.partitions)) for tp in joined.assignment.topic_partitions]
    assert assigned == [(tid, (0, 1))]
    assert joined.heartbeat_interval.total_seconds() > 0
    owned = (part(68, v, "TopicPartitions", topic_id=tid, partitions=(0, 1)),)
    again = consumer_heartbeat(w, v, group, member, 1, topic_partitions=owned)
    assert (again.error_code, again.member_epoch, again.assignment) == (0, 1, None)  # nothing changed
    assert consumer_heartbeat(w, v, group, member, 7).error_code == 110  # FENCED_MEMBER_EPOCH
    assert consumer_heartbeat(w, v, group, "nobody", 1).error_code == 25  # UNKNOWN_MEMBER_ID
    if v >= 1:  # regular expressions (RE2 syntax) came with v1
        bad = consumer_heartbeat(w, v, unique("cgh"), chosen, 0, subscribed_topic_regex="(unclosed")
        assert bad.error_code == 128  # INVALID_REGULAR_EXPRESSION
    left = consumer_heartbeat(w, v, group, member, -1)
    assert (left.error_code, left.member_epoch) == (0, -1)


def check_consumer_group_describe(w: Wire, v: int, b: Broker) -> None:
    group, classic, member = unique("cgd"), unique("classic"), str(uuid.uuid4())
    joined = consumer_heartbeat(w, 1, group, member, 0, subscribed_topic_names=(TOPIC,), topic_partitions=())
    assert joined.error_code == 0
    join(w, classic)
    asked = (group, classic, unique("missing"))
    resp = w.request(req(69, v, group_ids=asked, include_authorized_operations=True))
    described, not_consumer, missing = resp.groups
    assert (described.error_code, described.group_state, described.group_epoch) == (0, "Stable", 1)
    assert (described.assignment_epoch, described.assignor_name) == (1, "uniform")
    (m,) = described.members
    assert (m.member_id, m.member_epoch, tuple(m.subscribed_topic_names)) == (member, 1, (TOPIC,))
    assigned = [(tp.topic_name, tuple(tp.partitions)) for tp in m.assignment.topic_partitions]
    assert assigned == [(TOPIC, (0, 1))]
    assert m.target_assignment == m.assignment
    if v >= 1:
        assert m.member_type == 1  # a consumer-protocol member
    # Kafka answers GROUP_ID_NOT_FOUND for a classic group (admin clients then use DescribeGroups)
    assert (not_consumer.error_code, missing.error_code) == (69, 69)


def check_get_telemetry_subscriptions(w: Wire, v: int, b: Broker) -> None:
    subscribe_client_metrics(w, unique("sub"), metrics="org.apache.kafka.consumer.", interval_ms="5000",
                             match="client_id=matrix-telemetry")  # fmt: skip
    resp = w.request(req(71, v, client_instance_id=uuid.UUID(int=0)))  # client id "wire-test": no match
    assert resp.error_code == 0 and resp.client_instance_id.int != 0  # the broker names the instance
    assert tuple(resp.requested_metrics) == ()
    assert resp.telemetry_max_bytes > 0 and 4 in resp.accepted_compression_types
    again = w.request(req(71, v, client_instance_id=resp.client_instance_id))
    assert again.client_instance_id == resp.client_instance_id
    assert again.subscription_id == resp.subscription_id


def check_push_telemetry(w: Wire, v: int, b: Broker) -> None:
    got = w.request(req(71, 0, client_instance_id=uuid.UUID(int=0)))
    push = {"client_instance_id": got.client_instance_id, "terminating": False, "compression_type": 0}
    # an empty MetricsData is a valid push
    assert w.request(req(72, v, subscription_id=got.subscription_id, metrics=b"", **push)).error_code == 0
    stale = w.request(req(72, v, subscription_id=got.subscription_id + 1, metrics=b"", **push))
    assert stale.error_code == 117  # UNKNOWN_SUBSCRIPTION_ID
    final = w.request(req(72, v, subscription_id=got.subscription_id, metrics=b"\xff\xff",
                          **{**push, "terminating": True}))  # fmt: skip
    assert final.error_code == 87  # INVALID_RECORD: not an OTLP MetricsData


CHECKS = {
    0: check_produce,
    1: check_fetch,
    2: check_list_offsets,
    3: check_metadata,
    8: check_offset_commit,
    9: check_offset_fetch,
    10: check_find_coordinator,
    11: check_join_group,
    12: check_heartbeat,
    13: check_leave_group,
    14: check_sync_group,
    15: check_describe_groups,
    16: check_list_groups,
    17: check_sasl_handshake,
    18: check_api_versions,
    19: check_create_topics,
    20: check_delete_topics,
    21: check_delete_records,
    22: check_init_producer_id,
    23: check_offset_for_leader_epoch,
    24: check_add_partitions_to_txn,
    25: check_add_offsets_to_txn,
    26: check_end_txn,
    27: check_write_txn_markers,
    28: check_txn_offset_commit,
    29: check_describe_acls,
    30: check_create_acls,
    31: check_delete_acls,
    32: check_describe_configs,
    33: check_alter_configs,
    35: check_describe_log_dirs,
    36: check_sasl_authenticate,
    37: check_create_partitions,
    42: check_delete_groups,
    43: check_elect_leaders,
    44: check_incremental_alter_configs,
    45: check_alter_partition_reassignments,
    46: check_list_partition_reassignments,
    47: check_offset_delete,
    48: check_describe_client_quotas,
    49: check_alter_client_quotas,
    60: check_describe_cluster,
    61: check_describe_producers,
    65: check_describe_transactions,
    66: check_list_transactions,
    68: check_consumer_group_heartbeat,
    69: check_consumer_group_describe,
    71: check_get_telemetry_subscriptions,
    72: check_push_telemetry,
    74: check_list_config_resources,
    75: check_describe_topic_partitions,
}
CASES = [(k, v) for k, (lo, hi) in KAFKA_41.items() for v in sorted({lo, hi})] + [(0, 3)]


def test_every_served_api_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(KAFKA_41)


def test_advertises_kafka_41_ranges_and_nothing_else(broker) -> None:
    with Wire(broker.port) as w:
        check_api_versions(w, 3, broker)


@pytest.mark.parametrize(("api_key", "version"), CASES, ids=[f"{k}-v{v}" for k, v in CASES])
def test_api_at_lowest_and_highest_version(broker, api_key: int, version: int) -> None:
    check = check_produce_lowest_usable if (api_key, version) == (0, 3) else CHECKS[api_key]
    with Wire(broker.port) as w:
        check(w, version, broker)
