"""Hand-written codecs for the hot path: Produce requests/responses and Fetch responses.

Produce records are returned as writable memoryview slices of the request frame (a
bytearray), so batches are validated, stamped and written without copying. Fetch responses
are returned as a list of buffers so stored batches go to the socket without a copy.
Tests check both against kio's encoders for every version.
"""

from __future__ import annotations

import os
import struct
import uuid
from typing import NamedTuple

from brokerd.protocol.framing import FrameError
from brokerd.protocol.framing import read_uvarint as read_unsigned_varint

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HI = struct.Struct(">hi")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_UV_CACHE = [_uvarint(i) for i in range(256)]


def uvarint(n: int) -> bytes:
    return _UV_CACHE[n] if n < 256 else _uvarint(n)


class ProduceRequest:
    __slots__ = ("acks", "timeout_ms", "topics", "transactional_id")

    def __init__(self, transactional_id: str | None, acks: int, timeout_ms: int, topics: list) -> None:
        self.transactional_id = transactional_id
        self.acks = acks
        self.timeout_ms = timeout_ms
        # [(name, [(partition, memoryview | None)])]; from v13 (KIP-516) a topic is named by its
        # id: the first item is then a uuid.UUID
        self.topics = topics


def _skip_tags(buf: memoryview, pos: int) -> int:
    count, size = read_unsigned_varint(buf, pos)
    pos += size
    for _ in range(count):
        _tag, size = read_unsigned_varint(buf, pos)
        pos += size
        length, size = read_unsigned_varint(buf, pos)
        pos += size + length
    return pos


def decode_produce(frame: bytearray, pos: int, version: int) -> ProduceRequest:
    """Decode a Produce request v3-13 body starting at ``pos``."""
    buf = memoryview(frame)
    end = len(frame)
    flexible = version >= 9
    by_id = version >= 13

    def string(pos: int, nullable: bool) -> tuple[str | None, int]:
        if flexible:
            n, size = read_unsigned_varint(buf, pos)
            pos += size
            n -= 1
        else:
            (n,) = _I16.unpack_from(buf, pos)
            pos += 2
        if n < 0:
            if not nullable:
                raise FrameError("null string")
            return None, pos
        if pos + n > end:
            raise FrameError("string overruns the frame")
        return bytes(buf[pos : pos + n]).decode("utf-8"), pos + n

    def array_len(pos: int) -> tuple[int, int]:
        if flexible:
            n, size = read_unsigned_varint(buf, pos)
            n -= 1
            pos += size
        else:
            (n,) = _I32.unpack_from(buf, pos)
            pos += 4
        if n < 0 or n > end:
            raise FrameError("bad array length")
        return n, pos

    txn, pos = string(pos, True)
    acks, timeout = _HI.unpack_from(buf, pos)
    pos += 6
    n_topics, pos = array_len(pos)
    topics = []
    for _ in range(n_topics):
        if by_id:
            if pos + 16 > end:
                raise FrameError("topic id overruns the frame")
            name = uuid.UUID(bytes=bytes(buf[pos : pos + 16]))
            pos += 16
        else:
            name, pos = string(pos, False)
        n_parts, pos = array_len(pos)
        parts = []
        for _ in range(n_parts):
            (index,) = _I32.unpack_from(buf, pos)
            pos += 4
            if flexible:
                n, size = read_unsigned_varint(buf, pos)
                pos += size
                n -= 1
            else:
                (n,) = _I32.unpack_from(buf, pos)
                pos += 4
            if n < 0:
                records = None
            else:
                if pos + n > end:
                    raise FrameError("records overrun the frame")
                records = buf[pos : pos + n]
                pos += n
            if flexible:
                pos = _skip_tags(buf, pos)
            parts.append((index, records))
        if flexible:
            pos = _skip_tags(buf, pos)
        topics.append((name, parts))
    if flexible:
        pos = _skip_tags(buf, pos)
    if pos > end:
        raise FrameError("produce request overruns the frame")
    return ProduceRequest(txn, acks, timeout, topics)


def _str(s: str | None, flexible: bool) -> bytes:
    if s is None:
        return b"\x00" if flexible else b"\xff\xff"
    raw = s.encode("utf-8")
    return (uvarint(len(raw) + 1) if flexible else _I16.pack(len(raw))) + raw


def _arr(n: int, flexible: bool) -> bytes:
    return uvarint(n + 1) if flexible else _I32.pack(n)


_PART_V3 = struct.Struct(">ihqq")  # index, error, base offset, log append time
_PART_V5 = struct.Struct(">ihqqq")  # + log start offset


