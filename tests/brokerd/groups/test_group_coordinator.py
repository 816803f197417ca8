"""The classic group state machine: joins, syncs, heartbeats, leaves, timeouts, static members."""

from __future__ import annotations

import asyncio

from grouptest import FAST, PROTOCOLS, coordinator, join, join_new, run, subscription
from kio.schema.errors import ErrorCode as E

from brokerd.groups import GroupConfig, GroupState


def test_member_id_required_then_single_member_becomes_leader(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            first = await join(coord)
            assert first.error is E.member_id_required
            assert first.member_id.startswith("c-")
            assert first.generation_id == -1
            res = await join(coord, member_id=first.member_id)
            assert res.error is E.none
            assert res.member_id == first.member_id
            assert res.leader_id == res.member_id
            assert res.generation_id == 1
            assert res.protocol_name == "range"
            assert [(m.member_id, m.metadata) for m in res.members] == [(res.member_id, PROTOCOLS[0][1])]
            assert coord.group("g").state is GroupState.COMPLETING_REBALANCE
            sync = await coord.sync("g", 1, res.member_id, assignments={res.member_id: b"\x00opaque"})
            assert sync.error is E.none
            assert sync.assignment == b"\x00opaque"
            assert (sync.protocol_type, sync.protocol_name) == ("consumer", "range")
            assert coord.group("g").state is GroupState.STABLE
            assert coord.heartbeat("g", 1, res.member_id) is E.none

    run(main())


def test_old_join_versions_get_a_member_id_directly(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            res = await join(coord, version=3)
            assert res.error is E.none and res.member_id

    run(main())


def test_three_members_assignment_relayed_untouched(tmp_path):
    async def main():
        async with coordinator(
            tmp_path, GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=50)
        ) as coord:
            results = await asyncio.gather(*(join_new(coord) for _ in range(3)))
            assert {r.generation_id for r in results} == {1}
            leaders = [r for r in results if r.members]
            assert len(leaders) == 1
            leader = leaders[0]
            assert all(r.leader_id == leader.member_id for r in results)
            assert sorted(m.member_id for m in leader.members) == sorted(r.member_id for r in results)
            assignment = {r.member_id: f"bytes-for-{r.member_id}".encode() for r in results}
            syncs = await asyncio.gather(
                *(
                    coord.sync("g", 1, r.member_id, assignments=assignment if r is leader else {})
                    for r in results
                )
            )
            for r, s in zip(results, syncs, strict=True):
                assert s.error is E.none
                assert s.assignment == assignment[r.member_id]

    run(main())


def test_protocol_selection_by_vote(tmp_path):
    a, b, c = (b"A", b"B", b"C")

    async def main():
        async with coordinator(
            tmp_path, GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=50)
        ) as coord:
            results = await asyncio.gather(
                join_new(coord, protocols=[("range", a), ("roundrobin", a), ("sticky", a)]),
                join_new(coord, protocols=[("roundrobin", b), ("range", b)]),
                join_new(coord, protocols=[("roundrobin", c), ("range", c), ("cooperative-sticky", c)]),
            )
            # Candidates are range and roundrobin (supported by all); roundrobin has two votes.
            assert {r.protocol_name for r in results} == {"roundrobin"}
            leader = next(r for r in results if r.members)
            assert sorted(m.metadata for m in leader.members) == [a, b, c]

    run(main())


