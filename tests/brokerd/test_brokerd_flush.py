"""The group fsync (brokerd/storage/flush.py), in process: fsync off the event loop, one round
covering every batch appended before it started, later waiters served by the next round."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from brokerd_wire import make_batch

from brokerd.records import validate_and_stamp
from brokerd.storage import flush
from brokerd.storage.flush import Flusher
from brokerd.storage.log import LogSettings, PartitionLog


def _append(plog: PartitionLog) -> int:
    data = bytearray(make_batch([(None, b"v")] * 3))
    batches, count = validate_and_stamp(data, plog.next_offset, 1 << 20)
    plog.append(data, batches, count)
    return plog.next_offset


def test_group_fsync_runs_off_the_loop_and_covers_what_came_before(tmp_path, monkeypatch) -> None:
    fsyncs: list[tuple[int, str]] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # a slow disk, observed
        fsyncs.append((fd, threading.current_thread().name))
        time.sleep(0.05)
        real_fsync(fd)

    monkeypatch.setattr(flush.os, "fsync", slow_fsync)
    journal = tmp_path / "flush.journal"
    usage_fd = os.open(tmp_path / "usage", os.O_WRONLY | os.O_CREAT, 0o644)
    plog = PartitionLog.open("t", 0, str(tmp_path / "t-0"), LogSettings(), clean=True)

    async def scenario() -> None:
        f = Flusher(0, str(journal))
        f.pre_sync.append(lambda: [usage_fd])
        # two producers in the same turn of the loop share one round
        end1 = _append(plog)
        a = f.wait([plog], "a")
        end2 = _append(plog)
        b = f.wait([plog], "b")
        ticks = 0
        while not a.done():  # the loop keeps running while the fsync thread sleeps
            ticks += 1
            await asyncio.sleep(0.005)
            if ticks == 2:  # appended while round 1 runs: served by round 2
                end3 = _append(plog)
                c = f.wait([plog], "c")
        assert ticks >= 5
        assert (await a, await b) == ("a", "b")
        assert plog.flushed_offset == end2 > end1 and f.rounds == 1 and not c.done()
        assert await c == "c"
        assert plog.flushed_offset == end3 and f.rounds == 2
        f.close()

    asyncio.run(scenario())
    os.close(usage_fd)
    loop_thread = threading.main_thread().name
    assert fsyncs and all(name != loop_thread for _fd, name in fsyncs)
    # each round: the usage journal first, then the active segment's data (not its indexes)
    assert [fd for fd, _ in fsyncs] == [usage_fd, plog.active._fd] * 2
    lines = journal.read_text().splitlines()
    assert lines == ["t\t0\t6", "t\t0\t9"]
    plog.close()
