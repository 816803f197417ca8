"""Record batches (magic v2) as opaque bytes: header parsing, validation and in-place stamping.

Only the 61-byte header is ever looked at on the produce path. Records are decoded only for
rare queries that need per-record timestamps (ListOffsets by time), never for produce/fetch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import crc32c

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base offset + batch length, the part not counted in batch length
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD

# base_offset, batch_length, partition_leader_epoch, magic, crc, attributes, last_offset_delta,
# base_timestamp, max_timestamp, producer_id, producer_epoch, base_sequence, records_count
HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_LEN = struct.Struct(">qi")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")

ATTR_COMPRESSION_MASK = 0x07
ATTR_TIMESTAMP_TYPE = 0x08  # LogAppendTime
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40  # KIP-534: the base timestamp holds the tombstones' delete horizon

COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class BatchHeader(NamedTuple):
    """The 61-byte header of a v2 record batch, as Kafka's DefaultRecordBatch lays it out."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def size(self) -> int:
        """Bytes of the whole batch in the log (header and records)."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def codec(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def delete_horizon(self) -> int | None:
        """KIP-534: when set, the base timestamp field holds the tombstones' delete horizon."""
        return self.base_timestamp if self.attributes & ATTR_DELETE_HORIZON else None


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


class StampedBatch(NamedTuple):
    """One batch of a produce request once validated and given its offsets."""

    base_offset: int
    size: int
    max_timestamp: int


class InvalidBatch(ValueError):
    """The records are corrupt (CRC, lengths, magic)."""


class BatchTooLarge(ValueError):
    """One batch exceeds message.max.bytes."""


def validate_and_stamp(
    records: bytearray | memoryview,
    base_offset: int,
    max_batch_bytes: int,
    log_append_time: int | None = None,
) -> tuple[list[StampedBatch], int]:
    """Validate every batch in ``records`` (a writable buffer) and stamp offsets in place.

    Returns (a StampedBatch per batch, total record count).
    Raises InvalidBatch or BatchTooLarge.
    """
    view = memoryview(records)
    total = len(view)
    pos = 0
    batches: list[StampedBatch] = []
    offset = base_offset
    unpack = HEADER.unpack_from
    while pos < total:
        if total - pos < HEADER_SIZE:
            raise InvalidBatch("truncated record batch header")
        (_bo, batch_length, _ple, magic, crc, attributes, last_delta, _bts, max_ts, _pid, _pe, _bs, count) = (
            unpack(view, pos)
        )
        size = batch_length + LOG_OVERHEAD
        if magic != 2:
            raise InvalidBatch(f"unsupported record batch magic {magic}")
        if batch_length < MIN_BATCH_LENGTH or pos + size > total:
            raise InvalidBatch("record batch length does not match the data")
        if size > max_batch_bytes:
            raise BatchTooLarge(f"record batch of {size} bytes exceeds the limit of {max_batch_bytes}")
        if count <= 0 or last_delta != count - 1:
            raise InvalidBatch("record count does not match the last offset delta")
        if attributes & ATTR_COMPRESSION_MASK > 4:
            raise InvalidBatch("unknown compression codec")
        if crc32c.crc32c(view[pos + 21 : pos + size]) != crc:
            raise InvalidBatch("record batch CRC mismatch")
        batches.append(StampedBatch(offset, size, max_ts))
        offset += count
        pos += size
    if not batches:
        raise InvalidBatch("no record batch in the produce request")
    # Stamp only once everything is valid.
    pos = 0
    for i, (base, size, _max_ts) in enumerate(batches):
        _I64.pack_into(view, pos, base)
        _I32.pack_into(view, pos + 12, 0)  # partition leader epoch
        if log_append_time is not None:
            (attributes,) = _I16.unpack_from(view, pos + 21)
            _I16.pack_into(view, pos + 21, attributes | ATTR_TIMESTAMP_TYPE)
            _I64.pack_into(view, pos + 35, log_append_time)
            _U32.pack_into(view, pos + 17, crc32c.crc32c(view[pos + 21 : pos + size]))
            batches[i] = StampedBatch(base, size, log_append_time)
        pos += size
    return batches, offset - base_offset


def stamp_leader_epoch(buf: bytearray | memoryview, batches: list[tuple[int, int, int]], epoch: int) -> None:
    """Write the partition leader's epoch into each batch's ``partition_leader_epoch`` (bytes
    12-15, outside the CRC), as a Kafka leader does: followers copying the batches learn from
    it where each leader epoch began. ``batches``: (base offset, size, max timestamp) in order."""
    pos = 0
    for _base, size, _max_ts in batches:
        _I32.pack_into(buf, pos + 12, epoch)
        pos += size