def encode_produce_response(
    version: int, topics: list, throttle_ms: int = 0, record_errors: dict | None = None
) -> bytes:
    """``topics``: [(name, [(index, error, base_offset, log_append_time, log_start, error_message)])];
    from v13 each topic is named by its id (a uuid.UUID in place of the name).

    ``record_errors``: {(name, index): [(batch_index, message)]} for refused records (v8+).
    """
    flexible = version >= 9
    out = [_arr(len(topics), flexible)]
    for name, parts in topics:
        out.append(name.bytes if version >= 13 else _str(name, flexible))
        out.append(_arr(len(parts), flexible))
        for index, error, base, lat, start, message in parts:
            if version >= 5:
                out.append(_PART_V5.pack(index, error, base, lat, start))
            else:
                out.append(_PART_V3.pack(index, error, base, lat))
            if version >= 8:
                errors = record_errors.get((name, index)) if record_errors else None
                if errors:
                    out.append(_arr(len(errors), flexible))
                    for batch_index, batch_message in errors:
                        out.append(_I32.pack(batch_index))
                        out.append(_str(batch_message, flexible))
                        if flexible:
                            out.append(b"\x00")
                else:
                    out.append(_arr(0, flexible))  # record_errors
                out.append(_str(message, flexible))
            if flexible:
                out.append(b"\x00")
        if flexible:
            out.append(b"\x00")
    out.append(_I32.pack(throttle_ms))
    if flexible:
        out.append(b"\x00")
    return b"".join(out)


_FP_V4 = struct.Struct(">ihqq")  # partition, error, high watermark, last stable offset
_Q = struct.Struct(">q")
_ABORTED = struct.Struct(">qq")  # producer id, first offset
_FETCH_TOP_V7 = struct.Struct(">ihi")  # throttle, error, session id


class FileRange:
    """Record bytes still in a segment file: a private descriptor (a dup, so retention,
    compaction and roll may close or delete the segment meanwhile), position and size.

    ``records`` is the record count of its whole batches (for metering without reading them).
    The descriptor closes with the object.
    """

    __slots__ = ("fd", "pos", "records", "size")

    def __init__(self, fd: int, pos: int, size: int, records: int) -> None:
        self.fd = fd
        self.pos = pos
        self.size = size
        self.records = records

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        """The bytes themselves (the copying path); raises OSError if the file lost them."""
        data = os.pread(self.fd, self.size, self.pos)
        if len(data) != self.size:
            raise OSError(f"segment file shrank under a fetch ({len(data)} of {self.size} bytes)")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    __del__ = close


class FetchedPartition(NamedTuple):
    """One partition of a Fetch response, as the encoder writes it."""

    partition: int
    error: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes | FileRange  # whole batches; empty (never null) for an error
    #: (producer id, first offset) of the aborted transactions in the range (read_committed)
    aborted: list[tuple[int, int]] | None = None


class FetchedTopic(NamedTuple):
    name: str
    topic_id: uuid.UUID | None
    partitions: list[FetchedPartition]


def encode_fetch_response(
    version: int, topics: list[FetchedTopic], throttle_ms: int = 0, error: int = 0, session_id: int = 0
) -> tuple[list, int]:
    """The response body for ``topics``.

    Returns (buffers, total size). Records are never written null (None is sent empty), as
    Kafka's FetchResponse does: librdkafka rejects a null record set as a parse failure.
    v13+ name each topic by id only (a missing id is the zero UUID), older versions by name.
    """
    flexible = version >= 12
    parts: list = []
    head = bytearray()
    if version >= 7:
        head += _FETCH_TOP_V7.pack(throttle_ms, error, session_id)
    else:
        head += _I32.pack(throttle_ms)
    head += _arr(len(topics), flexible)
    for name, topic_id, partitions in topics:
        if version >= 13:
            head += (topic_id or uuid.UUID(int=0)).bytes
        else:
            head += _str(name, flexible)
        head += _arr(len(partitions), flexible)
        for fetched in partitions:
            partition, perr, hw, lso, log_start, records = fetched[:6]
            aborted = fetched[6] if len(fetched) > 6 else None
            head += _FP_V4.pack(partition, perr, hw, lso)
            if version >= 5:
                head += _Q.pack(log_start)
            if aborted:
                head += _arr(len(aborted), flexible)
                for producer_id, first_offset in aborted:
                    head += _ABORTED.pack(producer_id, first_offset)
                    if flexible:
                        head += b"\x00"
            else:
                head += _arr(0, flexible)  # aborted transactions: none
            if version >= 11:
                head += _I32.pack(-1)  # preferred read replica
            n = len(records) if records is not None else 0
            if flexible:
                head += uvarint(n + 1)
            else:
                head += _I32.pack(n)
            if n > 0:
                parts.append(bytes(head))
                parts.append(records)
                head = bytearray()
            if flexible:
                head += b"\x00"
        if flexible:
            head += b"\x00"
    if flexible:
        head += b"\x00"
    parts.append(bytes(head))
    return parts, sum(len(p) for p in parts)
