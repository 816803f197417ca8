"""The log cleaner: background compaction of ``cleanup.policy=compact`` partitions, as Kafka's.

Each pass, on a cleaner thread (never the event loop):

1. **Pick the dirtiest log.** For every compacted partition the cleanable range runs from its
   first dirty offset (the end of the previous pass, kept in ``cleaner-checkpoint.json``) to
   the first uncleanable offset: the active segment's base, or the first segment holding a
   record younger than ``min.compaction.lag.ms``. The dirty ratio is dirty bytes / (clean +
   dirty bytes). A log is cleaned when its ratio exceeds ``min.cleanable.dirty.ratio``, or
   when a dirty record is older than ``max.compaction.lag.ms``; the highest ratio goes first.
   A log whose oldest retained tombstone's delete horizon has passed is cleaned when nothing
   else is due.
2. **Map keys.** The dirty range's records are read (decoded: keys are needed) into a map of
   key -> latest offset, bounded by ``log.cleaner.dedupe.buffer.size`` (24 bytes per entry at
   a load factor of 0.9, Kafka's accounting). A full map ends the pass's range early.
3. **Rewrite.** Every segment below the mapped range's end, grouped up to ``segment.bytes``, is
   copied into a new segment keeping, for each key, only the record at its latest offset;
   offsets never change (gaps are normal). Tombstones (null values) are kept until
   ``delete.retention.ms`` after the pass that first reached them (Kafka's delete horizon,
   stored in the batch). The last batch of each active idempotent producer stays, empty if
   every record in it went, so that its sequence survives a restart.
   Transactions, as Kafka's cleaner treats them: nothing at or past the last stable offset is
   cleaned (an open transaction's outcome is unknown). Records of aborted transactions (the
   aborted-transaction index) are removed and never enter the key map; committed ones are
   compacted as any record. A commit or abort marker stays while any batch of its transaction
   remains before it; once a pass finds none, the marker gets a delete horizon
   (``delete.retention.ms``, as a tombstone) and a pass after the horizon removes it, so a
   consumer that read the transaction's data also sees its marker.
4. **Swap.** See ``brokerd/storage/swap.py``: the new segment is durable before a manifest
   commits the swap; renaming it into place and splicing the segment list run on the event
   loop in one step, so produce and fetch wait at most that long.

Reads and writes are throttled to ``log.cleaner.io.max.bytes.per.second``. The active segment
is never touched (small test segments come from ``segment.ms``). Retention and DeleteRecords
skip a partition while a pass runs on it (``PartitionLog.cleaning``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from brokerd.durable import atomic_write_json, fsync_dir
from brokerd.records import (
    CONTROL_ABORT,
    HEADER_SIZE,
    MIN_BATCH_LENGTH,
    BatchHeader,
    InvalidBatch,
    control_type,
    read_header,
)
from brokerd.storage import swap
from brokerd.storage.compaction import decode, empty_batch, rebuild_batch
from brokerd.storage.log import PartitionLog
from brokerd.storage.segment import Segment

log = logging.getLogger("brokerd.cleaner")

CHECKPOINT = "cleaner-checkpoint.json"
MAP_ENTRY_BYTES = 24  # Kafka's SkimpyOffsetMap: a 16-byte key hash and an 8-byte offset
READ_CHUNK = 1 << 20
WRITE_CHUNK = 1 << 20
INT32_MAX = 2**31 - 1


@dataclass(slots=True)
class CleanerConfig:
    """The broker's ``log.cleaner.*`` settings, read again before every pass."""

    enable: bool = True
    threads: int = 1
    io_max_bytes_per_second: float = math.inf
    dedupe_buffer_size: int = 128 * 1024 * 1024
    io_buffer_load_factor: float = 0.9
    backoff_ms: int = 15000
    # TEST ONLY: SIGKILL this process at one point of every swap: "staged" (new segment durable),
    # "committed" (manifest written) or "installed" (in place, old segments not yet deleted).
    kill_at: str = ""

    def map_capacity(self) -> int:
        per_thread = self.dedupe_buffer_size / max(self.threads, 1)
        return max(1, int(per_thread * self.io_buffer_load_factor / MAP_ENTRY_BYTES))