def iter_headers(buf: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple]:
    """Yield (position, base_offset, size, last_offset, max_timestamp, attributes) per whole batch.

    Stops at the first incomplete or nonsensical header (no CRC check).
    """
    end = len(buf) if end is None else end
    pos = start
    while end - pos >= HEADER_SIZE:
        base, length, _ple, magic, _crc, attrs, last_delta, _bts, max_ts = struct.unpack_from(
            ">qiibIhiqq", buf, pos
        )
        size = length + LOG_OVERHEAD
        if magic != 2 or length < MIN_BATCH_LENGTH or pos + size > end:
            return
        yield pos, base, size, base + last_delta, max_ts, attrs
        pos += size


def batch_crc_ok(buf: bytes | memoryview, pos: int, size: int) -> bool:
    (crc,) = _U32.unpack_from(buf, pos + 17)
    return crc32c.crc32c(memoryview(buf)[pos + 21 : pos + size]) == crc


# ---------------------------------------------------------------------------------------
# Record decoding (rare paths only)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A record field's zig-zag varint at ``pos``: (value, position after it)."""
    shift = 0
    result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise InvalidBatch("varint too long")


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        import gzip

        return gzip.decompress(data)
    import cramjam

    if codec == 2:
        if data[:8] == b"\x82SNAPPY\x00":  # xerial framing (Java clients)
            out = bytearray()
            pos = 16
            while pos + 4 <= len(data):
                (n,) = struct.unpack_from(">i", data, pos)
                pos += 4
                out += bytes(cramjam.snappy.decompress_raw(data[pos : pos + n]))
                pos += n
            return bytes(out)
        return bytes(cramjam.snappy.decompress_raw(data))
    if codec == 3:
        return bytes(cramjam.lz4.decompress(data))
    if codec == 4:
        return bytes(cramjam.zstd.decompress(data))
    raise InvalidBatch(f"unknown compression codec {codec}")


def record_timestamps(batch: bytes) -> list[tuple[int, int]]:
    """[(offset, timestamp)] for each record of one stored batch (decompressing if needed)."""
    (base, _len, _ple, _magic, _crc, attrs, _ld, base_ts, max_ts, _pid, _pe, _bs, count) = HEADER.unpack_from(
        batch, 0
    )
    if attrs & ATTR_TIMESTAMP_TYPE:
        return [(base + i, max_ts) for i in range(count)]
    data = _decompress(attrs & ATTR_COMPRESSION_MASK, bytes(batch[HEADER_SIZE:]))
    out = []
    pos = 0
    for _ in range(count):
        length, pos = read_varint(data, pos)
        end = pos + length
        pos += 1  # attributes (int8)
        ts_delta, pos = read_varint(data, pos)
        off_delta, pos = read_varint(data, pos)
        out.append((base + off_delta, base_ts + ts_delta))
        pos = end
    return out


# ---------------------------------------------------------------------------------------
# Batches the broker writes itself (transaction markers, internal topics' records)

CONTROL_ABORT = 0
CONTROL_COMMIT = 1


def zigzag(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def build_batch(
    records: list[tuple[bytes | None, bytes | None]],
    *,
    timestamp_ms: int,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytearray:
    """An uncompressed v2 batch of ``records`` (key, value), base offset 0, CRC set: the caller
    stamps its offsets as a produced batch's (:func:`validate_and_stamp`)."""
    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = bytearray(b"\x00")  # record attributes
        rec += zigzag(0)  # timestamp delta
        rec += zigzag(i)  # offset delta
        for part in (key, value):
            rec += zigzag(-1) if part is None else zigzag(len(part)) + part
        rec += zigzag(0)  # headers
        body += zigzag(len(rec)) + rec
    n = len(records)
    out = bytearray(HEADER.pack(0, HEADER_SIZE - LOG_OVERHEAD + len(body), -1, 2, 0, attributes, n - 1,
                                timestamp_ms, timestamp_ms, producer_id, producer_epoch, base_sequence, n))
    out += body
    _U32.pack_into(out, 17, crc32c.crc32c(memoryview(out)[21:]))
    return out


def control_batch(
    commit: bool, producer_id: int, producer_epoch: int, coordinator_epoch: int, timestamp_ms: int
) -> bytearray:
    """A transaction marker: Kafka's control batch holding one EndTransactionMarker record
    (key: version 0, type 0 abort / 1 commit; value: version 0, the coordinator's epoch)."""
    key = struct.pack(">hh", 0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = struct.pack(">hi", 0, coordinator_epoch)
    return build_batch([(key, value)], timestamp_ms=timestamp_ms, producer_id=producer_id,
                       producer_epoch=producer_epoch, attributes=ATTR_TRANSACTIONAL | ATTR_CONTROL)


def control_type(batch: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """The control record type of the control batch at ``pos`` (0 abort, 1 commit), None if
    unreadable. Control batches are never compressed."""
    try:
        p = pos + HEADER_SIZE
        _length, p = read_varint(batch, p)
        p += 1  # attributes
        _ts, p = read_varint(batch, p)
        _off, p = read_varint(batch, p)
        key_len, p = read_varint(batch, p)
        if key_len < 4:
            return None
        _version, kind = struct.unpack_from(">hh", batch, p)
        return kind
    except (IndexError, struct.error, InvalidBatch):
        return None
