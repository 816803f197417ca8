"""Record-level work for compacted topics: decode a stored batch, keep some of its records,
and write the batch again as Kafka's log cleaner does (``MemoryRecords.filterTo``).

The produce and fetch paths never decode records. This module is the exception that a topic
config asks for: the produce path calls :func:`keyless_records` on compacted topics, and the
cleaner (``brokerd/storage/cleaner.py``) rewrites batches with :func:`rebuild_batch` and
:func:`empty_batch`.

A rewritten batch keeps what a reader and the idempotent-producer state depend on: its base
offset and last offset delta (so the producer's last sequence is unchanged), partition leader
epoch, compression codec (records are compressed again with it), timestamp type, producer
id, epoch and base sequence, and every kept record's offset and timestamp. Only the record
count, the CRC and the max timestamp (the largest kept) change, plus, for batches holding
tombstones, Kafka's delete horizon (KIP-534): attribute bit 6 set and the base timestamp field
holding the time after which those tombstones may go. Record timestamp deltas are re-encoded
against it, so every record's timestamp reads back unchanged.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from typing import NamedTuple

import crc32c

from brokerd.records import (
    ATTR_CONTROL,
    ATTR_DELETE_HORIZON,
    ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    InvalidBatch,
    _decompress,
    read_header,
    read_varint,
    zigzag,
)

NO_TIMESTAMP = -1
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_SNAPPY_BLOCK = 32 * 1024  # xerial framing block size, as the Java client writes it
_XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)


class Record(NamedTuple):
    """One record of a decoded batch: where it lies in the decompressed payload, and what a
    cleaner needs to decide on it."""

    offset: int
    timestamp: int
    key: bytes | None
    has_value: bool
    start: int  # the record's first byte (its length varint)
    attrs_at: int  # its attributes byte
    rest_at: int  # its offset delta varint (everything from here on is copied verbatim)
    end: int


def decode(batch: bytes | memoryview) -> tuple[BatchHeader, bytes, list[Record]]:
    """The header, the decompressed payload and the records of one whole stored batch."""
    h = read_header(batch)
    if h.magic != 2:
        raise InvalidBatch(f"unsupported record batch magic {h.magic}")
    raw = bytes(batch[HEADER_SIZE : h.size])
    try:
        data = bounded_decompress(h.codec, raw) if h.records_count else b""
    except InvalidBatch:
        raise
    except Exception as exc:  # a codec's own error on corrupt data
        raise InvalidBatch(f"cannot decompress the records: {exc}") from None
    records: list[Record] = []
    append = records.append
    varint = read_varint
    pos = 0
    size = len(data)
    base = h.base_offset
    # LogAppendTime: every record's timestamp is the batch's max timestamp
    log_append = bool(h.attributes & ATTR_TIMESTAMP_TYPE)
    base_ts = h.base_timestamp
    # Varints of one or two bytes (nearly all: deltas, lengths) are read inline.
    try:
        for _ in range(h.records_count):
            start = pos
            b = data[pos]
            if b < 0x80:
                length, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                length, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                length, pos = varint(data, pos)
            end = pos + length
            attrs_at = pos
            b = data[pos + 1]
            if b < 0x80:
                ts_delta, rest_at = (b >> 1) ^ -(b & 1), pos + 2
            elif data[pos + 2] < 0x80:
                b = (b & 0x7F) | (data[pos + 2] << 7)
                ts_delta, rest_at = (b >> 1) ^ -(b & 1), pos + 3
            else:
                ts_delta, rest_at = varint(data, pos + 1)
            b = data[rest_at]
            if b < 0x80:
                off_delta, pos = (b >> 1) ^ -(b & 1), rest_at + 1
            elif data[rest_at + 1] < 0x80:
                b = (b & 0x7F) | (data[rest_at + 1] << 7)
                off_delta, pos = (b >> 1) ^ -(b & 1), rest_at + 2
            else:
                off_delta, pos = varint(data, rest_at)
            b = data[pos]
            if b < 0x80:
                key_len, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                key_len, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                key_len, pos = varint(data, pos)
            key = None
            if key_len >= 0:
                key = data[pos : pos + key_len]
                pos += key_len
            b = data[pos]
            if b < 0x80:
                value_len, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                value_len, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                value_len, pos = varint(data, pos)
            if end > size or pos + value_len > end:
                raise InvalidBatch("record length does not match the batch")
            ts = h.max_timestamp if log_append else base_ts + ts_delta
            append(Record(base + off_delta, ts, key, value_len >= 0, start, attrs_at, rest_at, end))
            pos = end
    except IndexError:
        raise InvalidBatch("truncated record") from None
    return h, data, records


#: A produced batch whose records decompress to more than this is refused (CORRUPT_MESSAGE):
#: the produce path of compacted topics decompresses, and must not be made to allocate gigabytes.
MAX_DECOMPRESSED = 64 * 1024 * 1024


def bounded_decompress(codec: int, data: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Decompress a record payload, refusing (InvalidBatch) one that would exceed ``limit``."""
    too_big = InvalidBatch(f"the records decompress to more than {limit} bytes")
    if codec == 0:
        return data
    if codec == 1:
        import zlib

        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise too_big
        return out
    if codec == 2:
        import cramjam

        if data[:8] == _XERIAL_HEADER[:8]:
            total, pos = 0, 16
            while pos + 4 <= len(data):
                (n,) = _I32.unpack_from(data, pos)
                total += cramjam.snappy.decompress_raw_len(data[pos + 4 : pos + 4 + n])
                pos += 4 + n
        else:
            total = cramjam.snappy.decompress_raw_len(data)
        if total > limit:
            raise too_big
        return _decompress(codec, data)
    if codec == 3:
        import lz4.frame

        d = lz4.frame.LZ4FrameDecompressor()
        out = d.decompress(data, max_length=limit + 1)
        if len(out) > limit or not d.eof:
            raise too_big
        return out
    if codec == 4:
        import io

        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            out = reader.read(limit + 1)
        if len(out) > limit:
            raise too_big
        return out
    raise InvalidBatch(f"unknown compression codec {codec}")


