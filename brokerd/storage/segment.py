"""One log segment: ``<base>.log`` plus a sparse offset index and a time index.

Index entries live in memory (arrays) and are appended to their files as they are made:
- ``<base>.index``: (relative offset: int32, position: int32) per ``log.index.interval.bytes``
- ``<base>.timeindex``: (max timestamp so far: int64, relative offset: int32)

The files are the durable copy; a segment's in-memory indexes are loaded lazily.
"""

from __future__ import annotations

import os
import struct
import time
from array import array
from bisect import bisect_right
from collections.abc import Iterator

from brokerd.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    BatchHeader,
    batch_crc_ok,
    read_header,
)

_IDX = struct.Struct(">ii")
_TIDX = struct.Struct(">qi")
_SCAN = struct.Struct(">qiibIhiqq")  # up to max_timestamp
READ_CHUNK = 65536


def segment_name(base: int) -> str:
    return f"{base:020d}"


class Segment:
    __slots__ = (
        "_fd",
        "_idx_fd",
        "_loaded",
        "_tidx_fd",
        "base",
        "bytes_since_index",
        "dir",
        "idx_offsets",
        "idx_positions",
        "last_modified",
        "max_ts",
        "max_ts_offset",
        "size",
        "tidx_offsets",
        "tidx_ts",
    )

    def __init__(self, directory: str, base: int, size: int = 0) -> None:
        self.dir = directory
        self.base = base
        self.size = size
        self._fd = -1
        self._idx_fd = -1
        self._tidx_fd = -1
        self._loaded = False
        self.idx_offsets = array("q")
        self.idx_positions = array("q")
        self.tidx_ts = array("q")
        self.tidx_offsets = array("q")
        self.max_ts = -1
        self.max_ts_offset = -1
        self.bytes_since_index = 0
        self.last_modified = time.time()  # creation time, for log.roll.ms

    # --- paths and descriptors --------------------------------------------------------
    @property
    def path(self) -> str:
        return os.path.join(self.dir, segment_name(self.base) + ".log")

    @property
    def index_path(self) -> str:
        return os.path.join(self.dir, segment_name(self.base) + ".index")

    @property
    def timeindex_path(self) -> str:
        return os.path.join(self.dir, segment_name(self.base) + ".timeindex")

    @property
    def fd(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def _index_fds(self) -> tuple[int, int]:
        if self._idx_fd < 0:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._idx_fd = os.open(self.index_path, flags, 0o644)
            self._tidx_fd = os.open(self.timeindex_path, flags, 0o644)
        return self._idx_fd, self._tidx_fd

    def fds(self) -> list[int]:
        """Open descriptors that hold data (for fsync)."""
        return [fd for fd in (self._fd, self._idx_fd, self._tidx_fd) if fd >= 0]

    def close(self) -> None:
        for name in ("_fd", "_idx_fd", "_tidx_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    @classmethod
    def create(cls, directory: str, base: int) -> Segment:
        seg = cls(directory, base, 0)
        seg._loaded = True
        _ = seg.fd
        seg._index_fds()
        return seg

    # --- indexes ----------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            with open(self.index_path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raw = b""
        n = len(raw) // _IDX.size
        for i in range(n):
            rel, pos = _IDX.unpack_from(raw, i * _IDX.size)
            if pos >= self.size:
                break
            self.idx_offsets.append(self.base + rel)
            self.idx_positions.append(pos)
        try:
            with open(self.timeindex_path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raw = b""
        n = len(raw) // _TIDX.size
        for i in range(n):
            ts, rel = _TIDX.unpack_from(raw, i * _TIDX.size)
            self.tidx_ts.append(ts)
            self.tidx_offsets.append(self.base + rel)
        if len(self.tidx_ts):
            self.max_ts = self.tidx_ts[-1]
            self.max_ts_offset = self.tidx_offsets[-1]

    def rebuild_from_scan(self, interval: int, verify_crc: bool) -> int:
        """Scan the whole file, drop a torn tail, rebuild indexes. Returns the next offset."""
        self._loaded = True
        self.idx_offsets = array("q")
        self.idx_positions = array("q")
        self.tidx_ts = array("q")
        self.tidx_offsets = array("q")
        self.max_ts = -1
        self.max_ts_offset = -1
        self.bytes_since_index = 0
        file_size = os.fstat(self.fd).st_size
        self.size = file_size
        next_offset = self.base
        valid_end = 0
        for pos, base, size, last, max_ts, _attrs in self.scan(0, verify_crc=verify_crc):
            self._note_batch(pos, base, size, max_ts, interval)
            valid_end = pos + size
            next_offset = last + 1
        if valid_end != file_size:
            os.ftruncate(self.fd, valid_end)
        self.size = valid_end
        self._rewrite_indexes()
        return next_offset

    def _rewrite_indexes(self) -> None:
        for path, data in (
            (
                self.index_path,
                b"".join(
                    _IDX.pack(o - self.base, p)
                    for o, p in zip(self.idx_offsets, self.idx_positions, strict=True)
                ),
            ),
            (
                self.timeindex_path,
                b"".join(
                    _TIDX.pack(t, o - self.base) for t, o in zip(self.tidx_ts, self.tidx_offsets, strict=True)
                ),
            ),
        ):
            with open(path, "wb") as fh:
                fh.write(data)

    def _note_batch(self, pos: int, base: int, size: int, max_ts: int, interval: int) -> tuple[bytes, bytes]:
        """Update in-memory indexes for a batch at ``pos``; returns bytes to append to files."""
        idx = tidx = b""
        if max_ts > self.max_ts:
            self.max_ts = max_ts
            self.max_ts_offset = base
        if not len(self.idx_offsets) or self.bytes_since_index >= interval:
            self.idx_offsets.append(base)
            self.idx_positions.append(pos)
            idx = _IDX.pack(base - self.base, pos)
            self.bytes_since_index = 0
            if not len(self.tidx_ts) or self.max_ts > self.tidx_ts[-1]:
                self.tidx_ts.append(self.max_ts)
                self.tidx_offsets.append(self.max_ts_offset)
                tidx = _TIDX.pack(self.max_ts, self.max_ts_offset - self.base)
        self.bytes_since_index += size
        return idx, tidx

    def append_batches(
        self, data: bytes | bytearray, batches: list[tuple[int, int, int]], interval: int
    ) -> None:
        """Write ``data`` (whole batches) at the end. ``batches``: (base offset, size, max ts)."""
        pos = self.size
        os.pwrite(self.fd, data, pos)
        idx_parts = []
        tidx_parts = []
        for base, size, max_ts in batches:
            idx, tidx = self._note_batch(pos, base, size, max_ts, interval)
            if idx:
                idx_parts.append(idx)
            if tidx:
                tidx_parts.append(tidx)
            pos += size
        self.size = pos
        if idx_parts or tidx_parts:
            idx_fd, tidx_fd = self._index_fds()
            if idx_parts:
                os.write(idx_fd, b"".join(idx_parts))
            if tidx_parts:
                os.write(tidx_fd, b"".join(tidx_parts))

    def seal(self) -> None:
        """Write a final time index entry (the segment's max timestamp), as Kafka does on roll."""
        self.ensure_loaded()
        if self.max_ts >= 0 and (not len(self.tidx_ts) or self.max_ts > self.tidx_ts[-1]):
            self.tidx_ts.append(self.max_ts)
            self.tidx_offsets.append(self.max_ts_offset)
            _idx_fd, tidx_fd = self._index_fds()
            os.write(tidx_fd, _TIDX.pack(self.max_ts, self.max_ts_offset - self.base))

    # --- reading ----------------------------------------------------------------------
    def batch_headers(self) -> Iterator[BatchHeader]:
        """Every batch header of the segment, in order, read in 1 MB chunks (no CRC check)."""
        pos = 0
        end = self.size
        while pos + HEADER_SIZE <= end:
            chunk = self.read_at(pos, min(1 << 20, end - pos))
            off = 0
            while len(chunk) - off >= HEADER_SIZE:
                header = read_header(chunk, off)
                if header.magic != 2 or header.batch_length <= 0:
                    return
                yield header
                off += header.size
            if off == 0:
                return
            pos += off

    def read_at(self, pos: int, n: int) -> bytes:
        return os.pread(self.fd, n, pos)

    def scan(self, start: int, end: int | None = None, verify_crc: bool = False) -> Iterator[tuple]:
        """Yield (pos, base, size, last_offset, max_ts, attributes) for whole batches from ``start``."""
        end = self.size if end is None else end
        pos = start
        fd = self.fd
        while pos < end:
            chunk = os.pread(fd, min(READ_CHUNK, end - pos), pos)
            if len(chunk) < HEADER_SIZE:
                return
            off = 0
            while len(chunk) - off >= HEADER_SIZE:
                base, length, _ple, magic, _crc, attrs, last_delta, _bts, max_ts = _SCAN.unpack_from(
                    chunk, off
                )
                size = length + LOG_OVERHEAD
                if magic != 2 or length < MIN_BATCH_LENGTH or pos + off + size > end:
                    return
                if verify_crc:
                    if off + size <= len(chunk):
                        ok = batch_crc_ok(chunk, off, size)
                    else:
                        ok = batch_crc_ok(os.pread(fd, size, pos + off), 0, size)
                    if not ok:
                        return
                yield pos + off, base, size, base + last_delta, max_ts, attrs
                off += size
                if off > len(chunk):
                    break
            pos += off

    def position_for(self, offset: int) -> int:
        """Position of the indexed batch at or before ``offset`` (start of scanning)."""
        self.ensure_loaded()
        i = bisect_right(self.idx_offsets, offset) - 1
        return self.idx_positions[i] if i >= 0 else 0

    def find_batch(self, offset: int) -> tuple | None:
        """The batch containing ``offset`` or the first batch after it."""
        for entry in self.scan(self.position_for(offset)):
            if entry[3] >= offset:
                return entry
        return None

    def timestamp_scan_start(self, timestamp: int) -> int:
        """Position to start scanning for the first batch with max timestamp >= ``timestamp``."""
        self.ensure_loaded()
        i = bisect_right(self.tidx_ts, timestamp - 1) - 1
        if i < 0:
            return 0
        return self.position_for(self.tidx_offsets[i])

    def last_batch_end_offset(self) -> int | None:
        """Next offset after the last batch (for clean starts), using the index tail."""
        self.ensure_loaded()
        start = self.idx_positions[-1] if len(self.idx_positions) else 0
        last = None
        for _pos, _base, _size, last_offset, max_ts, _a in self.scan(start):
            last = last_offset
            if max_ts > self.max_ts:
                self.max_ts = max_ts
                self.max_ts_offset = _base
        return None if last is None else last + 1
