"""Group fsync for acks=all.

Producers that need durability call :meth:`Flusher.wait` after appending. The first waiter of a
round starts a short window (``log.flush.group.window.ms``); then one worker thread fsyncs
every dirty log's descriptors and all waiters of the round are released together. Waiters
that arrive during a round are served by the next one, which starts right away.

The test hook ``test.flush.journal`` appends ``topic<TAB>partition<TAB>flushed_end_offset`` per
log after each fsync, *before* any waiter is released.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from brokerd.storage.log import PartitionLog
from brokerd.storage.segment import Segment

log = logging.getLogger("brokerd.flush")


class Flusher:
    def __init__(self, window_ms: int, journal_path: str | None = None) -> None:
        self.window = window_ms / 1000.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._dirty: dict[PartitionLog, None] = {}
        self._waiters: list[asyncio.Future] = []
        self._scheduled = False
        self._running = False
        self._deferred_close: list[Segment] = []
        self._journal_fd = -1
        if journal_path:
            self._journal_fd = os.open(
                journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        self.rounds = 0
        # Admin issue: fds fsynced before the logs' in every round (the usage journal).
        self.pre_sync: list = []
        self._task: asyncio.Future | None = None

    def wait(self, logs: list[PartitionLog]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        for plog in logs:
            self._dirty[plog] = None
        self._waiters.append(fut)
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
        self._task = asyncio.ensure_future(self._round())

    async def _round(self) -> None:
        loop = asyncio.get_running_loop()
        waiters, self._waiters = self._waiters, []
        dirty, self._dirty = list(self._dirty), {}
        jobs: list[tuple[PartitionLog, int, list[int], list[Segment]]] = []
        for plog in dirty:
            rolled, plog.pending_fsync = plog.pending_fsync, []
            fds = []
            for seg in [*rolled, plog.active]:
                fds.extend(seg.fds())
            jobs.append((plog, plog.next_offset, fds, rolled))
            plog.dirty = False
        error: BaseException | None = None
        first = [fd for get_fds in self.pre_sync for fd in get_fds()]
        try:
            await loop.run_in_executor(self._pool, _fsync_all, first + [fd for job in jobs for fd in job[2]])
        except BaseException as exc:  # an fsync failure must never ack
            error = exc
            log.error("fsync failed: %s", exc)
        finally:
            self._running = False
            for seg in self._deferred_close:
                seg.close()
            self._deferred_close.clear()
        self.rounds += 1
        if error is None:
            lines = []
            for plog, end, _fds, _rolled in jobs:
                if end > plog.flushed_offset:
                    plog.flushed_offset = end
                lines.append(f"{plog.topic}\t{plog.partition}\t{end}\n")
            if self._journal_fd >= 0 and lines:
                os.write(self._journal_fd, "".join(lines).encode())
        for fut in waiters:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(OSError(f"fsync failed: {error}"))
        if self._waiters:
            self._start()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            import errno

            if exc.errno != errno.EBADF:
                raise