def record_heads(
    records: bytes | bytearray | memoryview, head: int
) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """(index, key head, value head) of every record, the heads being at most ``head`` bytes (None
    for a null key or value); indexes are per batch, as Kafka's ``record_errors`` count them.

    ``records`` holds whole, already validated batches. Control batches are skipped. Only the
    varints before the key and value and their first ``head`` bytes are looked at, so checks that
    need a record's first bytes (a compacted topic's keys, schema ids) never decode records.
    """
    view = memoryview(records)
    pos = 0
    while len(view) - pos >= HEADER_SIZE:
        h = read_header(view, pos)
        if not h.is_control and h.records_count:
            try:
                data = bounded_decompress(h.codec, bytes(view[pos + HEADER_SIZE : pos + h.size]))
                at = 0
                for i in range(h.records_count):
                    # varints inline when one or two bytes long (nearly always), else read_varint
                    b = data[at]
                    if b < 0x80:
                        length, p = (b >> 1) ^ -(b & 1), at + 1
                    elif data[at + 1] < 0x80:
                        b = (b & 0x7F) | (data[at + 1] << 7)
                        length, p = (b >> 1) ^ -(b & 1), at + 2
                    else:
                        length, p = read_varint(data, at)
                    at = p + length
                    p += 1  # attributes
                    while data[p] & 0x80:  # timestamp delta
                        p += 1
                    p += 1
                    while data[p] & 0x80:  # offset delta
                        p += 1
                    p += 1
                    b = data[p]
                    if b == 1:  # a null key: the one-byte varint -1
                        key = None
                        p += 1
                    else:
                        key_length, p = read_varint(data, p)
                        key = data[p : p + (key_length if key_length < head else head)]
                        p += key_length
                    b = data[p]
                    if b < 0x80:
                        value_length, p = (b >> 1) ^ -(b & 1), p + 1
                    elif data[p + 1] < 0x80:
                        b = (b & 0x7F) | (data[p + 1] << 7)
                        value_length, p = (b >> 1) ^ -(b & 1), p + 2
                    else:
                        value_length, p = read_varint(data, p)
                    if value_length < 0:
                        value = None
                    else:
                        value = data[p : p + (value_length if value_length < head else head)]
                        p += value_length
                    if p > at:
                        raise IndexError
                    yield i, key, value
            except IndexError:
                raise InvalidBatch("truncated record") from None
            except InvalidBatch:
                raise
            except Exception as exc:  # a codec's own error on corrupt data
                raise InvalidBatch(f"cannot decompress the records: {exc}") from None
        pos += h.size