def test_inconsistent_protocols_and_bad_session_timeout(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            first = await join_new(coord, protocols=[("range", b"")])
            assert first.error is E.none
            res = await join(coord, protocols=[("sticky", b"")])
            assert res.error is E.inconsistent_group_protocol
            res = await join(coord, protocols=[("range", b"")], protocol_type="connect")
            assert res.error is E.inconsistent_group_protocol
            res = await join(coord, "other", protocols=[])
            assert res.error is E.inconsistent_group_protocol
            assert coord.group("other") is None
            res = await join(coord, session_ms=5)
            assert res.error is E.invalid_session_timeout
            res = await join(coord, session_ms=10**7)
            assert res.error is E.invalid_session_timeout
            res = await join(coord, "")
            assert res.error is E.invalid_group_id
            res = await join(coord, "nosuch", member_id="m-1")
            assert res.error is E.unknown_member_id

    run(main())


def test_sync_and_heartbeat_errors(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            assert coord.heartbeat("nosuch", 0, "m") is E.unknown_member_id
            assert (await coord.sync("nosuch", 0, "m")).error is E.unknown_member_id
            res = await join_new(coord)
            mid = res.member_id
            assert (await coord.sync("g", 1, "stranger")).error is E.unknown_member_id
            assert (await coord.sync("g", 7, mid)).error is E.illegal_generation
            assert (
                await coord.sync("g", 1, mid, protocol_name="other")
            ).error is E.inconsistent_group_protocol
            assert (
                await coord.sync("g", 1, mid, protocol_type="connect")
            ).error is E.inconsistent_group_protocol
            assert coord.heartbeat("g", 7, mid) is E.illegal_generation
            assert coord.heartbeat("g", 1, "stranger") is E.unknown_member_id
            assert coord.heartbeat("g", 1, mid) is E.none  # CompletingRebalance heartbeats are fine
            assert coord.heartbeat("", 1, mid) is E.invalid_group_id
            await coord.sync("g", 1, mid, assignments={mid: b"x"})
            # A second member joins: the group prepares to rebalance.
            joiner = asyncio.ensure_future(join_new(coord))
            await asyncio.sleep(0.01)
            assert coord.group("g").state is GroupState.PREPARING_REBALANCE
            assert coord.heartbeat("g", 1, mid) is E.rebalance_in_progress
            assert (await coord.sync("g", 1, mid)).error is E.rebalance_in_progress
            again = await join(coord, member_id=mid)
            assert again.generation_id == 2
            assert (await joiner).generation_id == 2

    run(main())


def test_rejoin_in_completing_rebalance_repeats_answer_and_follower_rejoin_in_stable(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=30)
        async with coordinator(tmp_path, cfg) as coord:
            r1, r2 = await asyncio.gather(join_new(coord), join_new(coord))
            follower = r1 if not r1.members else r2
            leader = r2 if follower is r1 else r1
            # Lost response: the same metadata gets the same generation back, no rebalance.
            again = await join(coord, member_id=follower.member_id)
            assert (again.error, again.generation_id, again.members) == (E.none, 1, [])
            again_leader = await join(coord, member_id=leader.member_id)
            assert again_leader.generation_id == 1 and len(again_leader.members) == 2
            await asyncio.gather(
                coord.sync(
                    "g", 1, leader.member_id, assignments={leader.member_id: b"L", follower.member_id: b"F"}
                ),
                coord.sync("g", 1, follower.member_id),
            )
            # Stable: a follower rejoining with unchanged metadata gets the current generation.
            res = await join(coord, member_id=follower.member_id)
            assert (res.error, res.generation_id) == (E.none, 1)
            assert coord.group("g").state is GroupState.STABLE
            assert (await coord.sync("g", 1, follower.member_id)).assignment == b"F"

    run(main())


def test_session_timeout_evicts_member_and_rebalances(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=30)
        async with coordinator(tmp_path, cfg) as coord:
            r1, r2 = await asyncio.gather(join_new(coord, session_ms=150), join_new(coord, session_ms=150))
            leader = r1 if r1.members else r2
            other = r2 if leader is r1 else r1
            await asyncio.gather(
                coord.sync("g", 1, leader.member_id, assignments={}), coord.sync("g", 1, other.member_id)
            )
            # Only the leader heartbeats; the other member's session expires.
            error = E.none
            for _ in range(40):
                await asyncio.sleep(0.02)
                error = coord.heartbeat("g", 1, leader.member_id)
                if error is not E.none:
                    break
            assert error is E.rebalance_in_progress
            assert other.member_id not in coord.group("g").members
            res = await join(coord, member_id=leader.member_id)
            assert res.generation_id == 2
            assert [m.member_id for m in res.members] == [leader.member_id]

    run(main())


def test_rebalance_timeout_drops_members_that_do_not_rejoin(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=30)
        async with coordinator(tmp_path, cfg) as coord:
            r1, r2 = await asyncio.gather(
                join_new(coord, rebalance_ms=200, session_ms=5000),
                join_new(coord, rebalance_ms=200, session_ms=5000),
            )
            leader = r1 if r1.members else r2
            lazy = r2 if leader is r1 else r1
            await asyncio.gather(coord.sync("g", 1, leader.member_id), coord.sync("g", 1, lazy.member_id))
            loop = asyncio.get_running_loop()
            started = loop.time()
            res = await join(coord, member_id=leader.member_id, rebalance_ms=200)  # leader forces a rebalance
            waited = loop.time() - started
            assert res.generation_id == 2
            assert [m.member_id for m in res.members] == [leader.member_id]
            assert 0.15 <= waited < 2
            assert coord.heartbeat("g", 2, lazy.member_id) is E.unknown_member_id

    run(main())


def test_initial_rebalance_delay_collects_members(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=150)
        async with coordinator(tmp_path, cfg) as coord:
            loop = asyncio.get_running_loop()
            started = loop.time()
            first = asyncio.ensure_future(join_new(coord, rebalance_ms=2000))
            await asyncio.sleep(0.1)
            second = asyncio.ensure_future(join_new(coord, rebalance_ms=2000))
            r1, r2 = await asyncio.gather(first, second)
            elapsed = loop.time() - started
            assert r1.generation_id == r2.generation_id == 1
            # The second member arrived during the delay, which extended it once more.
            assert 0.25 <= elapsed < 1.5

    run(main())


def test_leave_group_batched_and_by_instance_id(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=30)
        async with coordinator(tmp_path, cfg) as coord:
            results = await asyncio.gather(
                join_new(coord), join_new(coord), join(coord, instance="i-1"), join(coord, instance="i-2")
            )
            assert {r.generation_id for r in results} == {1}
            dyn1, dyn2, _stat1, stat2 = results
            error, members = coord.leave(
                "g",
                [(dyn1.member_id, None), (dyn2.member_id, None), ("", "i-1"), ("nobody", None), ("", "i-9")],
            )
            assert error is E.none
            assert [m.error for m in members] == [
                E.none,
                E.none,
                E.none,
                E.unknown_member_id,
                E.unknown_member_id,
            ]
            group = coord.group("g")
            assert list(group.members) == [stat2.member_id]
            assert group.state is GroupState.PREPARING_REBALANCE
            # Fenced: the right instance id with a stale member id.
            error, members = coord.leave("g", [("stale", "i-2")])
            assert members[0].error is E.fenced_instance_id
            assert coord.leave("nosuch", [("m", None)])[0] is E.unknown_member_id
            res = await join(coord, member_id=stat2.member_id, instance="i-2")
            assert res.generation_id == 2 and len(res.members) == 1

    run(main())


def test_pending_member_leave_and_expiry(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            first = await join(coord, session_ms=50)
            assert first.error is E.member_id_required
            assert coord.group("g").is_pending(first.member_id)
            _, members = coord.leave("g", [(first.member_id, None)])
            assert members[0].error is E.none
            second = await join(coord, session_ms=50)
            await asyncio.sleep(0.15)
            assert not coord.group("g").is_pending(second.member_id)

    run(main())


def test_static_member_rejoins_without_rebalance_and_old_id_is_fenced(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=30)
        async with coordinator(tmp_path, cfg) as coord:
            a, b = await asyncio.gather(
                join(coord, instance="a", version=5), join(coord, instance="b", version=5)
            )
            assert a.member_id.startswith("a-")
            leader = a if a.members else b
            follower = b if leader is a else a
            follower_instance = "b" if follower is b else "a"
            assignment = {leader.member_id: b"LEADER", follower.member_id: b"FOLLOWER"}
            await asyncio.gather(
                coord.sync("g", 1, leader.member_id, assignments=assignment),
                coord.sync("g", 1, follower.member_id),
            )
            # The follower restarts (new process, same instance id): no rebalance.
            back = await join(coord, instance=follower_instance, version=5)
            assert back.error is E.none
            assert back.member_id != follower.member_id
            assert back.generation_id == 1
            assert back.leader_id == leader.member_id
            assert coord.group("g").state is GroupState.STABLE
            sync = await coord.sync("g", 1, back.member_id, group_instance_id=follower_instance)
            assert sync.assignment == b"FOLLOWER"
            # The zombie with the old member id is fenced everywhere.
            assert coord.heartbeat("g", 1, follower.member_id, follower_instance) is E.fenced_instance_id
            zombie = await join(coord, member_id=follower.member_id, instance=follower_instance)
            assert zombie.error is E.fenced_instance_id
            assert (
                await coord.sync("g", 1, follower.member_id, group_instance_id=follower_instance)
            ).error is (E.fenced_instance_id)
            commit = await coord.commit_offsets(
                "g",
                [_entry("t", 0, 5)],
                generation_id=1,
                member_id=follower.member_id,
                group_instance_id=follower_instance,
            )
            assert commit[("t", 0)] is E.fenced_instance_id
            assert coord.heartbeat("g", 1, back.member_id, follower_instance) is E.none

    run(main())


def test_static_leader_rejoin_v9_skips_assignment_and_old_versions_see_old_leader(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join(coord, instance="a")
            await coord.sync("g", 1, a.member_id, assignments={a.member_id: b"A"})
            back = await join(coord, instance="a", version=9)
            assert back.generation_id == 1
            assert back.leader_id == back.member_id
            assert back.skip_assignment is True
            assert [m.member_id for m in back.members] == [back.member_id]
            old = await join(coord, instance="a", version=5)
            assert old.generation_id == 1
            assert old.leader_id == back.member_id  # the previous (replaced) leader id
            assert old.skip_assignment is False and old.members == []
            assert (await coord.sync("g", 1, old.member_id, group_instance_id="a")).assignment == b"A"

    run(main())


def test_static_member_with_changed_protocols_triggers_rebalance(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join(coord, instance="a", protocols=[("range", b"1")])
            await coord.sync("g", 1, a.member_id)
            bad = await join(coord, instance="a", protocols=[("roundrobin", b"1")])
            assert bad.error is E.inconsistent_group_protocol  # must overlap the group's protocols
            back = await join(coord, instance="a", protocols=[("roundrobin", b"1"), ("range", b"1")])
            assert back.generation_id == 2
            assert back.protocol_name == "roundrobin"

    run(main())


def test_static_member_session_expiry_removes_it(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a, b = await asyncio.gather(join(coord, instance="a", session_ms=100), join(coord, instance="b"))
            await asyncio.gather(
                coord.sync("g", a.generation_id, a.member_id), coord.sync("g", 1, b.member_id)
            )
            for _ in range(15):
                await asyncio.sleep(0.02)
                coord.heartbeat("g", 1, b.member_id, "b")
            group = coord.group("g")
            assert "a" not in group.static_members
            assert group.state is GroupState.PREPARING_REBALANCE

    run(main())


def test_follower_that_never_syncs_is_removed(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=30)
        async with coordinator(tmp_path, cfg) as coord:
            r1, r2 = await asyncio.gather(
                join_new(coord, rebalance_ms=150), join_new(coord, rebalance_ms=150)
            )
            leader = r1 if r1.members else r2
            silent = r2 if leader is r1 else r1
            await coord.sync("g", 1, leader.member_id, assignments={})
            await asyncio.sleep(0.2)  # sync deadline (150 ms) passed; the next rebalance is pending
            group = coord.group("g")
            assert silent.member_id not in group.members
            assert group.state is GroupState.PREPARING_REBALANCE

    run(main())


def test_joining_member_during_completing_rebalance_fails_pending_syncs(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord)
            # Leader does not sync yet; a follower that already synced waits. Then someone joins.
            b_join = asyncio.ensure_future(join_new(coord))
            await asyncio.sleep(0.01)
            assert coord.group("g").state is GroupState.PREPARING_REBALANCE
            a2 = await join(coord, member_id=a.member_id)
            b = await b_join
            assert a2.generation_id == b.generation_id == 2
            follower = b if a2.members else a2
            parked = asyncio.ensure_future(coord.sync("g", 2, follower.member_id))
            await asyncio.sleep(0.01)
            c_join = asyncio.ensure_future(join_new(coord))
            res = await parked
            assert res.error is E.rebalance_in_progress
            leader = a2 if a2.members else b
            await asyncio.gather(
                join(coord, member_id=leader.member_id), join(coord, member_id=follower.member_id)
            )
            assert (await c_join).generation_id == 3

    run(main())


def test_group_max_size(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=0, max_size=1)
        async with coordinator(tmp_path, cfg) as coord:
            a = await join_new(coord)
            await coord.sync("g", 1, a.member_id)
            res = await join(coord)
            assert res.error is E.group_max_size_reached
            assert (await join(coord, member_id=a.member_id)).error is E.none  # members are still accepted

    run(main())


def test_describe_and_list_groups(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord, "g1", client_id="client-a")
            await coord.sync("g1", 1, a.member_id, assignments={a.member_id: b"AS"})
            await coord.commit_offsets("simple", [_entry("t", 0, 3)])
            d1, d2, d3 = coord.describe_groups(["g1", "simple", "nosuch"])
            assert (d1.error, d1.state, d1.protocol_type, d1.protocol_data) == (
                E.none,
                "Stable",
                "consumer",
                "range",
            )
            m = d1.members[0]
            assert (m.member_id, m.client_id, m.client_host, m.assignment) == (
                a.member_id,
                "client-a",
                "/127.0.0.1",
                b"AS",
            )
            assert m.metadata == PROTOCOLS[0][1]
            assert (d2.state, d2.protocol_type, d2.members) == ("Empty", "", [])
            assert (d3.state, d3.error) == ("Dead", E.none)
            error, listed = coord.list_groups()
            assert error is E.none
            assert sorted((g.group_id, g.state, g.protocol_type) for g in listed) == [
                ("g1", "Stable", "consumer"),
                ("simple", "Empty", ""),
            ]
            assert [g.group_id for g in coord.list_groups(["stable"])[1]] == ["g1"]
            assert [g.group_id for g in coord.list_groups(["Empty"])[1]] == ["simple"]
            assert coord.list_groups(types=["consumer"])[1] == []
            assert len(coord.list_groups(types=["classic"])[1]) == 2
            metrics = coord.metrics()
            assert metrics.groups_by_state["Stable"] == 1 and metrics.groups_by_state["Empty"] == 1
            assert metrics.members_by_group == {"g1": 1, "simple": 0}
            assert list(coord.committed_offsets()) == [("simple", "t", 0, 3)]

    run(main())


def test_find_coordinator_and_not_coordinator(tmp_path):
    async def main():
        async with coordinator(tmp_path, node_id=3, is_coordinator_for=lambda g: g != "elsewhere") as coord:
            assert coord.find_coordinator("g") == (E.none, 3)
            assert coord.find_coordinator("elsewhere")[0] is E.not_coordinator
            assert coord.find_coordinator("txn", 1)[0] is E.invalid_request
            assert (await join(coord, "elsewhere")).error is E.not_coordinator
            assert coord.heartbeat("elsewhere", 1, "m") is E.not_coordinator

    run(main())


def test_not_started_or_closed_coordinator(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord)
            parked = asyncio.ensure_future(coord.sync("g", 1, a.member_id))
            await asyncio.sleep(0)
            other = asyncio.ensure_future(join_new(coord))
            await asyncio.sleep(0.01)
        # close() answers parked requests.
        assert (await parked).error in (E.rebalance_in_progress, E.not_coordinator)
        assert (await other).error is E.not_coordinator
        assert coord.heartbeat("g", 1, a.member_id) is E.coordinator_not_available
        assert coord.find_coordinator("g")[0] is E.coordinator_not_available

    run(main())


def test_subscription_topics_parse():
    from brokerd.groups.group import parse_subscription_topics

    assert parse_subscription_topics(subscription("a", "bb", user_data=b"x")) == ["a", "bb"]


def _entry(topic, partition, offset, epoch=-1, metadata=""):
    from brokerd.groups import CommitEntry

    return CommitEntry(topic, partition, offset, epoch, metadata)


assert FAST.initial_rebalance_delay_ms == 0


def test_a_protocol_named_twice_counts_once(tmp_path):
    # A member listing one protocol twice still supports it once: the group's only member must
    # find it among the candidates (found by the fuzzer: the rebalance raised instead).
    async def main():
        async with coordinator(tmp_path) as coord:
            joined = await join_new(coord, protocols=[("range", b"a"), ("range", b"b")])
            assert joined.error is E.none and joined.protocol_name == "range"

    run(main())
