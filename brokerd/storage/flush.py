"""Group fsync for acks=all.

Producers that need durability call :meth:`Flusher.wait` after appending; it returns a future
that resolves (to the value given, e.g. the encoded response) once an fsync covering the
append has completed. Rounds are a natural group commit:

- when no round is running, the first waiter starts one on the next turn of the event loop
  (after ``log.flush.group.window.ms``, if set), so every request parsed in the same turn joins
  it;
- a round snapshots every dirty log's end offset and descriptors, then fsyncs them in a worker
  thread (never on the event loop) — the usage journal first, then the logs — while the loop
  keeps appending;
- waiters that arrive while a round runs are served by the next round, which starts as soon as
  this one ends. One fsync thus covers every batch appended before it started, and under load
  a round covers whatever arrived during the previous fsync.

The test hook ``test.flush.journal`` appends ``topic<TAB>partition<TAB>flushed_end_offset`` per
log after each fsync, *before* any waiter is released.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from brokerd.storage.log import PartitionLog
from brokerd.storage.segment import Segment

log = logging.getLogger("brokerd.flush")


class Flusher:
    def __init__(self, window_ms: int, journal_path: str | None = None) -> None:
        self.window = window_ms / 1000.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._dirty: dict[PartitionLog, None] = {}
        self._waiters: list[tuple[asyncio.Future, Any]] = []
        self._scheduled = False
        self._running = False
        self._deferred_close: list[Segment] = []
        self._journal_fd = -1
        if journal_path:
            self._journal_fd = os.open(
                journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        self.rounds = 0
        # callables returning fds fsynced before the logs' in every round (the
        # usage journal, so that it is at least as durable as the records it counts).
        self.pre_sync: list[Callable[[], list[int]]] = []

    def wait(self, logs: list[PartitionLog], result: Any = None) -> asyncio.Future:
        """A future resolved with ``result`` once an fsync covering ``logs``' appends so far is done."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        dirty = self._dirty
        for plog in logs:
            dirty[plog] = None
        self._waiters.append((fut, result))
        if not self._scheduled and not self._running:
            self._scheduled = True
            if self.window > 0:
                loop.call_later(self.window, self._start)
            else:
                loop.call_soon(self._start)
        return fut

    def mark(self, plog: PartitionLog) -> None:
        """Note unflushed data without waiting (flushed by the next round, if any)."""
        self._dirty[plog] = None

    def close_later(self, segments: list[Segment]) -> None:
        if self._running:
            self._deferred_close.extend(segments)
        else:
            for seg in segments:
                seg.close()

    def _start(self) -> None:
        self._scheduled = False
        if self._running or not self._waiters:
            return
        self._running = True
        loop = asyncio.get_running_loop()
        waiters, self._waiters = self._waiters, []
        dirty, self._dirty = list(self._dirty), {}
        jobs: list[tuple[PartitionLog, int]] = []
        first = [fd for get_fds in self.pre_sync for fd in get_fds()]  # the usage journal
        fds: list[int] = []
        for plog in dirty:
            rolled, plog.pending_fsync = plog.pending_fsync, []
            for seg in rolled:  # sealed segments: data and indexes, once
                fds.extend(seg.fds())
            # The active segment: its data only. Its indexes are rebuilt by the recovery scan
            # after an unclean stop, and fsynced when it rolls or at a clean stop.
            fd = plog.segments[-1]._fd
            if fd >= 0:
                fds.append(fd)
            jobs.append((plog, plog.next_offset))
            plog.dirty = False
        try:
            done = loop.run_in_executor(self._pool, _fsync_all, first, fds)
        except RuntimeError as exc:  # the pool is shut down (stopping): never ack
            done = loop.create_future()
            done.set_exception(exc)
        done.add_done_callback(lambda f: self._finish(f, waiters, jobs))

    def _finish(self, done: asyncio.Future, waiters: list, jobs: list) -> None:
        self._running = False
        for seg in self._deferred_close:
            seg.close()
        self._deferred_close.clear()
        self.rounds += 1
        error = None if done.cancelled() else done.exception()
        if done.cancelled():
            error = OSError("fsync cancelled")
        if error is None:
            lines = []
            for plog, end in jobs:
                if end > plog.flushed_offset:
                    plog.flushed_offset = end
                lines.append(f"{plog.topic}\t{plog.partition}\t{end}\n")
            if self._journal_fd >= 0 and lines:
                os.write(self._journal_fd, "".join(lines).encode())
            for fut, result in waiters:
                if not fut.done():
                    fut.set_result(result)
        else:  # an fsync failure must never ack
            log.error("fsync failed: %s", error)
            for fut, _result in waiters:
                if not fut.done():
                    fut.set_exception(OSError(f"fsync failed: {error}"))
        if self._waiters and not self._scheduled:
            self._start()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1


def _fsync_all(first: list[int], fds: list[int]) -> None:
    """fsync ``first`` (the usage journal), then ``fds`` (the logs)."""
    for fd in first:
        os.fsync(fd)
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:  # a segment closed by retention meanwhile
                raise