# ---------------------------------------------------------------------------------------
# Writing batches


def compress(codec: int, data: bytes) -> bytes:
    """Compress a record payload with the batch's codec, in a form every Kafka client reads."""
    if codec == 0:
        return data
    if codec == 1:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if codec == 2:  # xerial framing, as the Java client writes (librdkafka and kafka-python read it)
        import cramjam

        parts = [_XERIAL_HEADER]
        for i in range(0, len(data), _SNAPPY_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[i : i + _SNAPPY_BLOCK]))
            parts.append(_I32.pack(len(block)))
            parts.append(block)
        return b"".join(parts)
    if codec == 3:  # LZ4 frame, independent 64 KiB blocks (the Java client cannot read linked ones)
        import lz4.frame

        return lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False,
                                  content_checksum=False, store_size=False)
    if codec == 4:
        import cramjam

        return bytes(cramjam.zstd.compress(data))
    raise InvalidBatch(f"unknown compression codec {codec}")


def _finish(h: BatchHeader, attributes: int, base_ts: int, max_ts: int, count: int, payload: bytes) -> bytes:
    length = HEADER_SIZE - LOG_OVERHEAD + len(payload)
    out = bytearray(HEADER.pack(h.base_offset, length, h.partition_leader_epoch, 2, 0, attributes,
                                h.last_offset_delta, base_ts, max_ts, h.producer_id, h.producer_epoch,
                                h.base_sequence, count))
    out += payload
    _U32.pack_into(out, 17, crc32c.crc32c(memoryview(out)[21:]))
    return bytes(out)


def rebuild_batch(
    h: BatchHeader, data: bytes, kept: list[Record], *, delete_horizon: int | None = None
) -> bytes:
    """The batch ``h`` holding only ``kept`` (a non-empty, ordered subset of its records).

    ``delete_horizon`` sets Kafka's delete horizon on a batch that has none yet.
    """
    attributes = h.attributes
    base_ts = h.base_timestamp
    log_append = bool(attributes & ATTR_TIMESTAMP_TYPE)
    reencode = delete_horizon is not None and h.delete_horizon is None and not log_append
    if delete_horizon is not None and h.delete_horizon is None:
        attributes |= ATTR_DELETE_HORIZON
        base_ts = delete_horizon
    parts = []
    for r in kept:
        if reencode:
            ts_delta = zigzag(r.timestamp - base_ts)
            body = data[r.attrs_at : r.attrs_at + 1] + ts_delta + data[r.rest_at : r.end]
            parts.append(zigzag(len(body)))
            parts.append(body)
        else:
            parts.append(data[r.start : r.end])
    max_ts = h.max_timestamp if log_append else max(r.timestamp for r in kept)
    return _finish(h, attributes, base_ts, max_ts, len(kept), compress(h.codec, b"".join(parts)))


def empty_batch(h: BatchHeader) -> bytes:
    """Kafka's ``writeEmptyHeader``: the batch with no records, kept for its producer's sequence."""
    attributes = h.attributes & (ATTR_TIMESTAMP_TYPE | ATTR_TRANSACTIONAL | ATTR_CONTROL)
    return _finish(h, attributes, NO_TIMESTAMP, h.max_timestamp, 0, b"")
