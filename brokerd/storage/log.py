"""A partition log: an ordered list of segments with one active segment at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from brokerd.records import HEADER, HEADER_SIZE, BatchHeader, iter_headers, record_timestamps
from brokerd.storage import swap
from brokerd.storage.retention import expired_segments, segments_below
from brokerd.storage.segment import Segment

_BASE_LEN = struct.Struct(">qi")
ZERO_COPY_MIN_BYTES = 32 * 1024
_LAST_DELTA = struct.Struct(">i")
_I32 = _LAST_DELTA

logger = logging.getLogger("brokerd.storage")


@dataclass(slots=True)
class LogSettings:
    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    timestamp_type: str = "CreateTime"
    retention_ms: int = 604800000
    retention_bytes: int = -1
    # cleanup.policy and the cleaner's per-topic settings (brokerd/storage/cleaner.py)
    compact: bool = False
    delete: bool = True
    min_cleanable_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = 2**63 - 1
    delete_retention_ms: int = 86400000
    # broker-side schema validation (brokerd/schemas.py): produce checks records' schema ids
    key_schema_validation: bool = False
    value_schema_validation: bool = False
    key_subject_strategy: str = "io.confluent.kafka.serializers.subject.TopicNameStrategy"
    value_subject_strategy: str = "io.confluent.kafka.serializers.subject.TopicNameStrategy"


class OffsetOutOfRange(Exception):
    pass


class PartitionLog:
    """Appends whole, already-validated batches; reads whole batches by offset."""

    __slots__ = (
        "_on_append",
        "_pos_hint",
        "cleaning",
        "dir",
        "dirty",
        "flushed_offset",
        "next_offset",
        "partition",
        "pending_fsync",
        "segments",
        "settings",
        "start_offset",
        "topic",
        "waiters",
    )

    def __init__(self, topic: str, partition: int, directory: str, settings: LogSettings) -> None:
        self.topic = topic
        self.partition = partition
        self.dir = directory
        self.settings = settings
        self.segments: list[Segment] = []
        self.next_offset = 0
        self.start_offset = 0
        self.flushed_offset = 0
        self.dirty = False
        self.pending_fsync: list[Segment] = []  # rolled segments not yet fsynced
        self.waiters: list = []  # futures woken on append (fetch long-poll)
        self._pos_hint: tuple[int, int, int] = (-1, -1, -1)  # (offset, segment base, position)
        self._on_append: Callable[[PartitionLog], None] | None = None
        self.cleaning = False  # a cleaner pass owns the sealed segments: retention waits

    # --- lifecycle ----------------------------------------------------------------------
    @classmethod
    def open(
        cls, topic: str, partition: int, directory: str, settings: LogSettings, *, clean: bool
    ) -> PartitionLog:
        plog = cls(topic, partition, directory, settings)
        os.makedirs(directory, exist_ok=True)
        recovered = swap.recover(directory)  # a cleaner swap a crash interrupted
        if recovered:
            logger.info("%s-%d: %s", topic, partition, recovered)
        bases: dict[int, int] = {}
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if name.endswith(".log") and name[:-4].isdigit():
                    bases[int(name[:-4])] = entry.stat().st_size
                elif name.endswith((".tmp", ".deleted")):
                    os.unlink(entry.path)
        if not bases:
            plog.segments.append(Segment.create(directory, 0))
        else:
            ordered = sorted(bases)
            plog.segments = [Segment(directory, b, bases[b]) for b in ordered]
            active = plog.segments[-1]
            if clean:
                end = active.last_batch_end_offset()
            else:
                end = active.rebuild_from_scan(settings.index_interval_bytes, verify_crc=True)
            if end is None:
                end = active.base
            plog.next_offset = end
            plog.start_offset = plog.segments[0].base
        plog.flushed_offset = plog.next_offset
        return plog

    def close(self) -> None:
        for seg in self.segments:
            seg.close()

    # --- writing ------------------------------------------------------------------------
    @property
    def active(self) -> Segment:
        return self.segments[-1]

    def append(self, data: bytes | bytearray, batches: list[tuple[int, int, int]], count: int) -> int:
        """Append whole batches already stamped with offsets from ``next_offset``.

        ``batches``: (base offset, size, max timestamp). Returns the base offset.
        """
        base = self.next_offset
        active = self.segments[-1]
        if active.size and (
            active.size + len(data) > self.settings.segment_bytes
            or (time.time() - active.last_modified) * 1000 > self.settings.segment_ms
        ):
            active = self.roll()
        active.append_batches(data, batches, self.settings.index_interval_bytes)
        self.next_offset = base + count
        self.dirty = True
        if self.waiters:
            self.wake_waiters()
        return base

    def truncate_to(self, offset: int) -> list[Segment]:
        """Remove every batch from ``offset`` on: a follower's divergent tail (KIP-101), found
        with OffsetForLeaderEpoch. A batch holding ``offset`` goes whole, so the new log end is a
        batch boundary at or below ``offset``; the log start never moves (truncating below it
        empties the log there). Returns the segments now gone: the caller closes and unlinks
        their files, as after retention (reads in flight keep their fds)."""
        if offset >= self.next_offset:
            return []
        if self.cleaning:
            raise RuntimeError(f"{self.topic}-{self.partition}: a cleaner pass owns the segments")
        target = max(offset, self.start_offset)
        doomed: list[Segment] = []
        while len(self.segments) > 1 and self.segments[-1].base >= target:
            doomed.append(self.segments.pop())
        active = self.segments[-1]
        found = active.find_batch(target)  # the batch holding target, or the first after it
        cut = found[0] if found is not None else active.size
        if cut < active.size:
            os.ftruncate(active.fd, cut)
        self.next_offset = active.rebuild_from_scan(self.settings.index_interval_bytes, verify_crc=False)
        self.flushed_offset = min(self.flushed_offset, self.next_offset)
        self.pending_fsync[:] = [s for s in self.pending_fsync if s not in doomed]
        self.dirty = True  # the next flush makes the shorter file durable
        self.reset_read_hint()
        return doomed

    def reset_read_hint(self) -> None:
        """Segments were replaced or removed: positions remembered for the next read are stale."""
        self._pos_hint = (-1, -1, -1)

    def roll(self) -> Segment:
        old = self.segments[-1]
        old.seal()
        self.pending_fsync.append(old)
        seg = Segment.create(self.dir, self.next_offset)
        self.segments.append(seg)
        return seg

    # --- reading ------------------------------------------------------------------------
    def _segment_for(self, offset: int) -> int:
        i = bisect_right([s.base for s in self.segments], offset) - 1
        return max(i, 0)

    def read(self, offset: int, max_bytes: int, min_one: bool) -> bytes:
        """Whole batches starting with the one containing ``offset``, up to ``max_bytes``.

        With ``min_one``, the first batch is returned even if larger than ``max_bytes``.
        """
        if offset < self.start_offset or offset > self.next_offset:
            raise OffsetOutOfRange(offset)
        if offset == self.next_offset:
            return b""
        hint_offset, hint_base, hint_pos = self._pos_hint
        segments = self.segments
        i = self._segment_for(offset)
        while i < len(segments):
            seg = segments[i]
            if hint_offset == offset and hint_base == seg.base:
                pos = hint_pos
                head = seg.read_at(pos, HEADER.size)
                if len(head) < HEADER.size:
                    i += 1
                    continue
                first_size = HEADER.unpack_from(head)[1] + 12
            else:
                entry = seg.find_batch(offset)
                if entry is None:
                    i += 1
                    continue
                pos, first_size = entry[0], entry[2]
            want = min(max_bytes, seg.size - pos)
            if min_one and first_size > want:
                want = first_size
            if want < first_size:
                return b""
            data = seg.read_at(pos, want)
            end = 0
            last = offset
            for bpos, _base, size, last_offset, _ts, _a in iter_headers(data):
                end = bpos + size
                last = last_offset
            if end == 0:
                return b""
            self._pos_hint = (last + 1, seg.base, pos + end)
            return data if end == len(data) else data[:end]
        return b""

    def read_range(
        self, offset: int, max_bytes: int, min_one: bool
    ) -> tuple[int, int, int, int] | bytes | None:
        """Like :meth:`read`, without reading the records: (dup'd segment fd, position, size,
        record count) of the whole batches, or None for nothing. Only batch headers are read.

        A range under ``ZERO_COPY_MIN_BYTES`` is read (returned as bytes): copying it costs less
        than a descriptor, and it bounds the descriptors a many-partition fetch holds.
        """
        if offset < self.start_offset or offset > self.next_offset:
            raise OffsetOutOfRange(offset)
        if offset == self.next_offset:
            return None
        segments = self.segments
        i = self._segment_for(offset)
        while i < len(segments):
            seg = segments[i]
            hint_offset, hint_base, hint_pos = self._pos_hint
            if hint_offset == offset and hint_base == seg.base:
                pos = hint_pos
                if pos + HEADER_SIZE > seg.size:
                    # The previous read ended this segment, below its successor's base: the
                    # cleaner removed its tail, and the offset's next batch starts the next one.
                    i += 1
                    continue
            else:
                entry = seg.find_batch(offset)
                if entry is None:
                    i += 1
                    continue
                pos = entry[0]
            fd = seg.fd
            limit = seg.size
            end = pos
            records = 0
            last = -1
            while end + HEADER_SIZE <= limit:
                head = os.pread(fd, HEADER_SIZE, end)
                if len(head) < HEADER_SIZE:
                    break
                base, length = _BASE_LEN.unpack_from(head)
                size = length + 12
                if length < 49 or end + size > limit:
                    break
                if end > pos and end + size - pos > max_bytes:
                    break
                if end == pos and size > max_bytes and not min_one:
                    return None
                (delta,) = _LAST_DELTA.unpack_from(head, 23)
                (count,) = _I32.unpack_from(head, 57)
                records += count
                last = base + delta
                end += size
            if end == pos:
                return None
            self._pos_hint = (last + 1, seg.base, end)
            if end - pos >= ZERO_COPY_MIN_BYTES:
                try:
                    return os.dup(fd), pos, end - pos, records
                except OSError:  # out of descriptors: this one is copied
                    pass
            return seg.read_at(pos, end - pos)
        return None

    def add_waiter(self, fut: asyncio.Future) -> None:
        """Resolve ``fut`` on the next append (a fetch long-poll); see :meth:`remove_waiter`."""
        self.waiters.append(fut)

    def remove_waiter(self, fut: asyncio.Future) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(fut)

    def wake_waiters(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # --- deleting from the head ---------------------------------------------------------
    def segments_to_retain_away(self, retention_ms: int, retention_bytes: int, now_ms: int) -> int:
        """How many oldest segments size and time retention delete now (rolls if all expired)."""
        doomed = expired_segments(self.segments, retention_ms, retention_bytes, now_ms)
        if doomed >= len(self.segments):
            if not self.active.size:
                doomed = len(self.segments) - 1
            else:
                self.roll()  # every segment expired: roll so the active one can go too
        return doomed

    def advance_start_offset(self, offset: int) -> int:
        """Move the log start offset up to ``offset`` (DeleteRecords); returns segments now below it."""
        self.start_offset = max(self.start_offset, offset)
        return segments_below(self.segments, self.start_offset)

    def detach_oldest_segments(self, n: int) -> list[Segment]:
        """Drop the ``n`` oldest segments from the log (never the active one) and return them.

        The caller closes and unlinks their files; reads already in flight keep their fds.
        """
        n = min(n, len(self.segments) - 1)
        if n <= 0:
            return []
        doomed = self.segments[:n]
        del self.segments[:n]
        self.pending_fsync[:] = [s for s in self.pending_fsync if s not in doomed]
        self.start_offset = max(self.start_offset, self.segments[0].base)
        self.reset_read_hint()
        return doomed

    def batch_headers_from(self, start: int) -> Iterator[BatchHeader]:
        """Headers of every batch in the segments that may hold offsets >= ``start``, in order."""
        segments = self.segments
        for i, seg in enumerate(segments):
            if seg.size == 0 or (i + 1 < len(segments) and segments[i + 1].base <= start):
                continue
            yield from seg.batch_headers()

    # --- offsets by time ----------------------------------------------------------------
    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp``."""
        for seg in self.segments:
            seg.ensure_loaded()
            if seg.max_ts < timestamp:
                continue
            for pos, _base, size, _last, max_ts, _attrs in seg.scan(seg.timestamp_scan_start(timestamp)):
                if max_ts >= timestamp:
                    batch = seg.read_at(pos, size)
                    for off, ts in record_timestamps(batch):
                        if ts >= timestamp and off >= self.start_offset:
                            return off, ts
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp."""
        best: Segment | None = None
        for seg in self.segments:
            seg.ensure_loaded()
            if seg.max_ts >= 0 and (best is None or seg.max_ts > best.max_ts):
                best = seg
        if best is None:
            return None
        entry = best.find_batch(best.max_ts_offset)
        if entry is None:
            return None
        batch = best.read_at(entry[0], entry[2])
        for off, ts in record_timestamps(batch):
            if ts == best.max_ts:
                return off, ts
        return entry[3], best.max_ts

    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)
