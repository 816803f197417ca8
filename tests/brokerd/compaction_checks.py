"""Helpers for the compaction tests: build batches with kafka-python's encoder and read a
partition directory back with its decoder, independently of brokerd's own code.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

with warnings.catch_warnings():  # kafka-python 3 uses importlib.resources' legacy API on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_IDX = struct.Struct(">ii")
_TIDX = struct.Struct(">qi")


def build_batch(records: list[tuple[bytes | None, bytes | None, int]], *, codec: str = "none",
                producer_id: int = -1, epoch: int = -1, sequence: int = -1) -> bytearray:
    """A v2 batch (base offset 0) of (key, value, timestamp) records, encoded by kafka-python."""
    builder = DefaultRecordBatchBuilder(2, CODECS[codec], False, producer_id, epoch, sequence, 1 << 24)
    for i, (key, value, ts) in enumerate(records):
        builder.append(i, ts, key, value, [])
    return builder.build()


def read_batches(data: bytes) -> list[DefaultRecordBatch]:
    out = []
    pos = 0
    while len(data) - pos >= 61:
        (length,) = struct.unpack_from(">i", data, pos + 8)
        size = length + 12
        if pos + size > len(data):
            break
        out.append(DefaultRecordBatch(data[pos : pos + size]))
        pos += size
    return out


def segment_bases(pdir: Path) -> list[int]:
    names = [p.name[:-4] for p in pdir.iterdir() if p.name.endswith(".log")]
    return sorted(int(n) for n in names if n.isdigit())


def read_partition(pdir: Path) -> list[tuple[DefaultRecordBatch, list]]:
    """Every batch of a partition directory in order, with its decoded records."""
    out = []
    for base in segment_bases(pdir):
        data = (pdir / f"{base:020d}.log").read_bytes()
        for batch in read_batches(data):
            assert batch.validate_crc(), f"CRC mismatch in segment {base}"
            out.append((batch, list(batch)))
    return out


def check_indexes(pdir: Path) -> int:
    """Assert every offset and time index entry agrees with its segment; returns entries checked."""
    checked = 0
    bases = segment_bases(pdir)
    previous_end = -1
    for base in bases:
        data = (pdir / f"{base:020d}.log").read_bytes()
        starts: dict[int, int] = {}
        running_max: dict[int, int] = {}
        pos = 0
        biggest = -1
        for batch in read_batches(data):
            assert batch.base_offset >= base, f"batch {batch.base_offset} below its segment {base}"
            assert batch.base_offset > previous_end, "segments overlap or go backwards"
            previous_end = batch.last_offset
            starts[batch.base_offset] = pos
            biggest = max(biggest, batch.max_timestamp)
            running_max[batch.base_offset] = biggest
            pos += batch.size_in_bytes
        idx_path = pdir / f"{base:020d}.index"
        raw = idx_path.read_bytes() if idx_path.exists() else b""
        for i in range(len(raw) // 8):
            rel, position = _IDX.unpack_from(raw, i * 8)
            assert starts.get(base + rel) == position, (
                f"segment {base}: index entry ({base + rel}, {position}) is not a batch start")
            checked += 1
        tidx_path = pdir / f"{base:020d}.timeindex"
        raw = tidx_path.read_bytes() if tidx_path.exists() else b""
        for i in range(len(raw) // 12):
            ts, rel = _TIDX.unpack_from(raw, i * 12)
            assert base + rel in starts, f"segment {base}: time index names offset {base + rel}, no batch"
            assert running_max[base + rel] == ts, f"segment {base}: time index entry {ts} at {base + rel}"
            checked += 1
    return checked


def latest_by_key(pdir: Path) -> dict[bytes, tuple[int, bytes | None]]:
    out: dict[bytes, tuple[int, bytes | None]] = {}
    for _batch, records in read_partition(pdir):
        for r in records:
            out[r.key] = (r.offset, r.value)
    return out


def disk_usage(pdir: Path) -> int:
    return sum(os.path.getsize(pdir / f"{b:020d}.log") for b in segment_bases(pdir))
