"""The consumer group protocol on the group coordinator (no wire, real asyncio timers).

Target assignments by the ``uniform`` and ``range`` assignors, reconciliation with member epochs
(revoke before assign), fencing, static membership, regex subscriptions, session timeouts,
offsets shared with the classic protocol, protocol changes of empty groups, and restarts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from grouptest import FAST, PROTOCOLS, coordinator, join, join_new, run
from kio.schema.errors import ErrorCode

from brokerd.groups import CommitEntry
from brokerd.groups.assignors import MemberSpec, range_assign, uniform_assign
from brokerd.groups.consumer import HeartbeatRequest, encode_assignment
from brokerd.groups.group import parse_subscription_topics

E = ErrorCode
T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)
TOPICS = {"orders": (T1, 6), "payments": (T2, 2), "other": (uuid.UUID(int=3), 1)}
CONFIG = dataclasses.replace(FAST, consumer_session_timeout_ms=300, consumer_heartbeat_interval_ms=50)


def hb(member: str, epoch: int, *, names=None, owned=None, **kw) -> HeartbeatRequest:
    return HeartbeatRequest(member, epoch, subscribed_topic_names=names, owned=owned, **kw)


def owned_of(result) -> dict:
    return {t: set(ps) for t, ps in (result.assignment or {}).items()}


def count(a) -> int:
    return sum(len(ps) for ps in a.values())


# --- assignors -------------------------------------------------------------------------------


def test_range_gives_contiguous_ranges_per_topic() -> None:
    members = {m: MemberSpec(frozenset({T1, T2})) for m in ("a", "b", "c", "d")}
    out = range_assign(members, {T1: 6, T2: 2})
    assert [sorted(out[m].get(T1, ())) for m in "abcd"] == [[0, 1], [2, 3], [4], [5]]
    assert [sorted(out[m].get(T2, ())) for m in "abcd"] == [[0], [1], [], []]


def test_uniform_balances_and_keeps_what_it_can() -> None:
    members = {m: MemberSpec(frozenset({T1})) for m in ("a", "b")}
    first = uniform_assign(members, {T1: 6})
    assert sorted(count(a) for a in first.values()) == [3, 3]
    members = {m: MemberSpec(frozenset({T1}), first.get(m, {})) for m in ("a", "b", "c")}
    second = uniform_assign(members, {T1: 6})
    assert sorted(count(a) for a in second.values()) == [2, 2, 2]
    for m in ("a", "b"):  # the old members only give up partitions, never swap them
        assert second[m][T1] <= first[m][T1]
    # heterogeneous subscriptions: only subscribers get a topic's partitions
    members = {"a": MemberSpec(frozenset({T1})), "b": MemberSpec(frozenset({T1, T2}))}
    mixed = uniform_assign(members, {T1: 6, T2: 2})
    assert T2 not in mixed["a"] and mixed["b"][T2] == {0, 1}
    assert count(mixed["a"]) == 4 and count(mixed["b"]) == 4


# --- reconciliation --------------------------------------------------------------------------


def test_members_split_partitions_revoking_before_assigning(tmp_path) -> None:
    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            a = await coord.consumer_heartbeat("g", hb("a", 0, names=["orders"], owned={}))
            assert (a.error, a.member_epoch, owned_of(a)) == (E.none, 1, {T1: set(range(6))})
            assert a.heartbeat_interval_ms == 50
            b = await coord.consumer_heartbeat("g", hb("b", 0, names=["orders"], owned={}))
            # b's share is still a's: b moves to epoch 2 with nothing until a lets go
            assert (b.member_epoch, owned_of(b)) == (2, {})
            a2 = await coord.consumer_heartbeat("g", hb("a", 1))
            kept = owned_of(a2)[T1]
            assert a2.member_epoch == 1 and len(kept) == 3  # a revokes 3, keeps 3, same epoch
            # a has not confirmed the revocation yet: b still waits
            b2 = await coord.consumer_heartbeat("g", hb("b", 2))
            assert b2.assignment is None
            a3 = await coord.consumer_heartbeat("g", hb("a", 1, owned={T1: kept}))
            assert (a3.member_epoch, a3.assignment) == (2, None)
            b3 = await coord.consumer_heartbeat("g", hb("b", 2))
            assert owned_of(b3) == {T1: set(range(6)) - kept}
            (desc,) = coord.consumer_describe(["g"])
            assert (desc.state, desc.group_epoch, desc.assignment_epoch) == ("Stable", 2, 2)
            assert {m.member_id: m.member_epoch for m in desc.members} == {"a": 2, "b": 2}

    run(go())


def test_epoch_fencing_and_lost_responses(tmp_path) -> None:
    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            await coord.consumer_heartbeat("g", hb("a", 0, names=["payments"], owned={}))
            assert (await coord.consumer_heartbeat("g", hb("a", 5))).error is E.fenced_member_epoch
            assert (await coord.consumer_heartbeat("g", hb("zz", 1))).error is E.unknown_member_id
            assert (await coord.consumer_heartbeat("nope", hb("a", 1))).error is E.group_id_not_found
            b = await coord.consumer_heartbeat("g", hb("b", 0, names=["orders"], owned={}))
            assert b.member_epoch == 2
            # a missed the response that moved it to epoch 2: its previous epoch is still accepted
            again = await coord.consumer_heartbeat("g", hb("a", 1, owned={T2: {0, 1}}))
            assert (again.error, again.member_epoch) == (E.none, 2)
            assert (
                await coord.consumer_heartbeat("g", hb("a", 0, names=["x"], server_assignor="rr"))
            ).error is (E.unsupported_assignor)
            bad = await coord.consumer_heartbeat("g", hb("c", 0, subscribed_topic_regex="a(b"))
            assert bad.error is E.invalid_regular_expression

    run(go())


def test_regex_subscription_uses_re2_and_follows_new_topics(tmp_path) -> None:
    topics = dict(TOPICS)

    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: topics) as coord:
            r = await coord.consumer_heartbeat(
                "g", hb("a", 0, subscribed_topic_regex="pay.*|orders", owned={})
            )
            assert set(owned_of(r)) == {T1, T2}
            t4 = uuid.uuid4()
            topics["payments-eu"] = (t4, 1)  # a new matching topic bumps the group epoch
            r2 = await coord.consumer_heartbeat("g", hb("a", 1))
            assert r2.member_epoch == 2 and owned_of(r2)[t4] == {0}

    run(go())


def test_static_member_comes_back_to_its_partitions(tmp_path) -> None:
    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            a = await coord.consumer_heartbeat(
                "g", hb("a1", 0, names=["orders"], owned={}, instance_id="i-a")
            )
            await coord.consumer_heartbeat("g", hb("b", 0, names=["orders"], owned={}))
            mine = owned_of(await coord.consumer_heartbeat("g", hb("a1", 1)))
            await coord.consumer_heartbeat("g", hb("a1", 1, owned=mine, instance_id="i-a"))
            epoch = (await coord.consumer_heartbeat("g", hb("a1", 2, instance_id="i-a"))).member_epoch
            # another process with the same instance id while a1 is alive
            dup = await coord.consumer_heartbeat(
                "g", hb("a2", 0, names=["orders"], owned={}, instance_id="i-a")
            )
            assert dup.error is E.unreleased_instance_id
            left = await coord.consumer_heartbeat("g", hb("a1", -2, instance_id="i-a"))
            assert (left.error, left.member_epoch) == (E.none, -2)
            back = await coord.consumer_heartbeat(
                "g", hb("a2", 0, names=["orders"], owned={}, instance_id="i-a")
            )
            assert (back.error, back.member_epoch, owned_of(back)) == (E.none, epoch, mine)
            (desc,) = coord.consumer_describe(["g"])
            assert desc.group_epoch == 2  # no rebalance for the restart
            old = await coord.consumer_heartbeat("g", hb("a1", epoch, instance_id="i-a"))
            assert old.error is E.fenced_instance_id
            assert a.error is E.none

    run(go())


def test_session_timeout_frees_partitions_and_max_size(tmp_path) -> None:
    config = dataclasses.replace(CONFIG, consumer_max_size=2)

    async def go():
        async with coordinator(tmp_path, config, topics=lambda: TOPICS) as coord:
            await coord.consumer_heartbeat("g", hb("a", 0, names=["orders"], owned={}))
            await coord.consumer_heartbeat("g", hb("b", 0, names=["orders"], owned={}))
            full = await coord.consumer_heartbeat("g", hb("c", 0, names=["orders"], owned={}))
            assert full.error is E.group_max_size_reached
            for _ in range(8):  # b keeps heartbeating, a is silent past its session timeout
                await asyncio.sleep(0.06)
                last = await coord.consumer_heartbeat("g", hb("b", 2))
            assert last.error is E.none
            (desc,) = coord.consumer_describe(["g"])
            assert [m.member_id for m in desc.members] == ["b"]
            assert (await coord.consumer_heartbeat("g", hb("a", 1))).error is E.unknown_member_id

    run(go())


# --- offsets and protocol changes --------------------------------------------------------------


def test_commits_check_the_member_epoch(tmp_path) -> None:
    async def go():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            await coord.consumer_heartbeat("g", hb("a", 0, names=["orders"], owned={}))
            entry = [CommitEntry("orders", 0, 42)]
            ok = await coord.commit_offsets("g", entry, generation_id=1, member_id="a")
            assert ok == {("orders", 0): E.none}
            stale = await coord.commit_offsets("g", entry, generation_id=0, member_id="a")
            assert stale == {("orders", 0): E.stale_member_epoch}
            unknown = await coord.commit_offsets("g", entry, generation_id=1, member_id="zz")
            assert unknown == {("orders", 0): E.unknown_member_id}
            error, fetched = coord.fetch_offsets("g", [("orders", 0)], member_id="a", member_epoch=1)
            assert (error, fetched[0].offset) == (E.none, 42)
            assert coord.fetch_offsets("g", None, member_id="a", member_epoch=3)[0] is E.stale_member_epoch
            # the group is of the consumer type for ListGroups; a JoinGroup of another protocol
            # type cannot join it (a classic consumer can: tests/brokerd/groups/test_migration.py)
            _, listed = coord.list_groups(types=["consumer"])
            assert [(g.group_id, g.group_type, g.state) for g in listed] == [("g", "consumer", "Stable")]
            joined = await join(coord, "g", version=3, protocol_type="connect")
            assert joined.error is E.inconsistent_group_protocol
            # DescribeGroups shows it as Kafka 4 does: the consumer protocol's bytes per member
            (classic_view,) = coord.describe_groups(["g"])
            assert (classic_view.error, classic_view.state, classic_view.protocol_type) == (
                E.none,
                "Stable",
                "consumer",
            )
            (m,) = classic_view.members
            assert parse_subscription_topics(m.metadata) == ["orders"]
            assert m.assignment == encode_assignment({"orders": [0, 1, 2, 3, 4, 5]})
            assert m.assignment[:6] == b"\x00\x00\x00\x00\x00\x01"  # version 0, one topic
            assert (await coord.delete_groups(["g"]))["g"] is E.non_empty_group

    run(go())


def test_empty_classic_group_is_taken_over_with_its_offsets(tmp_path) -> None:
    """Empty groups change protocol under every group.consumer.migration.policy, even disabled."""
    disabled = dataclasses.replace(CONFIG, consumer_migration_policy="disabled")

    async def go():
        async with coordinator(tmp_path, disabled, topics=lambda: TOPICS) as coord:
            classic = await join_new(coord, "g", protocols=PROTOCOLS)
            member = classic.member_id
            await coord.sync("g", classic.generation_id, member, assignments={member: b""})
            await coord.commit_offsets(
                "g",
                [CommitEntry("orders", 3, 7)],
                generation_id=classic.generation_id,
                member_id=classic.member_id,
            )
            # with the policy disabled, a consumer-protocol member cannot join the classic member
            refused = await coord.consumer_heartbeat("g", hb("a", 0, names=["orders"], owned={}))
            assert refused.error is E.group_id_not_found
            coord.leave("g", [(classic.member_id, None)])
            taken = await coord.consumer_heartbeat("g", hb("a", 0, names=["orders"], owned={}))
            assert taken.error is E.none and taken.member_epoch >= 1
            error, fetched = coord.fetch_offsets(
                "g", [("orders", 3)], member_id="a", member_epoch=taken.member_epoch
            )
            assert (error, fetched[0].offset) == (E.none, 7)
            # and back: once the consumer-protocol member leaves, a classic member takes it over
            await coord.consumer_heartbeat("g", hb("a", -1))
            again = await join_new(coord, "g", protocols=PROTOCOLS)
            assert again.error is E.none
            assert coord.fetch_offsets("g", [("orders", 3)])[1][0].offset == 7

    run(go())


def test_consumer_group_survives_a_coordinator_restart(tmp_path) -> None:
    async def first():
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            a = await coord.consumer_heartbeat("g", hb("a", 0, names=["orders"], owned={}))
            await coord.commit_offsets("g", [CommitEntry("orders", 1, 9)], generation_id=1, member_id="a")
            return owned_of(a)

    async def second(expected):
        async with coordinator(tmp_path, CONFIG, topics=lambda: TOPICS) as coord:
            (desc,) = coord.consumer_describe(["g"])
            assert (desc.group_epoch, [m.member_id for m in desc.members]) == (1, ["a"])
            again = await coord.consumer_heartbeat("g", hb("a", 1))
            assert (again.error, again.member_epoch) == (E.none, 1)
            assert {t: set(ps) for t, _n, ps in desc.members[0].assignment} == expected
            assert coord.fetch_offsets("g", [("orders", 1)])[1][0].offset == 9

    run(second(run(first())))
