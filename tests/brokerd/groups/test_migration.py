"""Online migration between the classic and the consumer protocol on the group coordinator
(``group.consumer.migration.policy``), with Kafka's answers to mixed groups.

Classic members are driven by hand (JoinGroup, SyncGroup, Heartbeat as an eager consumer does:
it gives up every partition before rejoining), consumer-protocol members by heartbeats. At
every step no partition is owned by two members.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import uuid

from grouptest import FAST, coordinator, join, join_new, run, subscription
from kio.schema.errors import ErrorCode

from brokerd.coordination.internal_topics import AppendError
from brokerd.groups import CommitEntry
from brokerd.groups.consumer import HeartbeatRequest
from brokerd.groups.migration import parse_assignment, parse_subscription
from brokerd.groups.topic_store import OffsetsTopicStore

E = ErrorCode
T1 = uuid.UUID(int=1)
TOPICS = {"orders": (T1, 6)}
CONFIG = dataclasses.replace(FAST, consumer_session_timeout_ms=2000, consumer_heartbeat_interval_ms=50)
SUB = [("range", subscription("orders"))]


def hb(member: str, epoch: int, *, names=None, owned=None) -> HeartbeatRequest:
    return HeartbeatRequest(member, epoch, subscribed_topic_names=names, owned=owned)


def assignment(*partitions: int) -> bytes:
    """A ConsumerProtocolAssignment v0 of ``orders`` (what a classic leader sends)."""
    body = (
        struct.pack(">h", 6) + b"orders" + struct.pack(f">i{len(partitions)}i", len(partitions), *partitions)
    )
    return struct.pack(">hi", 0, 1) + body + struct.pack(">i", -1)


async def classic_group(coord, group: str = "g") -> tuple[str, str, int]:
    """Two classic members a (partitions 0-2) and b (3-5), stable; (a id, b id, generation)."""
    first = await join_new(coord, group, protocols=SUB, client_id="a")
    second_task = asyncio.ensure_future(join_new(coord, group, protocols=SUB, client_id="b"))
    await asyncio.sleep(0.05)  # b parked: the group rebalances; a rejoins
    first = await join(coord, group, first.member_id, protocols=SUB)
    second = await second_task
    a, b = first.member_id, second.member_id
    leader = a if first.leader_id == a else b
    plan = {a: assignment(0, 1, 2), b: assignment(3, 4, 5)}
    syncs = [
        coord.sync(group, first.generation_id, m, assignments=plan if m == leader else {}) for m in (a, b)
    ]
    for result in await asyncio.gather(*syncs):
        assert result.error is E.none
    return a, b, first.generation_id


def owners(coord, group: str = "g") -> dict[int, str]:
    """partition -> member, checking that no partition is owned twice."""
    out: dict[int, str] = {}
    for tp, member in coord.group(group).consumer.owners.items():
        assert tp[1] not in out
        out[tp[1]] = member
    return out


async def rejoin_classic(coord, member_id: str, group: str = "g") -> tuple[int, set[int]]:
    """An eager classic member rejoining after REBALANCE_IN_PROGRESS: (generation, its assignment)."""
    joined = await join(coord, group, member_id, protocols=SUB)
    assert joined.error is E.none and joined.leader_id == "" and joined.members == []
    synced = await coord.sync(
        group, joined.generation_id, member_id, protocol_type="consumer", protocol_name="range"
    )
    assert synced.error is E.none
    return joined.generation_id, set(parse_assignment(synced.assignment).get("orders", []))


def test_rolling_upgrade_then_downgrade(tmp_path) -> None:
    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            a, b, generation = await classic_group(coord)
            ok = await coord.commit_offsets(
                "g", [CommitEntry("orders", 0, 5)], generation_id=generation, member_id=a
            )
            assert ok == {("orders", 0): E.none}
            # a consumer-protocol member joins: the group converts, classic members kept at their epoch
            c = await coord.consumer_heartbeat("g", hb("c", 0, names=["orders"], owned={}))
            assert c.error is E.none and not c.assignment  # everything is still owned by a and b
            _, listed = coord.list_groups()
            assert [(g.group_id, g.group_type) for g in listed] == [("g", "consumer")]
            assert set(owners(coord).values()) == {a, b}
            (described,) = coord.consumer_describe(["g"])  # ConsumerGroupDescribe's member types
            assert {m.member_id: m.classic for m in described.members} == {a: True, b: True, "c": False}
            # the classic members learn of the rebalance from their heartbeats
            assert coord.heartbeat("g", generation, a) is E.rebalance_in_progress
            assert coord.heartbeat("g", generation + 5, a) is E.illegal_generation
            # a rejoins having given up everything (eager): one step revokes, the next assigns
            epoch_a, got_a = await rejoin_classic(coord, a)
            if epoch_a == generation:  # still revoking: the partitions it keeps come back
                epoch_a, got_a = await rejoin_classic(coord, a)
            assert epoch_a == c.member_epoch and len(got_a) == 2
            # commits of a classic member are checked against its epoch, as generations
            stale = await coord.commit_offsets(
                "g", [CommitEntry("orders", 0, 6)], generation_id=generation, member_id=a
            )
            assert stale == {("orders", 0): E.illegal_generation}
            epoch_b, got_b = await rejoin_classic(coord, b)
            if epoch_b == generation:
                epoch_b, got_b = await rejoin_classic(coord, b)
            assert coord.heartbeat("g", epoch_b, b) is E.none
            c2 = await coord.consumer_heartbeat("g", hb("c", c.member_epoch, owned={}))
            got_c = set(c2.assignment.get(T1, ()))
            assert got_a | got_b | got_c == set(range(6)) and len(got_a) + len(got_b) + len(got_c) == 6
            assert owners(coord) == {
                **dict.fromkeys(got_a, a),
                **dict.fromkeys(got_b, b),
                **dict.fromkeys(got_c, "c"),
            }
            # the classic members leave one by one (LeaveGroup): c ends up with every partition
            assert coord.leave("g", [(a, None)])[1][0].error is E.none
            c3 = await coord.consumer_heartbeat("g", hb("c", c2.member_epoch, owned={T1: got_c}))
            assert coord.heartbeat("g", epoch_b, b) is E.rebalance_in_progress
            assert got_c < set(c3.assignment[T1]) <= got_c | got_a  # a's partitions are free at once
            owners(coord)
            assert coord.leave("g", [(b, None)])[1][0].error is E.none
            c4 = await coord.consumer_heartbeat("g", hb("c", c3.member_epoch, owned=c3.assignment))
            assert set(c4.assignment[T1]) == set(range(6))
            assert coord.fetch_offsets("g", [("orders", 0)])[1][0].offset == 5  # offsets carried over

            # downgrade: a classic member joins the consumer group, then c leaves
            d = await join_new(coord, "g", protocols=SUB, client_id="d")
            assert d.error is E.none and d.leader_id == ""
            assert (await coord.consumer_heartbeat("g", hb("c", -1))).error is E.none
            (desc,) = coord.describe_groups(["g"])
            assert (desc.protocol_type, desc.state) == ("consumer", "PreparingRebalance")
            _, listed = coord.list_groups()
            assert [(g.group_id, g.group_type) for g in listed] == [("g", "classic")]
            assert coord.heartbeat("g", d.generation_id, d.member_id) is E.rebalance_in_progress
            again = await join(coord, "g", d.member_id, protocols=SUB)
            assert again.error is E.none and again.leader_id == d.member_id  # a classic leader again
            assert again.generation_id == d.generation_id + 1  # the generation after the group epoch
            synced = await coord.sync(
                "g", again.generation_id, d.member_id, assignments={d.member_id: assignment(0)}
            )
            assert synced.error is E.none and coord.describe_groups(["g"])[0].state == "Stable"
            assert coord.fetch_offsets("g", [("orders", 0)])[1][0].offset == 5

    run(go())


def test_mixed_groups_under_each_policy(tmp_path) -> None:
    async def go():
        for policy in ("disabled", "upgrade", "downgrade"):
            config = dataclasses.replace(CONFIG, consumer_migration_policy=policy)
            async with coordinator(tmp_path / policy, config, topics=lambda: TOPICS) as coord:
                await classic_group(coord, "classic")
                joined = await coord.consumer_heartbeat("classic", hb("c", 0, names=["orders"], owned={}))
                expected = E.none if policy == "upgrade" else E.group_id_not_found
                assert joined.error is expected, policy
                # a classic member may always join a consumer group (Kafka accepts it under every
                # policy), with the consumer embedded protocol and a protocol the others share
                c = await coord.consumer_heartbeat("cg", hb("c", 0, names=["orders"], owned={}))
                assert c.error is E.none
                other = await join(coord, "cg", protocols=SUB, protocol_type="connect")
                assert other.error is E.inconsistent_group_protocol
                d = await join_new(coord, "cg", protocols=SUB, client_id="d")
                assert d.error is E.none and d.protocol_name == "range"
                disjoint = await join(coord, "cg", protocols=[("roundrobin", subscription("orders"))])
                assert disjoint.error is E.inconsistent_group_protocol
                # the consumer member leaves: only with downgrade does the group become classic
                await coord.consumer_heartbeat("cg", hb("c", -1))
                kinds = {g.group_id: g.group_type for g in coord.list_groups()[1]}
                assert kinds["cg"] == ("classic" if policy == "downgrade" else "consumer"), policy

    run(go())


def test_classic_member_timeouts_in_a_consumer_group(tmp_path) -> None:
    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            await coord.consumer_heartbeat("g", hb("c", 0, names=["orders"], owned={}))
            d = await join(coord, "g", "d-1", protocols=SUB, session_ms=100)
            assert d.error is E.none
            await asyncio.sleep(0.3)  # d never heartbeats: removed after its own session timeout
            assert "d-1" not in coord.group("g").consumer.members
            # a classic member must SyncGroup after its JoinGroup, and rejoin when told to, within
            # its rebalance timeout (though it keeps heartbeating)
            e = await join(coord, "g", "e-1", protocols=SUB, rebalance_ms=150)
            for _ in range(5):
                await asyncio.sleep(0.05)
                coord.heartbeat("g", e.generation_id, "e-1")
            assert "e-1" not in coord.group("g").consumer.members
            f = await join(coord, "g", "f-1", protocols=SUB, rebalance_ms=150)
            assert (await coord.sync("g", f.generation_id, "f-1")).error is E.none
            await coord.consumer_heartbeat("g", hb("c2", 0, names=["orders"], owned={}))  # a new epoch
            assert coord.heartbeat("g", f.generation_id, "f-1") is E.rebalance_in_progress
            for _ in range(5):
                await asyncio.sleep(0.05)
                coord.heartbeat("g", f.generation_id, "f-1")
            assert "f-1" not in coord.group("g").consumer.members
            (described,) = coord.consumer_describe(["g"])
            assert sorted(m.member_id for m in described.members) == ["c", "c2"]

    run(go())


def test_subscription_bytes_of_every_version() -> None:
    v1 = (
        struct.pack(">hi", 1, 1) + struct.pack(">h", 6) + b"orders" + struct.pack(">i", -1)
        + struct.pack(">i", 1) + struct.pack(">h", 6) + b"orders" + struct.pack(">iii", 2, 0, 4)
    )  # fmt: skip
    v3 = v1[:0] + struct.pack(">h", 3) + v1[2:] + struct.pack(">i", 7) + struct.pack(">h", 2) + b"r1"
    assert parse_subscription(v1).owned == {"orders": [0, 4]}
    parsed = parse_subscription(v3)
    assert (parsed.topics, parsed.owned, parsed.rack_id) == (["orders"], {"orders": [0, 4]}, "r1")
    assert parse_subscription(subscription("a", "b")).topics == ["a", "b"]


def test_a_classic_static_member_replacing_the_last_consumer_member_downgrades(tmp_path) -> None:
    """Static membership across protocols: the instance's classic successor takes over its
    assignment, and, being the last consumer-protocol member, the group becomes classic at once
    (stable: nobody's assignment changes)."""

    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            s = await coord.consumer_heartbeat(
                "g", HeartbeatRequest("s-1", 0, instance_id="i1", subscribed_topic_names=["orders"], owned={})
            )
            k = await join_new(coord, "g", protocols=SUB, client_id="k")
            generation, got_k = k.generation_id, set()
            owned_s = s.assignment
            for _ in range(6):  # both move to their share: s by heartbeats, k by rejoining
                s = await coord.consumer_heartbeat(
                    "g", HeartbeatRequest("s-1", s.member_epoch, instance_id="i1", owned=owned_s)
                )
                owned_s = s.assignment if s.assignment is not None else owned_s
                if coord.heartbeat("g", generation, k.member_id) is not E.none:
                    generation, got_k = await rejoin_classic(coord, k.member_id)
            assert coord.consumer_describe(["g"])[0].state == "Stable"
            got_s = set(owned_s[T1])
            assert got_s | got_k == set(range(6)) and not got_s & got_k
            # the same instance comes back as a classic consumer (a new member id)
            successor = await join(coord, "g", protocols=SUB, instance="i1", client_id="s")
            assert successor.error is E.none
            kinds = {g.group_id: (g.group_type, g.state) for g in coord.list_groups()[1]}
            assert kinds["g"] == ("classic", "Stable")
            synced = await coord.sync("g", successor.generation_id, successor.member_id)
            assert synced.error is E.none
            assert set(parse_assignment(synced.assignment)["orders"]) == got_s

    run(go())


def test_describe_groups_shows_a_classic_members_own_subscription_bytes(tmp_path) -> None:
    """DescribeGroups of a group that migrates: a classic member is described with the
    subscription it joined with (user data and owned partitions kept) and the assignment it
    was given; a consumer-protocol member with a subscription of its topics."""

    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            c = await coord.consumer_heartbeat("g", hb("c", 0, names=["orders"], owned={}))
            v1 = (
                struct.pack(">hi", 1, 1) + struct.pack(">h", 6) + b"orders"
                + struct.pack(">i", 3) + b"udt"  # user data
                + struct.pack(">i", 1) + struct.pack(">h", 6) + b"orders" + struct.pack(">ii", 1, 5)
            )  # fmt: skip
            protocols = [("range", v1), ("roundrobin", subscription("orders"))]
            d = await join_new(coord, "g", protocols=protocols, client_id="d")
            assert d.error is E.none
            synced = await coord.sync("g", d.generation_id, d.member_id)
            assert synced.error is E.none
            await coord.consumer_heartbeat("g", hb("c", c.member_epoch, owned=c.assignment))
            (desc,) = coord.describe_groups(["g"])
            by_id = {m.member_id: m for m in desc.members}
            assert by_id[d.member_id].metadata == v1  # the very bytes of its JoinGroup
            assert parse_assignment(by_id[d.member_id].assignment) == parse_assignment(synced.assignment)
            assert parse_subscription(by_id["c"].metadata).topics == ["orders"]

    run(go())


class Partition:
    """The group's ``__consumer_offsets`` partition as its leader appends to it; ``failing``: the
    error its appends fail with (leadership moved, too few in-sync replicas)."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.failing: E | None = None

    def append(self, _partition: int, records, producer=None):
        fut = asyncio.get_running_loop().create_future()
        if self.failing is not None:
            fut.set_exception(AppendError(self.failing, "append refused"))
        else:
            self.records += records
            fut.set_result(0)
        return fut


def test_a_join_whose_write_fails_answers_as_kafka_maps_the_append_error(tmp_path) -> None:
    """Kafka's group coordinator answers NOT_COORDINATOR when the append failed because the
    partition's leadership moved (the client looks the coordinator up again) and
    COORDINATOR_NOT_AVAILABLE when too few replicas are in sync, for classic and consumer
    members alike."""

    async def go():
        partition = Partition()
        store = OffsetsTopicStore(lambda _g: 0, partition.append)
        async with coordinator(
            tmp_path, CONFIG, topics=lambda: TOPICS, store=store, partition_of=lambda _g: 0
        ) as coord:
            coord.begin_load(0)

            async def nothing():
                return
                yield

            await coord.load(0, nothing())
            c = await coord.consumer_heartbeat("g", hb("c", 0, names=["orders"], owned={}))
            assert c.error is E.none and partition.records
            for failing, expected in (
                (E.not_leader_or_follower, E.not_coordinator),
                (E.kafka_storage_error, E.not_coordinator),
                (E.not_enough_replicas, E.coordinator_not_available),
            ):
                partition.failing = failing
                joined = await join_new(coord, "g", protocols=SUB, client_id=f"d-{failing.name}")
                assert joined.error is expected, failing
                member = await coord.consumer_heartbeat(
                    "g", hb(f"e-{failing.name}", 0, names=["orders"], owned={})
                )
                assert member.error is expected, failing

    run(go())
