"""Durable committed offsets and group metadata: an append-only, group-fsynced, compacted log.

Layout: ``DIR/offsets.log``, a sequence of frames ``[u32 length][u32 crc32c(body)][body]``.
Bodies (big-endian; ``str`` = u16 length + UTF-8, ``nstr`` = i32 length or -1 + UTF-8):

* ``O`` commit:  group str, topic str, partition i32, offset i64, leader_epoch i32,
  commit_timestamp i64, expire_timestamp i64, metadata nstr
* ``o`` offset tombstone: group str, topic str, partition i32
* ``G`` group metadata: group str, JSON document (rest of the body)
* ``D`` group tombstone (metadata and every offset of the group): group str

Appends are acknowledged only after ``fdatasync`` (several appends arriving within the flush
window share one sync). On load a torn or corrupt tail is truncated. The log is rewritten with
only live records (``offsets.log.compact`` then an atomic rename) at load and whenever it holds
more than ``compaction_min_records`` dead records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crc32c import crc32c
from kio.schema.errors import ErrorCode

from brokerd.durable import atomic_write

log = logging.getLogger("brokerd.groups.store")

LOG_NAME = "offsets.log"
COMPACT_NAME = "offsets.log.compact"

_HDR = struct.Struct(">II")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_COMMIT_TAIL = struct.Struct(">iqiqq")  # partition, offset, leader_epoch, commit_ts, expire_ts
_PART = struct.Struct(">i")

TopicPartition = tuple[str, int]


#: What a group request answers when its records could not be appended, as Kafka's group
#: coordinator maps the partition's append error: the client retries on COORDINATOR_NOT_AVAILABLE
#: and looks the coordinator up again on NOT_COORDINATOR (the partition's leadership moved).
_APPEND_ERRORS = {
    ErrorCode.unknown_topic_or_partition: ErrorCode.coordinator_not_available,
    ErrorCode.not_enough_replicas: ErrorCode.coordinator_not_available,
    ErrorCode.not_enough_replicas_after_append: ErrorCode.coordinator_not_available,
    ErrorCode.request_timed_out: ErrorCode.coordinator_not_available,
    ErrorCode.not_leader_or_follower: ErrorCode.not_coordinator,
    ErrorCode.kafka_storage_error: ErrorCode.not_coordinator,
    ErrorCode.message_too_large: ErrorCode.unknown_server_error,
    ErrorCode.record_list_too_large: ErrorCode.unknown_server_error,
    ErrorCode.invalid_fetch_size: ErrorCode.unknown_server_error,
}


class StoreError(Exception):
    """The offsets log could not be written; nothing of the failed append is acknowledged.
    ``code`` is the error the coordinator answers for it: the append's error as Kafka maps it
    (COORDINATOR_NOT_AVAILABLE unless the store knows better, e.g. NOT_COORDINATOR once
    leadership of the partition moved)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.coordinator_not_available) -> None:
        super().__init__(message)
        self.code = _APPEND_ERRORS.get(code, code)


def write_error(f: asyncio.Future[Any]) -> ErrorCode | None:
    """The error a request answers for a finished write of the store (None: it is durable)."""
    if f.cancelled():
        return ErrorCode.coordinator_not_available
    exc = f.exception()
    if exc is None:
        return None
    return exc.code if isinstance(exc, StoreError) else ErrorCode.coordinator_not_available


