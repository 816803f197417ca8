"""Committed offsets: validation, durability (reload, torn tail, compaction), expiry, deletion."""

from __future__ import annotations

import asyncio
import time

from grouptest import FAST, coordinator, join, join_new, run, subscription
from kio.schema.errors import ErrorCode as E

from brokerd.groups import CommitEntry, GroupConfig, GroupState, OffsetsStore
from brokerd.groups.store import LOG_NAME, OffsetAndMetadata


def entries(*items):
    return [CommitEntry(*item) for item in items]


def test_simple_group_commit_and_fetch_round_trip(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            res = await coord.commit_offsets(
                "simple", entries(("t", 0, 10, 3, "meta ✓"), ("t", 1, 20, -1, None), ("u", 0, 0, 0, ""))
            )
            assert set(res.values()) == {E.none}
            error, fetched = coord.fetch_offsets("simple", [("t", 0), ("t", 1), ("t", 2), ("u", 0)])
            assert error is E.none
            assert [
                (f.topic, f.partition, f.offset, f.leader_epoch, f.metadata, f.error) for f in fetched
            ] == [
                ("t", 0, 10, 3, "meta ✓", E.none),
                ("t", 1, 20, -1, "", E.none),
                ("t", 2, -1, -1, "", E.none),
                ("u", 0, 0, 0, "", E.none),
            ]
            _, every = coord.fetch_offsets("simple", None)
            assert [(f.topic, f.partition) for f in every] == [("t", 0), ("t", 1), ("u", 0)]
            # Unknown group: -1 for what was asked, nothing for "all".
            assert coord.fetch_offsets("nosuch", [("t", 0)])[1][0].offset == -1
            assert coord.fetch_offsets("nosuch", None)[1] == []
            # Group id "" is valid for offsets (as in Kafka).
            assert (await coord.commit_offsets("", entries(("t", 0, 1))))[("t", 0)] is E.none

    run(main())


def test_commit_validation(tmp_path):
    async def main():
        cfg = GroupConfig(
            min_session_timeout_ms=10, initial_rebalance_delay_ms=0, offset_metadata_max_bytes=8
        )
        async with coordinator(tmp_path, cfg) as coord:
            one = entries(("t", 0, 5))
            res = await coord.commit_offsets("nosuch", one, generation_id=1, member_id="m")
            assert res[("t", 0)] is E.group_id_not_found
            res = await coord.commit_offsets("nosuch", one, generation_id=1, member_id="m", api_version=8)
            assert res[("t", 0)] is E.illegal_generation
            a = await join_new(coord)
            mid = a.member_id
            # CompletingRebalance: valid member and generation, but the assignment is not out yet.
            res = await coord.commit_offsets("g", one, generation_id=1, member_id=mid)
            assert res[("t", 0)] is E.rebalance_in_progress
            await coord.sync("g", 1, mid)
            assert (await coord.commit_offsets("g", one, generation_id=1, member_id=mid))[("t", 0)] is E.none
            assert (await coord.commit_offsets("g", one, generation_id=2, member_id=mid))[("t", 0)] is (
                E.illegal_generation
            )
            assert (await coord.commit_offsets("g", one, generation_id=1, member_id="x"))[("t", 0)] is (
                E.unknown_member_id
            )
            # Generation -1 into a group with members.
            assert (await coord.commit_offsets("g", one))[("t", 0)] is E.unknown_member_id
            res = await coord.commit_offsets(
                "g",
                entries(("t", 1, 1, -1, "123456789"), ("t", 2, 2, -1, "12345678")),
                generation_id=1,
                member_id=mid,
            )
            assert res == {("t", 1): E.offset_metadata_too_large, ("t", 2): E.none}
            # Empty group (after leaving): generation -1 commits are accepted again.
            coord.leave("g", [(mid, None)])
            await asyncio.sleep(0.01)
            assert coord.group("g").state is GroupState.EMPTY
            assert (await coord.commit_offsets("g", one))[("t", 0)] is E.none

    run(main())


def test_offsets_and_groups_survive_restart(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord, "g", protocols=[("range", subscription("t"))])
            await coord.sync("g", 1, a.member_id, assignments={a.member_id: b"ASSIGN"})
            await coord.commit_offsets(
                "g", entries(("t", 0, 42, 7, "hello")), generation_id=1, member_id=a.member_id
            )
            await coord.commit_offsets("simple", entries(("t", 3, 9)))
        async with coordinator(tmp_path) as coord:
            group = coord.group("g")
            assert group.state is GroupState.STABLE
            assert (group.generation_id, group.protocol_type, group.protocol_name) == (1, "consumer", "range")
            assert group.leader_id == a.member_id
            assert group.members[a.member_id].assignment == b"ASSIGN"
            assert group.subscribed_topics == {"t"}
            # The member resumes without rejoining.
            assert coord.heartbeat("g", 1, a.member_id) is E.none
            assert (await coord.sync("g", 1, a.member_id)).assignment == b"ASSIGN"
            f = coord.fetch_offsets("g", [("t", 0)])[1][0]
            assert (f.offset, f.leader_epoch, f.metadata) == (42, 7, "hello")
            assert coord.fetch_offsets("simple", [("t", 3)])[1][0].offset == 9
            assert coord.group("simple").state is GroupState.EMPTY

    run(main())


def test_restored_member_that_never_returns_is_expired(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord, session_ms=100)
            await coord.sync("g", 1, a.member_id)
        async with coordinator(tmp_path) as coord:
            assert coord.group("g").state is GroupState.STABLE
            await asyncio.sleep(0.25)
            # Session expired -> rebalance -> nobody rejoins -> Empty.
            assert coord.group("g").state is GroupState.EMPTY

    run(main())


def test_torn_tail_is_truncated(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            for i in range(5):
                await coord.commit_offsets("g", entries(("t", 0, i)))
        path = tmp_path / "__consumer_offsets" / LOG_NAME
        good = path.stat().st_size
        with path.open("ab") as f:
            f.write(b"\x00\x00\x00\x30\x12\x34")  # a torn frame header
        async with coordinator(tmp_path) as coord:
            assert coord.fetch_offsets("g", [("t", 0)])[1][0].offset == 4
            assert path.stat().st_size == good
            await coord.commit_offsets("g", entries(("t", 0, 5)))
        # Corrupt the last record's body: it is dropped, the rest survives.
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
        async with coordinator(tmp_path) as coord:
            assert coord.fetch_offsets("g", [("t", 0)])[1][0].offset == 4

    run(main())


def test_commits_share_fsyncs_and_log_is_compacted(tmp_path):
    async def main():
        cfg = GroupConfig(min_session_timeout_ms=10, commit_flush_window_ms=2, compaction_min_records=200)
        async with coordinator(tmp_path, cfg) as coord:
            await asyncio.gather(*(coord.commit_offsets("g", entries(("t", i % 4, i))) for i in range(200)))
            assert coord.store.syncs < 20
            for i in range(300):
                await coord.commit_offsets("g", entries(("t", 0, 1000 + i)))
            assert coord.store.compactions >= 1
            assert coord.store.records < 300
        async with coordinator(tmp_path, cfg) as coord:
            _, fetched = coord.fetch_offsets("g", None)
            assert [f.offset for f in fetched] == [1299, 197, 198, 199]

    run(main())


def test_delete_groups(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord, "busy")
            await coord.sync("busy", 1, a.member_id)
            await coord.commit_offsets("idle", entries(("t", 0, 1)))
            res = await coord.delete_groups(["busy", "idle", "nosuch"])
            assert res == {"busy": E.non_empty_group, "idle": E.none, "nosuch": E.group_id_not_found}
            assert coord.group("idle") is None
            assert coord.fetch_offsets("idle", [("t", 0)])[1][0].offset == -1
        async with coordinator(tmp_path) as coord:
            assert coord.group("idle") is None
            assert coord.group("busy") is not None

    run(main())


def test_offset_delete(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord, "g", protocols=[("range", subscription("used"))])
            await coord.sync("g", 1, a.member_id)
            await coord.commit_offsets(
                "g", entries(("used", 0, 1), ("unused", 0, 2)), generation_id=1, member_id=a.member_id
            )
            error, res = await coord.delete_offsets("g", [("used", 0), ("unused", 0)])
            assert error is E.none
            assert res == {("used", 0): E.group_subscribed_to_topic, ("unused", 0): E.none}
            assert coord.fetch_offsets("g", [("unused", 0)])[1][0].offset == -1
            assert (await coord.delete_offsets("nosuch", [("t", 0)]))[0] is E.group_id_not_found
            # A non-consumer protocol type group that is not empty.
            b = await join_new(coord, "connect", protocol_type="connect", protocols=[("v1", b"")])
            await coord.sync("connect", 1, b.member_id)
            assert (await coord.delete_offsets("connect", [("t", 0)]))[0] is E.non_empty_group
            # An empty group whose last offsets go away disappears.
            await coord.commit_offsets("simple", entries(("t", 0, 1)))
            assert (await coord.delete_offsets("simple", [("t", 0)]))[1] == {("t", 0): E.none}
            assert coord.group("simple") is None
        async with coordinator(tmp_path) as coord:
            assert coord.fetch_offsets("g", [("unused", 0)])[1][0].offset == -1
            assert coord.fetch_offsets("g", [("used", 0)])[1][0].offset == 1

    run(main())


def test_offset_expiry(tmp_path):
    now = [1_000_000_000]
    clock = lambda: now[0]  # noqa: E731
    minute = 60_000
    cfg = GroupConfig(min_session_timeout_ms=10, initial_rebalance_delay_ms=0, offsets_retention_minutes=10)

    async def main():
        async with coordinator(tmp_path, cfg, clock=clock) as coord:
            await coord.commit_offsets("simple", entries(("t", 0, 1)))
            a = await join_new(coord, "g", protocols=[("range", subscription("t"))])
            await coord.sync("g", 1, a.member_id)
            await coord.commit_offsets(
                "g", entries(("t", 0, 5), ("old", 0, 6)), generation_id=1, member_id=a.member_id
            )
            now[0] += 11 * minute
            # Stable consumer group: only offsets of unsubscribed topics expire.
            assert coord.expire_offsets() == 2
            assert coord.group("simple") is None
            assert [f.topic for f in coord.fetch_offsets("g", None)[1]] == ["t"]
            # The member leaves: retention counts from the moment the group became empty.
            coord.leave("g", [(a.member_id, None)])
            await asyncio.sleep(0.01)
            assert coord.group("g").state is GroupState.EMPTY
            now[0] += 9 * minute
            assert coord.expire_offsets() == 0
            now[0] += 2 * minute
            assert coord.expire_offsets() == 1
            assert coord.group("g") is None
            # v2-4 explicit retention time.
            await coord.commit_offsets("r", entries(("t", 0, 1)), retention_time_ms=1000)
            now[0] += 1000
            assert coord.expire_offsets() == 1
        async with coordinator(tmp_path, cfg, clock=clock) as coord:
            assert coord.group_ids() == []

    run(main())


def test_require_stable_reports_pending_commits(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            commit = asyncio.ensure_future(coord.commit_offsets("g", entries(("t", 0, 1))))
            await asyncio.sleep(0)
            assert (
                coord.fetch_offsets("g", [("t", 0)], require_stable=True)[1][0].error
                is E.unstable_offset_commit
            )
            await commit
            assert coord.fetch_offsets("g", [("t", 0)], require_stable=True)[1][0].offset == 1

    run(main())


def test_commit_keeps_a_member_alive(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            a = await join_new(coord, session_ms=120)
            await coord.sync("g", 1, a.member_id)
            for i in range(8):
                await asyncio.sleep(0.04)
                await coord.commit_offsets("g", entries(("t", 0, i)), generation_id=1, member_id=a.member_id)
            assert coord.group("g").state is GroupState.STABLE

    run(main())


def test_loading_100_groups_is_fast(tmp_path):
    async def main():
        async with coordinator(tmp_path) as coord:
            commits = []
            for g in range(100):
                group = f"group-{g}"
                a = await join(coord, group, version=3, client_id=group)
                await coord.sync(group, 1, a.member_id, assignments={a.member_id: b"x" * 64})
                offsets = entries(*((f"topic-{g % 10}", p, p * 1000, 0, "") for p in range(10)))
                commits.append(coord.commit_offsets(group, offsets, generation_id=1, member_id=a.member_id))
            await asyncio.gather(*commits)
        started = time.perf_counter()
        async with coordinator(tmp_path) as coord:
            elapsed = time.perf_counter() - started
            assert len(coord.group_ids()) == 100
            assert sum(1 for _ in coord.committed_offsets()) == 1000
            assert coord.load_seconds < 0.25, coord.load_seconds
        assert elapsed < 0.5

    run(main())


def test_store_rejects_appends_after_close(tmp_path):
    async def main():
        store = OffsetsStore(tmp_path)
        store.load()
        await store.commit("g", [(("t", 0), OffsetAndMetadata(1))])
        await store.close()
        fut = store.commit("g", [(("t", 0), OffsetAndMetadata(2))])
        try:
            await fut
        except Exception as exc:
            assert type(exc).__name__ == "StoreError"
        else:
            raise AssertionError("append after close succeeded")

    run(main())


assert FAST.commit_flush_window_ms == 0
