"""A consumer group's records in ``__consumer_offsets`` (Kafka's record types 3 to 8), through
the offsets-topic store and back: what a coordinator taking over the partition rebuilds."""

from __future__ import annotations

import asyncio
import struct
import uuid

from grouptest import run

from brokerd.groups import consumer_records as cr
from brokerd.groups.consumer import (
    ClassicMetadata,
    ConsumerGroup,
    ConsumerMember,
    ConsumerProtocol,
    ConsumerProtocolConfig,
    MemberState,
    group_from_document,
)
from brokerd.groups.topic_store import OffsetsTopicStore, fold
from brokerd.records import build_batch, read_header

T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)


class Log:
    """The partition: every appended record, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, _partition: int, records):
        self.records += records
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def read(self):
        """The records as the coordinator loads them: batches (header, control type, records)."""
        for k, v in list(self.records):
            yield read_header(build_batch([(k, v)], timestamp_ms=0)), None, [(k, v)]


def sample() -> ConsumerGroup:
    g = ConsumerGroup("g")
    g.group_epoch, g.assignment_epoch = 7, 7
    g.subscription_metadata = {"orders": (T1, 4), "payments": (T2, 2)}
    g.add_member(ConsumerMember(
        "a", None, "rack-1", "client-a", "/10.0.0.1", 30000, ("orders", "payments"), None, "range",
        7, 6, MemberState.STABLE, {T1: {0, 1}, T2: {0}},
    ))  # fmt: skip
    g.add_member(ConsumerMember(
        "b", "static-b", None, "client-b", "/10.0.0.2", 45000, (), "ord.*", None,
        6, 5, MemberState.UNREVOKED_PARTITIONS, {T1: {2}}, {T1: {3}},
    ))  # fmt: skip
    g.add_member(ConsumerMember(
        "k", None, None, "classic", "/10.0.0.3", 60000, ("orders",), None, None,
        7, 7, MemberState.UNRELEASED_PARTITIONS, {T2: {1}},
        classic=ClassicMetadata(10000, [("range", b"\x00\x01sub"), ("roundrobin", b"")]),
    ))  # fmt: skip
    g.target = {"a": {T1: {0, 1}, T2: {0}}, "b": {T1: {2}}, "k": {T2: {1}, T1: {3}}}
    return g


def test_a_consumer_group_round_trips_through_kafkas_records() -> None:
    async def go():
        log = Log()
        store = OffsetsTopicStore(lambda _g: 0, log.append)
        group = sample()
        doc = group.to_document()
        await store.put_group("g", {**doc, "tombstone_members": []})
        kinds = sorted({struct.unpack(">h", k[:2])[0] for k, v in log.records if v is not None})
        assert kinds == [3, 4, 5, 6, 7, 8]  # Kafka's consumer group record types, nothing of brokerd's
        loaded = (await fold(log.read())).groups["g"]
        rebuilt = group_from_document("g", loaded)
        assert rebuilt.to_document() == {**doc, "assignor": ""}
        # the assignor is not in Kafka's records: the members' preferred one, as computed
        protocol = ConsumerProtocol(ConsumerProtocolConfig(), dict, lambda _g: None)
        protocol.start(asyncio.get_running_loop(), [rebuilt])
        protocol.stop([rebuilt])
        assert rebuilt.assignor_name == "range"

        # only what changed is written again; a member gone is tombstoned
        before = len(log.records)
        await store.put_group("g", {**doc, "tombstone_members": []})
        assert len(log.records) == before
        group.remove_member("b")
        group.group_epoch = 8
        await store.put_group("g", {**group.to_document(), "tombstone_members": ["b"]})
        written = log.records[before:]
        assert sum(v is None for _k, v in written) == 3  # b's member, target and current records
        assert {cr.decode_key(struct.unpack(">h", k[:2])[0], k).kind for k, v in written if v} == {
            3,
            4,
        }  # the epoch
        loaded = (await fold(log.read())).groups["g"]
        assert [m["member_id"] for m in loaded["members"]] == ["a", "k"] and loaded["group_epoch"] == 8

        # the group becomes classic (downgrade): its consumer records are tombstoned, the classic
        # record wins; and a consumer group again later does not bring back old members
        classic = {"protocol_type": "consumer", "generation": 8, "protocol": "range", "leader": "k",
                   "current_state_timestamp": 1, "members": [], "tombstone_members": ["a", "k"]}  # fmt: skip
        await store.put_group("g", classic)
        assert (await fold(log.read())).groups["g"]["generation"] == 8
        fresh = ConsumerGroup("g")
        fresh.group_epoch = fresh.assignment_epoch = 9
        await store.put_group("g", {**fresh.to_document(), "tombstone_members": []})
        loaded = (await fold(log.read())).groups["g"]
        assert (loaded["type"], loaded["group_epoch"], loaded["members"]) == ("consumer", 9, [])

        # deleted: nothing of the group is left
        await store.delete_group("g")
        assert "g" not in (await fold(log.read())).groups

    run(go())


def test_member_metadata_value_layout() -> None:
    """ConsumerGroupMemberMetadataValue v0 as Kafka's generated serde lays it out."""
    value = cr._member_value({
        "instance_id": None, "rack_id": None, "client_id": "c", "client_host": "h", "subscribed_names": ["t"],
        "subscribed_regex": None, "rebalance_timeout_ms": 5, "server_assignor": None,
    })  # fmt: skip
    assert value == (
        b"\x00\x00"  # version 0
        + b"\x00\x00"  # null instance id, null rack id
        + b"\x02c\x02h"  # compact strings
        + b"\x02\x02t"  # one subscribed topic
        + b"\x00"  # null regex
        + b"\x00\x00\x00\x05"  # rebalance timeout
        + b"\x00"  # null server assignor
        + b"\x00"  # no tagged fields
    )