@dataclass(slots=True)
class PartitionState:
    """What the cleaner knows of one partition (checkpoint and metrics)."""

    first_dirty: int = 0
    horizon: int = -1  # the earliest delete horizon of a retained tombstone batch (-1: none)
    loaded: bool = False
    dirty_ratio: float = 0.0
    max_delay_ms: int = 0
    bytes_cleaned: int = 0
    passes: int = 0
    last_pass_seconds: float = 0.0
    in_progress: bool = False
    unfinished: tuple[int, list[int]] | None = None  # a swap whose file deletions failed


@dataclass(slots=True)
class LogToClean:
    plog: PartitionLog
    segments: tuple[Segment, ...]
    first_dirty: int
    first_uncleanable: int
    clean_bytes: int
    dirty_bytes: int
    max_delay_ms: int
    horizon_due: bool

    @property
    def ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


@dataclass(slots=True)
class PassResult:
    topic: str
    partition: int
    first_dirty: int
    end: int
    bytes_read: int = 0
    bytes_written: int = 0
    segments_swapped: int = 0
    records_removed: int = 0
    seconds: float = 0.0
    groups: list[tuple[int, list[int]]] = field(default_factory=list)


class PassAborted(Exception):
    pass


class SwapLeftToRecovery(PassAborted):
    """A committed swap could not be installed (the broker is stopping): the next start does it."""


class Throttler:
    """Kafka's Throttler: sleep whenever the observed rate over a short period exceeds the limit."""

    CHECK_INTERVAL = 0.05

    def __init__(self, rate: Callable[[], float], stop: threading.Event) -> None:
        self.rate = rate
        self.stop = stop
        self.period_start = time.monotonic()
        self.observed = 0.0

    def __call__(self, nbytes: int) -> None:
        rate = self.rate()
        if not rate or math.isinf(rate) or rate <= 0:
            return
        self.observed += nbytes
        now = time.monotonic()
        elapsed = now - self.period_start
        if elapsed >= self.CHECK_INTERVAL:
            needed = self.observed / rate
            if needed > elapsed:
                self.stop.wait(needed - elapsed)
            self.period_start = time.monotonic()
            self.observed = 0.0


class _Owner:
    """Runs a function on the thread that owns the partition logs (the event loop), and waits."""

    def __init__(self, loop, stop: threading.Event) -> None:
        self.loop = loop
        self.stop = stop

    def call(self, fn: Callable[[], object]) -> object:
        if self.loop is None:
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # handed back to the cleaner thread
                    fut.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed: the broker is stopping
            raise PassAborted("the event loop is closed") from None
        while True:
            try:
                return fut.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                # Give up only if the function never started: one that runs is waited for.
                stopped = self.loop.is_closed() or (self.stop.is_set() and not self.loop.is_running())
                if stopped and fut.cancel():
                    raise PassAborted("the event loop stopped") from None


def _iter_batches(fd: int, start: int, end: int) -> Iterator[tuple[int, BatchHeader, bytes]]:
    """Whole batches of a segment file between two positions."""
    pos = start
    while end - pos >= HEADER_SIZE:
        chunk = os.pread(fd, min(READ_CHUNK, end - pos), pos)
        off = 0
        while len(chunk) - off >= HEADER_SIZE:
            h = read_header(chunk, off)
            if h.magic != 2 or h.batch_length < MIN_BATCH_LENGTH or pos + off + h.size > end:
                return
            if off + h.size > len(chunk):
                if off == 0:  # one batch larger than a chunk
                    yield pos, h, os.pread(fd, h.size, pos)
                    off = h.size
                break
            yield pos + off, h, chunk[off : off + h.size]
            off += h.size
        if off == 0:
            return
        pos += off