@dataclass(slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = -1
    #: Set only by OffsetCommit v2-4 with an explicit retention time; -1 otherwise.
    expire_timestamp_ms: int = -1


@dataclass(slots=True)
class LoadedState:
    offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: producer id -> group -> offsets committed in its transaction, still open at the log end
    txn_offsets: dict[int, dict[str, dict[TopicPartition, OffsetAndMetadata]]] = field(default_factory=dict)
    #: the offset the records read end at (what a marker written meanwhile is compared to)
    end_offset: int = 0
    records: int = 0
    truncated_bytes: int = 0
    compacted: bool = False


# --- encoding --------------------------------------------------------------------------------


def _s(text: str) -> bytes:
    raw = text.encode()
    return _U16.pack(len(raw)) + raw


def _frame(body: bytes) -> bytes:
    return _HDR.pack(len(body), crc32c(body)) + body


def encode_commit(group: str, tp: TopicPartition, om: OffsetAndMetadata) -> bytes:
    meta = om.metadata
    if meta is None:
        meta_part = _I32.pack(-1)
    else:
        raw = meta.encode()
        meta_part = _I32.pack(len(raw)) + raw
    body = b"".join(
        (
            b"O",
            _s(group),
            _s(tp[0]),
            _COMMIT_TAIL.pack(
                tp[1], om.offset, om.leader_epoch, om.commit_timestamp_ms, om.expire_timestamp_ms
            ),
            meta_part,
        )
    )
    return _frame(body)


def encode_offset_tombstone(group: str, tp: TopicPartition) -> bytes:
    return _frame(b"o" + _s(group) + _s(tp[0]) + _PART.pack(tp[1]))


def encode_group(group: str, document: dict[str, Any]) -> bytes:
    return _frame(b"G" + _s(group) + json.dumps(document, separators=(",", ":")).encode())


def encode_group_tombstone(group: str) -> bytes:
    return _frame(b"D" + _s(group))


def _read_s(buf: bytes | memoryview, pos: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    return bytes(buf[pos : pos + n]).decode(), pos + n


def decode_commit(body: bytes | memoryview) -> tuple[str, TopicPartition, OffsetAndMetadata]:
    group, pos = _read_s(body, 1)
    topic, pos = _read_s(body, pos)
    partition, offset, epoch, commit_ts, expire_ts = _COMMIT_TAIL.unpack_from(body, pos)
    pos += _COMMIT_TAIL.size
    (n,) = _I32.unpack_from(body, pos)
    pos += 4
    metadata = "" if n < 0 else bytes(body[pos : pos + n]).decode()
    return group, (topic, partition), OffsetAndMetadata(offset, epoch, metadata, commit_ts, expire_ts)


# --- the store -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Live:
    meta: bytes | None = None
    offsets: dict[TopicPartition, bytes] = field(default_factory=dict)


# An operation: (kind, group, topic-partition or None, frame)
_Op = tuple[str, str, "TopicPartition | None", bytes]


class OffsetsStore:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        flush_window_ms: float = 1.0,
        compaction_min_records: int = 10_000,
        fsync: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_NAME
        self.flush_window_s = max(flush_window_ms, 0) / 1000.0
        self.compaction_min_records = compaction_min_records
        self._fsync = fsync
        self._fd: int | None = None
        self._size = 0
        self._live: dict[str, _Live] = {}
        self._live_count = 0
        self._records = 0
        self._pending: list[tuple[list[_Op], asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        # statistics
        self.syncs = 0
        self.compactions = 0

    # -- load ---------------------------------------------------------------------------------

    def load(self) -> LoadedState:
        """Read the log (synchronously, at startup), truncating a torn tail; maybe compact."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # an interrupted compaction left its temporary file; the log itself is intact
        for leftover in (self.directory / COMPACT_NAME, *self.directory.glob(f".{LOG_NAME}.*.tmp")):
            leftover.unlink(missing_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        buf = memoryview(data)
        pos = 0
        end = len(data)
        records = 0
        live = self._live
        hdr = _HDR
        while pos + 8 <= end:
            length, crc = hdr.unpack_from(buf, pos)
            body_end = pos + 8 + length
            if length == 0 or body_end > end:
                break
            body = buf[pos + 8 : body_end]
            if crc32c(body) != crc:
                break
            try:
                self._apply_body(live, body, bytes(buf[pos:body_end]))
            except (struct.error, UnicodeDecodeError, ValueError, IndexError):
                break
            records += 1
            pos = body_end
        state = LoadedState(records=records, truncated_bytes=end - pos)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if pos < end:
            log.warning(
                "offsets log %s: truncating %d bytes of torn/corrupt tail at %d", self.path, end - pos, pos
            )
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)
        self._size = pos
        self._records = records
        self._live_count = sum(len(g.offsets) + (g.meta is not None) for g in live.values())
        if self._needs_compaction():
            self._compact_sync(self._live_bytes())
            state.compacted = True
        # decode live records
        for group, entry in live.items():
            if entry.offsets:
                offsets = state.offsets[group] = {}
                for frame in entry.offsets.values():
                    _, tp, om = decode_commit(memoryview(frame)[8:])
                    offsets[tp] = om
            if entry.meta is not None:
                body = memoryview(entry.meta)[8:]
                _, p = _read_s(body, 1)
                state.groups[group] = json.loads(bytes(body[p:]))
        return state

    @staticmethod
    def _apply_body(live: dict[str, _Live], body: memoryview, frame: bytes) -> None:
        kind = body[0]
        group, pos = _read_s(body, 1)
        if kind == 0x4F:  # 'O'
            topic, pos = _read_s(body, pos)
            (partition,) = _PART.unpack_from(body, pos)
            entry = live.get(group)
            if entry is None:
                entry = live[group] = _Live()
            entry.offsets[(topic, partition)] = frame
        elif kind == 0x6F:  # 'o'
            topic, pos = _read_s(body, pos)
            (partition,) = _PART.unpack_from(body, pos)
            entry = live.get(group)
            if entry is not None:
                entry.offsets.pop((topic, partition), None)
                if not entry.offsets and entry.meta is None:
                    del live[group]
        elif kind == 0x47:  # 'G'
            entry = live.get(group)
            if entry is None:
                entry = live[group] = _Live()
            entry.meta = frame
        elif kind == 0x44:  # 'D'
            live.pop(group, None)
        else:
            raise ValueError(f"unknown record kind {kind}")

    # -- appends ------------------------------------------------------------------------------

    def commit(
        self, group: str, entries: Iterable[tuple[TopicPartition, OffsetAndMetadata]]
    ) -> asyncio.Future[None]:
        return self._append([("O", group, tp, encode_commit(group, tp, om)) for tp, om in entries])

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> asyncio.Future[None]:
        return self._append([("o", group, tp, encode_offset_tombstone(group, tp)) for tp in tps])

    def put_group(self, group: str, document: dict[str, Any]) -> asyncio.Future[None]:
        return self._append([("G", group, None, encode_group(group, document))])

    def delete_group(self, group: str, offsets: Iterable[TopicPartition] = ()) -> asyncio.Future[None]:
        """Every record of the group (its one tombstone covers ``offsets`` too)."""
        return self._append([("D", group, None, encode_group_tombstone(group))])

    def _append(self, ops: list[_Op]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._closed or self._fd is None:
            fut.set_exception(StoreError("offsets store is not open"))
            return fut
        if not ops:
            fut.set_result(None)
            return fut
        self._pending.append((ops, fut))
        if self._flusher is None:
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="offsets-fsync")
            self._flusher = loop.create_task(self._run(), name="offsets-store-flusher")
        assert self._wakeup is not None
        self._wakeup.set()
        return fut

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.flush_window_s and not self._closed:
                await asyncio.sleep(self.flush_window_s)
            batch, self._pending = self._pending, []
            if batch:
                data = b"".join(op[3] for ops, _ in batch for op in ops)
                try:
                    await loop.run_in_executor(self._executor, self._write, data)
                except Exception as exc:
                    log.error("offsets log append failed: %s", exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(StoreError(str(exc)))
                else:
                    for ops, fut in batch:
                        for op in ops:
                            self._apply_op(op)
                        if not fut.done():
                            fut.set_result(None)
                    if self._needs_compaction():
                        payload = self._live_bytes()
                        try:
                            await loop.run_in_executor(self._executor, self._compact_sync, payload)
                        except OSError as exc:
                            log.error("offsets log compaction failed: %s", exc)
            if self._closed and not self._pending:
                return

    def _write(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        start = self._size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self._fsync:
                os.fdatasync(fd)
                self.syncs += 1
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        self._size = start + len(data)

    def _apply_op(self, op: _Op) -> None:
        kind, group, tp, frame = op
        live = self._live
        self._records += 1
        if kind == "O":
            entry = live.get(group)
            if entry is None:
                entry = live[group] = _Live()
            if tp not in entry.offsets:
                self._live_count += 1
            entry.offsets[tp] = frame  # type: ignore[index]
        elif kind == "o":
            entry = live.get(group)
            if entry is not None and entry.offsets.pop(tp, None) is not None:  # type: ignore[arg-type]
                self._live_count -= 1
                if not entry.offsets and entry.meta is None:
                    del live[group]
        elif kind == "G":
            entry = live.get(group)
            if entry is None:
                entry = live[group] = _Live()
            if entry.meta is None:
                self._live_count += 1
            entry.meta = frame
        elif kind == "D":
            entry = live.pop(group, None)
            if entry is not None:
                self._live_count -= len(entry.offsets) + (entry.meta is not None)

    # -- compaction ---------------------------------------------------------------------------

    def _needs_compaction(self) -> bool:
        dead = self._records - self._live_count
        return dead > self.compaction_min_records and dead > self._live_count

    def _live_bytes(self) -> bytes:
        parts: list[bytes] = []
        for entry in self._live.values():
            if entry.meta is not None:
                parts.append(entry.meta)
            parts.extend(entry.offsets.values())
        return b"".join(parts)

    def _compact_sync(self, payload: bytes) -> None:
        atomic_write(self.path, payload)
        old = self._fd
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o644)
        if old is not None:
            os.close(old)
        self._size = len(payload)
        self._records = self._live_count
        self.compactions += 1

    async def compact(self) -> None:
        """Rewrite the log with only live records now (after pending appends)."""
        await self.flush()
        payload = self._live_bytes()
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._compact_sync(payload)
        else:
            await loop.run_in_executor(self._executor, self._compact_sync, payload)

    # -- misc ---------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every append made so far is durable (or failed)."""
        if self._pending:
            await asyncio.wait([fut for _, fut in self._pending])

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def live_records(self) -> int:
        return self._live_count

    @property
    def records(self) -> int:
        return self._records

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            assert self._wakeup is not None
            self._wakeup.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close_sync(self) -> None:
        """Close without a running loop (nothing pending may remain)."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