class LogCleaner:
    """Background cleaner threads for the compacted partitions of one broker.

    ``logs()`` lists the partition logs; ``config()`` gives the current :class:`CleanerConfig`.
    Optional hooks: ``producer_last_offsets(topic, partition)`` (pid -> offset of the last
    batch of each active idempotent producer; without it every producer's last batch in the
    log is kept), ``uncleanable_bound(plog)`` (an offset cleaning must stay below, e.g. a
    high watermark or a first unstable offset), ``aborted_transactions(plog, start, end)``
    ((producer id, first offset, marker offset) of the aborted transactions with records in
    the range; without it transactional batches and markers are kept as they are),
    ``forget_aborted(plog, {(producer id, marker offset)})`` (drop aborted transactions no
    record is left of from the aborted-transaction index, durably),
    ``close_segments(segments)`` (close replaced
    segments once in-flight fsyncs are done) and ``alive(plog)`` (False once its topic went).
    Hooks run on the owner thread (the event loop) when ``loop`` is given.
    """

    def __init__(
        self,
        logs: Callable[[], Iterable[PartitionLog]],
        config: Callable[[], CleanerConfig],
        *,
        loop=None,
        producer_last_offsets: Callable[[str, int], dict[int, int]] | None = None,
        uncleanable_bound: Callable[[PartitionLog], int | None] | None = None,
        aborted_transactions: Callable[[PartitionLog, int, int], list[tuple[int, int, int]]] | None = None,
        forget_aborted: Callable[[PartitionLog, set[tuple[int, int]]], None] | None = None,
        close_segments: Callable[[list[Segment]], None] | None = None,
        alive: Callable[[PartitionLog], bool] | None = None,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.logs = logs
        self.config = config
        self.producer_last_offsets = producer_last_offsets
        self.uncleanable_bound = uncleanable_bound
        self.aborted_transactions = aborted_transactions
        self.forget_aborted = forget_aborted
        self.close_segments = close_segments
        self.alive = alive
        self.clock = clock
        self.states: dict[PartitionLog, PartitionState] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._owner = _Owner(loop, self._stop)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy_dirs: set[str] = set()
        self._ts_cache: dict[tuple[str, int, int], tuple[int, int]] = {}
        self.throttle = Throttler(lambda: self.config().io_max_bytes_per_second, self._stop)
        self.passes = 0

    # --- threads ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the cleaner threads (``log.cleaner.threads`` of them; more start when raised)."""
        self._ensure_threads()

    def _ensure_threads(self) -> None:
        want = max(1, self.config().threads)  # thread 0 idles at 0 threads, watching for a raise
        while len(self._threads) < want:
            t = threading.Thread(target=self._run, args=(len(self._threads),),
                                 name=f"log-cleaner-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def wake(self) -> None:
        """Look for work now (a config change, a new compacted topic)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the threads: a pass in progress is abandoned before its commit point."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            cfg = self.config()
            result = None
            if cfg.enable and index < cfg.threads:
                try:
                    result = self.run_pass()
                except PassAborted as exc:
                    log.info("cleaner pass abandoned: %s", exc)
                except Exception:
                    log.exception("log cleaner pass failed")
            if result is None:
                self._wake.wait(cfg.backoff_ms / 1000)
                self._wake.clear()
                if index == 0:
                    self._ensure_threads()

    # --- state --------------------------------------------------------------------------
    def state(self, plog: PartitionLog) -> PartitionState:
        st = self.states.get(plog)
        if st is None:
            st = self.states[plog] = PartitionState()
        if not st.loaded:
            st.loaded = True
            try:
                with open(os.path.join(plog.dir, CHECKPOINT)) as fh:
                    doc = json.load(fh)
                st.first_dirty = int(doc.get("first_dirty", 0))
                st.horizon = int(doc.get("horizon", -1))
            except (OSError, ValueError):
                pass
        return st

    @staticmethod
    def _save_checkpoint(dir_fd: int, st: PartitionState) -> None:
        doc = {"first_dirty": st.first_dirty, "horizon": st.horizon}
        atomic_write_json(swap.in_dir(dir_fd, CHECKPOINT), doc)

    def rows(self) -> list[tuple[str, int, PartitionState]]:
        """(topic, partition, state) of every compacted partition, for /metrics."""
        return [(p.topic, p.partition, st) for p, st in list(self.states.items())]

    # --- choosing a log -------------------------------------------------------------------
    def _snapshot(self) -> list[tuple[PartitionLog, tuple[Segment, ...], int | None]]:
        def take():
            out = []
            present = set()
            for plog in self.logs():
                if not plog.settings.compact:
                    continue
                present.add(plog)
                self.state(plog)
                if plog.cleaning or len(plog.segments) < 2:
                    continue
                bound = self.uncleanable_bound(plog) if self.uncleanable_bound else None
                out.append((plog, tuple(plog.segments), bound))
            for gone in [p for p in self.states if p not in present]:
                del self.states[gone]
            return out

        return self._owner.call(take)  # type: ignore[return-value]

    def _segment_times(self, seg: Segment) -> tuple[int, int]:
        """(first batch's max timestamp, segment max timestamp) of a sealed segment."""
        key = (seg.dir, seg.base, seg.size)
        cached = self._ts_cache.get(key)
        if cached is not None:
            return cached
        first = largest = -1
        fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for _pos, h, _raw in _iter_batches(fd, 0, seg.size):
                if first < 0:
                    first = h.max_timestamp
                largest = max(largest, h.max_timestamp)
        finally:
            os.close(fd)
        if len(self._ts_cache) > 100_000:
            self._ts_cache.clear()
        self._ts_cache[key] = (first, largest)
        return first, largest

    def _to_clean(self, plog: PartitionLog, segments: tuple[Segment, ...], bound: int | None,
                  now: int) -> LogToClean:
        s = plog.settings
        st = self.state(plog)
        active = segments[-1]
        start = segments[0].base
        first_dirty = st.first_dirty
        if first_dirty < start or first_dirty > active.base:
            first_dirty = start
        limit = active.base if bound is None else min(active.base, bound)
        nexts = [seg.base for seg in segments[1:]]
        sealed = list(zip(segments[:-1], nexts, strict=True))
        if s.min_compaction_lag_ms > 0:
            for seg, nxt in sealed:
                if nxt <= first_dirty or seg.base >= limit:
                    continue
                if self._segment_times(seg)[1] > now - s.min_compaction_lag_ms:
                    limit = min(limit, max(seg.base, first_dirty))
                    break
        first_uncleanable = max(limit, first_dirty)
        clean = sum(seg.size for seg, nxt in sealed if nxt <= first_dirty)
        dirty = sum(seg.size for seg, nxt in sealed if nxt > first_dirty and seg.base < first_uncleanable)
        delay = 0
        if s.max_compaction_lag_ms < 2**62:
            firsts = [self._segment_times(seg)[0] for seg, nxt in sealed if nxt > first_dirty]
            firsts = [t for t in firsts if t > 0]
            if firsts:
                delay = max(0, (now - s.max_compaction_lag_ms) - min(firsts))
        horizon_due = 0 <= st.horizon <= now
        return LogToClean(plog, segments, first_dirty, first_uncleanable, clean, dirty, delay, horizon_due)

    def grab(self, now: int | None = None) -> LogToClean | None:
        """Choose the next log to clean and mark it in progress (or None)."""
        now = self.clock() if now is None else now
        candidates = []
        for plog, segments, bound in self._snapshot():
            if plog.dir in self._busy_dirs:
                continue
            try:
                ltc = self._to_clean(plog, segments, bound, now)
            except OSError as exc:  # a segment went meanwhile (topic deleted): next round
                log.debug("cannot measure %s-%d: %s", plog.topic, plog.partition, exc)
                continue
            st = self.state(plog)
            st.dirty_ratio = ltc.ratio
            st.max_delay_ms = ltc.max_delay_ms
            candidates.append(ltc)
        due = [c for c in candidates if c.dirty_bytes > 0 and
               (c.max_delay_ms > 0 or c.ratio > c.plog.settings.min_cleanable_ratio)]
        if not due:
            due = [c for c in candidates if c.horizon_due]
        due.sort(key=lambda c: (c.max_delay_ms > 0, c.ratio), reverse=True)
        for chosen in due:
            with self._lock:
                if chosen.plog.dir in self._busy_dirs:
                    continue
                self._busy_dirs.add(chosen.plog.dir)

            def mark(plog=chosen.plog):
                if plog.cleaning or (self.alive is not None and not self.alive(plog)):
                    return None
                plog.cleaning = True
                return tuple(plog.segments)

            segments = self._owner.call(mark)
            if segments is None or segments[: len(chosen.segments) - 1] != chosen.segments[:-1]:
                if segments is not None:
                    self._owner.call(lambda plog=chosen.plog: setattr(plog, "cleaning", False))
                with self._lock:
                    self._busy_dirs.discard(chosen.plog.dir)
                continue
            return chosen
        return None

    def _release(self, ltc: LogToClean) -> None:
        with contextlib.suppress(PassAborted):
            self._owner.call(lambda: setattr(ltc.plog, "cleaning", False))
        with self._lock:
            self._busy_dirs.discard(ltc.plog.dir)

    # --- a pass ---------------------------------------------------------------------------
    def run_pass(self, now: int | None = None) -> PassResult | None:
        """Clean the dirtiest log once (synchronously). None if nothing was due."""
        ltc = self.grab(now)
        if ltc is None:
            return None
        st = self.state(ltc.plog)
        st.in_progress = True
        t0 = time.monotonic()
        try:
            return self._clean(ltc, st, self.clock() if now is None else now)
        finally:
            st.in_progress = False
            st.last_pass_seconds = time.monotonic() - t0
            self._release(ltc)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise PassAborted("the cleaner is stopping")

    def _clean(self, ltc: LogToClean, st: PartitionState, now: int) -> PassResult:
        plog = ltc.plog
        t0 = time.monotonic()
        dir_fd = os.open(plog.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if st.unfinished is not None:
                swap.finish(dir_fd, *st.unfinished)
                st.unfinished = None
            swap.discard(dir_fd)
            with contextlib.suppress(FileExistsError):
                os.mkdir(swap.STAGING_DIR, 0o755, dir_fd=dir_fd)
            cfg = self.config()
            txns = self._transactions(ltc)
            offsets, end = self._build_map(dir_fd, ltc, cfg.map_capacity(), txns)
            keep_last = self._producer_batches(dir_fd, ltc, end)
            result = PassResult(plog.topic, plog.partition, ltc.first_dirty, end)
            horizon = -1
            for group in self._groups(ltc, end):
                h = self._clean_group(dir_fd, plog, group, offsets, end, keep_last, now, result, txns)
                if h >= 0:
                    horizon = h if horizon < 0 else min(horizon, h)
            if txns is not None and txns.spent and self.forget_aborted is not None:
                spent = set(txns.spent)
                self._owner.call(lambda: self.forget_aborted(plog, spent))
            st.first_dirty = end
            st.horizon = horizon
            self._save_checkpoint(dir_fd, st)
            swap.clear_staging(dir_fd)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(swap.STAGING_DIR, dir_fd=dir_fd)
        except SwapLeftToRecovery:
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                swap.discard(dir_fd)
            raise
        finally:
            os.close(dir_fd)
        result.seconds = time.monotonic() - t0
        st.passes += 1
        st.bytes_cleaned += result.bytes_read
        self.passes += 1
        log.info(
            "cleaned %s-%d up to offset %d: %d bytes read, %d written, %d record(s) removed, "
            "%d segment(s) swapped in %.3f s",
            plog.topic, plog.partition, end, result.bytes_read, result.bytes_written,
            result.records_removed, result.segments_swapped, result.seconds,
        )
        return result

    def _transactions(self, ltc: LogToClean) -> TxnPass | None:
        """The aborted transactions of the cleanable range, or None without the hook."""
        if self.aborted_transactions is None:
            return None
        plog, start, end = ltc.plog, ltc.segments[0].base, ltc.first_uncleanable
        rows = self._owner.call(lambda: list(self.aborted_transactions(plog, start, end)))
        txns = TxnPass()
        for pid, first, last in rows:  # type: ignore[union-attr]
            txns.aborted.setdefault(pid, []).append((first, last))
        return txns

    def _build_map(
        self, dir_fd: int, ltc: LogToClean, capacity: int, txns: TxnPass | None = None
    ) -> tuple[dict[bytes, int], int]:
        """key -> latest offset over [first dirty, end); returns the map and ``end``."""
        offsets: dict[bytes, int] = {}
        end = ltc.first_dirty
        segs = ltc.segments
        for i, seg in enumerate(segs[:-1]):
            nxt = segs[i + 1].base
            if nxt <= ltc.first_dirty or seg.base >= ltc.first_uncleanable:
                continue
            fd = os.open(swap.segment_file(seg.base, ".log"), os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                for _pos, h, raw in _iter_batches(fd, 0, seg.size):
                    self.throttle(len(raw))
                    if h.last_offset < ltc.first_dirty:
                        continue
                    if h.base_offset >= ltc.first_uncleanable:
                        break
                    undecided = h.is_transactional and txns is None
                    aborted = h.is_transactional and txns is not None and txns.is_aborted(h)
                    if h.is_control or undecided or aborted or not h.records_count:
                        end = h.last_offset + 1
                        continue
                    if offsets and len(offsets) + h.records_count > capacity:
                        log.info("offset map full (%d keys) at offset %d of %s-%d", len(offsets),
                                 h.base_offset, ltc.plog.topic, ltc.plog.partition)
                        return offsets, max(end, ltc.first_dirty)
                    try:
                        records = decode(raw)[2]
                    except InvalidBatch as exc:  # kept as it is by the rewrite too
                        log.warning("%s-%d: batch at offset %d left uncleaned: %s", ltc.plog.topic,
                                    ltc.plog.partition, h.base_offset, exc)
                        records = []
                    for r in records:
                        if r.key is not None:
                            offsets[r.key] = r.offset
                    end = h.last_offset + 1
            finally:
                os.close(fd)
            self._check_stop()
            end = min(nxt, ltc.first_uncleanable)
        return offsets, max(end, ltc.first_dirty)

    def _producer_batches(self, dir_fd: int, ltc: LogToClean, end: int) -> dict[int, int]:
        """pid -> last offset of the batch that must stay for each idempotent producer."""
        plog = ltc.plog
        if self.producer_last_offsets is not None:
            return self._owner.call(  # type: ignore[return-value]
                lambda: dict(self.producer_last_offsets(plog.topic, plog.partition)))
        last: dict[int, int] = {}
        for seg in ltc.segments:
            size = seg.size  # the active segment grows meanwhile: its batches so far suffice
            fd = os.open(swap.segment_file(seg.base, ".log"), os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                for _pos, h, _raw in _iter_batches(fd, 0, size):
                    if h.producer_id >= 0:
                        last[h.producer_id] = h.last_offset
            finally:
                os.close(fd)
        return last

    @staticmethod
    def _groups(ltc: LogToClean, end: int) -> list[list[Segment]]:
        """Runs of sealed segments below ``end``, each to become one segment of <= segment.bytes."""
        segs = ltc.segments
        limit = ltc.plog.settings.segment_bytes
        groups: list[list[Segment]] = []
        current: list[Segment] = []
        size = 0
        for i, seg in enumerate(segs[:-1]):
            if seg.base >= end:
                break
            nxt = segs[i + 1].base
            if current and (size + seg.size > limit or nxt - current[0].base > INT32_MAX):
                groups.append(current)
                current, size = [], 0
            current.append(seg)
            size += seg.size
        if current:
            groups.append(current)
        return groups

    def _clean_group(self, dir_fd: int, plog: PartitionLog, group: list[Segment], offsets: dict[bytes, int],
                     end: int, keep_last: dict[int, int], now: int, result: PassResult,
                     txns: TxnPass | None = None) -> int:
        """Rewrite one group; swap it in if anything changed. Returns its earliest delete horizon."""
        s = plog.settings
        base = group[0].base
        swap.clear_staging(dir_fd)
        staging = swap.in_dir(dir_fd, swap.STAGING_DIR)
        new = Segment.create(staging, base)
        changed = False
        horizon = -1
        buf = bytearray()
        metas: list[tuple[int, int, int]] = []
        written = 0
        try:
            for seg in group:
                fd = os.open(swap.segment_file(seg.base, ".log"), os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    for _pos, h, raw in _iter_batches(fd, 0, seg.size):
                        self.throttle(len(raw))
                        result.bytes_read += len(raw)
                        out, removed, h_horizon = self._filter(h, raw, offsets, end, keep_last, now,
                                                               s.delete_retention_ms, txns)
                        result.records_removed += removed
                        if out is not raw:
                            changed = True
                        if h_horizon >= 0:
                            horizon = h_horizon if horizon < 0 else min(horizon, h_horizon)
                        if out is None:
                            continue
                        oh = read_header(out)
                        metas.append((oh.base_offset, len(out), oh.max_timestamp))
                        buf += out
                        if len(buf) >= WRITE_CHUNK:
                            new.append_batches(buf, metas, s.index_interval_bytes)
                            self.throttle(len(buf))
                            written += len(buf)
                            buf, metas = bytearray(), []
                finally:
                    os.close(fd)
                self._check_stop()
            if not changed:  # nothing to remove: no swap
                new.close()
                swap.clear_staging(dir_fd)
                return horizon
            if buf:
                new.append_batches(buf, metas, s.index_interval_bytes)
                self.throttle(len(buf))
                written += len(buf)
            new.seal()
            for fd in new.fds():
                os.fsync(fd)
            fsync_dir(swap.STAGING_DIR, dir_fd=dir_fd)
            self._check_stop()
            self._test_kill("staged")
            old = [seg.base for seg in group]
            swap.write_manifest(dir_fd, base, old)  # committed: recovery finishes it from here on
            self._test_kill("committed")
        except BaseException:
            new.close()
            raise
        try:
            installed = self._owner.call(lambda: self._install(dir_fd, plog, group, new))
        except PassAborted as exc:
            new.close()
            raise SwapLeftToRecovery(str(exc)) from None
        if not installed:
            new.close()
            swap.discard(dir_fd)
            raise PassAborted(f"{plog.topic}-{plog.partition} changed during the pass")
        self._test_kill("installed")
        try:
            swap.finish(dir_fd, base, old)
        except OSError as exc:
            self.state(plog).unfinished = (base, old)
            log.error("cleaner: cannot delete replaced segments of %s-%d: %s",
                      plog.topic, plog.partition, exc)
        result.segments_swapped += len(group)
        result.bytes_written += written
        result.groups.append((base, old))
        return horizon

    def _test_kill(self, point: str) -> None:
        if self.config().kill_at == point:
            log.warning("TEST FAULT: killing the broker at the cleaner's %r point", point)
            os.kill(os.getpid(), signal.SIGKILL)

    def _install(self, dir_fd: int, plog: PartitionLog, group: list[Segment], new: Segment) -> bool:
        """On the event loop: move the new files into place and splice the segment list."""
        if self.alive is not None and not self.alive(plog):
            return False
        segs = plog.segments
        i = next((j for j, seg in enumerate(segs) if seg is group[0]), -1)
        if i < 0 or len(segs) < i + len(group) + 1 or any(a is not b for a, b in
                                                          zip(segs[i : i + len(group)], group, strict=True)):
            return False
        swap.move_into_place(dir_fd, new.base)
        new.dir = plog.dir
        new.last_modified = max(seg.last_modified for seg in group)
        segs[i : i + len(group)] = [new]
        if plog.pending_fsync:
            plog.pending_fsync[:] = [seg for seg in plog.pending_fsync if all(seg is not g for g in group)]
        plog.reset_read_hint()
        if self.close_segments is not None:
            self.close_segments(group)
        else:
            for seg in group:
                seg.close()
        return True

    @staticmethod
    def _filter(
        h: BatchHeader, raw: bytes, offsets: dict[bytes, int], end: int, keep_last: dict[int, int], now: int,
        delete_retention_ms: int, txns: TxnPass | None = None,
    ) -> tuple[bytes | None, int, int]:
        """(the batch to write or None, records removed, delete horizon of what is kept or -1)."""
        if h.base_offset >= end or ((h.is_control or h.is_transactional) and txns is None):
            return raw, 0, -1 if h.delete_horizon is None else h.delete_horizon
        if txns is not None and h.is_control:
            return LogCleaner._filter_marker(h, raw, keep_last, now, delete_retention_ms, txns)
        if txns is not None and h.is_transactional:
            if txns.is_aborted(h):
                txns.open.setdefault(h.producer_id, False)
                if keep_last.get(h.producer_id) == h.last_offset:
                    return (raw if not h.records_count else empty_batch(h)), h.records_count, -1
                return None, h.records_count, -1
            out, removed, horizon = LogCleaner._filter_records(
                h, raw, offsets, end, keep_last, now, delete_retention_ms
            )
            kept = out is not None and read_header(out).records_count > 0
            txns.open[h.producer_id] = txns.open.get(h.producer_id, False) or kept
            return out, removed, horizon
        return LogCleaner._filter_records(h, raw, offsets, end, keep_last, now, delete_retention_ms)

    @staticmethod
    def _filter_records(
        h: BatchHeader, raw: bytes, offsets: dict[bytes, int], end: int, keep_last: dict[int, int], now: int,
        delete_retention_ms: int,
    ) -> tuple[bytes | None, int, int]:
        """A data batch below the cleaned range's end: each key's latest record, tombstones until
        their delete horizon."""
        own_horizon = h.delete_horizon
        if not h.records_count:  # an empty batch kept earlier for its producer
            return (raw if keep_last.get(h.producer_id) == h.last_offset else None), 0, -1
        try:
            _h, data, records = decode(raw)
        except InvalidBatch:  # undecodable (or too large once decompressed): left as it is
            return raw, 0, -1
        kept = []
        tombstones = False
        for r in records:
            if r.offset < end:
                if r.key is None or offsets.get(r.key, -1) > r.offset:
                    continue
                if not r.has_value and own_horizon is not None and now >= own_horizon:
                    continue
            kept.append(r)
            if not r.has_value:
                tombstones = True
        removed = len(records) - len(kept)
        new_horizon = now + delete_retention_ms if tombstones and own_horizon is None else None
        horizon = -1
        if tombstones:
            horizon = own_horizon if own_horizon is not None else new_horizon  # type: ignore[assignment]
        if not removed and new_horizon is None:
            return raw, 0, horizon
        if kept:
            return rebuild_batch(h, data, kept, delete_horizon=new_horizon), removed, horizon
        if h.producer_id >= 0 and keep_last.get(h.producer_id) == h.last_offset:
            return empty_batch(h), removed, -1
        return None, removed, -1

    @staticmethod
    def _filter_marker(
        h: BatchHeader, raw: bytes, keep_last: dict[int, int], now: int, delete_retention_ms: int,
        txns: TxnPass,
    ) -> tuple[bytes | None, int, int]:
        """A commit or abort marker: kept while a batch of its transaction remains before it;
        otherwise given a delete horizon, and removed by a pass after it (Kafka's two passes)."""
        if txns.open.pop(h.producer_id, False):
            return raw, 0, -1
        own_horizon = h.delete_horizon
        # An abort marker goes only once its transaction left the aborted-transaction index
        # (at the end of the pass that found it spent): a read_committed consumer told of the
        # abort skips the producer's records until it meets that marker.
        indexed = False
        if control_type(raw) == CONTROL_ABORT:
            txns.spent.add((h.producer_id, h.base_offset))
            indexed = any(last == h.base_offset for _f, last in txns.aborted.get(h.producer_id, ()))
        if own_horizon is not None:
            if now < own_horizon or indexed or keep_last.get(h.producer_id) == h.last_offset:
                return raw, 0, own_horizon
            return None, h.records_count, -1
        try:
            _h, data, records = decode(raw)
        except InvalidBatch:
            return raw, 0, -1
        if not records:
            return raw, 0, -1
        horizon = now + delete_retention_ms
        return rebuild_batch(h, data, records, delete_horizon=horizon), 0, horizon


@dataclass(slots=True)
class TxnPass:
    """What one pass knows of transactions: the aborted ones of its range (producer id ->
    (first offset, marker offset)), and whether each producer's transaction being read still
    has a batch in the cleaned log (until its marker)."""

    aborted: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    open: dict[int, bool] = field(default_factory=dict)
    #: (producer id, marker offset) of aborted transactions with no record left
    spent: set[tuple[int, int]] = field(default_factory=set)

    def is_aborted(self, h: BatchHeader) -> bool:
        return any(first <= h.base_offset <= last for first, last in self.aborted.get(h.producer_id, ()))
