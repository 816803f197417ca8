"""A minimal ack-only Kafka sink and endless source: the benchmark's baseline.

Just enough Kafka for a producer and an assigned consumer: ApiVersions 0-3, Metadata 0-8,
Produce 3-8 and Fetch 4. Produce is acknowledged with increasing offsets and the bytes are
dropped; Fetch answers from any offset with copies of one pre-built batch of 1 KB records (an
endless partition), so a consumer's figure against it is what the consuming client itself can
take. Both are the ceiling set by the client, the loopback and Python's asyncio — what
``bench/brokerd_bench.py`` compares brokers with. Everything is hand-encoded (no kio) to keep
the sink as cheap as a Python broker can be.

    python bench/ack_sink.py --port 0 --topic bench1=1 --topic bench6=6

prints ``LISTENING <port>`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HEAD = struct.Struct(">hhi")

API_VERSIONS, METADATA, PRODUCE, FETCH = 18, 3, 0, 1
SUPPORTED = {PRODUCE: (0, 8), METADATA: (0, 8), API_VERSIONS: (0, 3), FETCH: (4, 4)}
_BATCH_HEAD = struct.Struct(">qiibIhiqqqhii")
RECORDS_PER_BATCH = 64
ENDLESS = 1 << 60  # the endless partitions' high watermark


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def record_batch(value: bytes, count: int) -> bytes:
    """One v2 record batch (CRC-32C correct) of ``count`` keyless records; base offset 0."""
    import crc32c

    records = b""
    for i in range(count):
        body = b"\0" + _varint(0) + _varint(i) + _varint(-1) + _varint(len(value)) + value + _varint(0)
        records += _varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, count - 1, 0, 0, -1, -1, -1, count) + records
    crc = crc32c.crc32c(after_crc)
    length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, length, 0, 2, crc) + after_crc


def _string(s: str | None) -> bytes:
    if s is None:
        return _I16.pack(-1)
    b = s.encode()
    return _I16.pack(len(b)) + b


class Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def i16(self) -> int:
        (v,) = _I16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return v

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def nbytes(self) -> memoryview | None:
        n = self.i32()
        if n < 0:
            return None
        v = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return v


def api_versions_body(version: int) -> bytes:
    if version > 3:
        keys = [(API_VERSIONS, *SUPPORTED[API_VERSIONS])]
        body = _I16.pack(35) + _I32.pack(len(keys)) + b"".join(struct.pack(">hhh", *k) for k in keys)
        return body
    keys = sorted((k, lo, hi) for k, (lo, hi) in SUPPORTED.items())
    if version == 3:
        return (_I16.pack(0) + bytes([len(keys) + 1])
                + b"".join(struct.pack(">hhhB", *k, 0) for k in keys) + _I32.pack(0) + b"\0")
    body = _I16.pack(0) + _I32.pack(len(keys)) + b"".join(struct.pack(">hhh", *k) for k in keys)
    if version >= 1:
        body += _I32.pack(0)
    return body


class Sink:
    def __init__(self, topics: dict[str, int], default_partitions: int, host: str) -> None:
        self.topics = topics
        self.default_partitions = default_partitions
        self.host = host
        self.port = 0
        self.offsets: dict[tuple[str, int], int] = {}
        self.batch = record_batch(b"x" * 1024, RECORDS_PER_BATCH)

    def fetch_body(self, r: Reader) -> bytes:
        """Fetch v4: every partition answers from its fetch offset with whole copies of the batch."""
        r.i32()  # replica id
        r.i32()  # max wait
        r.i32()  # min bytes
        budget = r.i32()
        r.buf[r.pos]  # isolation level
        r.pos += 1
        out = [_I32.pack(0), _I32.pack(r.i32())]
        topics = _I32.unpack_from(out[1])[0]
        size = len(self.batch)
        tail = self.batch[8:]
        for _ in range(topics):
            name = r.string()
            nparts = r.i32()
            out.append(_string(name) + _I32.pack(nparts))
            for _ in range(nparts):
                index = r.i32()
                (offset,) = struct.unpack_from(">q", r.buf, r.pos)
                r.pos += 8
                limit = min(r.i32(), budget)
                n = max(1, limit // size)
                budget -= n * size
                data = b"".join(
                    struct.pack(">q", offset + i * RECORDS_PER_BATCH) + tail for i in range(n)
                )
                out.append(struct.pack(">ihqqi", index, 0, ENDLESS, ENDLESS, 0) + _I32.pack(len(data)) + data)
        return b"".join(out)

    def metadata_body(self, r: Reader, version: int) -> bytes:
        n = r.i32()
        names = None if n < 0 else [r.string() for _ in range(n)]
        if names is None or (version == 0 and not names):
            names = sorted(self.topics)
        out = [_I32.pack(0)] if version >= 3 else []
        broker = _I32.pack(1) + _string(self.host) + _I32.pack(self.port)
        if version >= 1:
            broker += _string(None)
        out.append(_I32.pack(1) + broker)
        if version >= 2:
            out.append(_string("ack-sink-cluster"))
        if version >= 1:
            out.append(_I32.pack(1))
        out.append(_I32.pack(len(names)))
        for name in names:
            count = self.topics.setdefault(name, self.default_partitions)
            t = _I16.pack(0) + _string(name)
            if version >= 1:
                t += b"\0"
            t += _I32.pack(count)
            for p in range(count):
                t += _I16.pack(0) + _I32.pack(p) + _I32.pack(1)
                if version >= 7:
                    t += _I32.pack(0)
                t += _I32.pack(1) + _I32.pack(1) + _I32.pack(1) + _I32.pack(1)
                if version >= 5:
                    t += _I32.pack(0)
            if version >= 8:
                t += _I32.pack(-2147483648)
            out.append(t)
        if version >= 8:
            out.append(_I32.pack(-2147483648))
        return b"".join(out)

    def produce_body(self, r: Reader, version: int) -> bytes | None:
        r.string()  # transactional id
        acks = r.i16()
        r.i32()  # timeout
        out = [_I32.pack(r.i32())]
        topics_left = struct.unpack_from(">i", out[0])[0]
        for _ in range(topics_left):
            name = r.string()
            nparts = r.i32()
            out.append(_string(name) + _I32.pack(nparts))
            for _ in range(nparts):
                index = r.i32()
                records = r.nbytes()
                count = 0
                if records is not None:
                    pos = 0
                    total = len(records)
                    while pos + 61 <= total:
                        (length,) = _I32.unpack_from(records, pos + 8)
                        (n,) = _I32.unpack_from(records, pos + 57)
                        count += n
                        pos += 12 + length
                key = (name, index)
                base = self.offsets.get(key, 0)
                self.offsets[key] = base + count
                p = struct.pack(">ihqq", index, 0, base, -1)
                if version >= 5:
                    p += struct.pack(">q", 0)
                if version >= 8:
                    p += _I32.pack(0) + _I16.pack(-1)
                out.append(p)
        out.append(_I32.pack(0))
        return None if acks == 0 else b"".join(out)


class SinkProtocol(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        out = []
        try:
            while len(buf) - pos >= 4:
                (size,) = _I32.unpack_from(buf, pos)
                if size < 8 or size > 200 * 1024 * 1024:
                    raise ValueError("bad frame size")
                if len(buf) - pos - 4 < size:
                    break
                frame = bytes(buf[pos + 4:pos + 4 + size])
                pos += 4 + size
                reply = self.handle(frame)
                if reply is not None:
                    out.append(reply)
        except Exception:
            assert self.transport is not None
            self.transport.close()
            return
        finally:
            if pos:
                del buf[:pos]
        if out:
            assert self.transport is not None
            self.transport.writelines(out)

    def handle(self, frame: bytes) -> bytes | None:
        api_key, version, corr = _HEAD.unpack_from(frame, 0)
        r = Reader(frame, 8)
        r.string()  # client id
        lo_hi = SUPPORTED.get(api_key)
        if lo_hi is None:
            raise ValueError("unsupported api")
        if api_key == API_VERSIONS:
            body = api_versions_body(version)
            return _I32.pack(len(body) + 4) + _I32.pack(corr) + body
        if not lo_hi[0] <= version <= lo_hi[1]:
            raise ValueError("unsupported version")
        if api_key == METADATA:
            body = self.sink.metadata_body(r, version)
        elif api_key == FETCH:
            body = self.sink.fetch_body(r)
        else:
            if version < 3:
                raise ValueError("produce v0-2 refused")
            body = self.sink.produce_body(r, version)
            if body is None:
                return None
        return _I32.pack(len(body) + 4) + _I32.pack(corr) + body


async def serve(host: str, port: int, topics: dict[str, int], default_partitions: int) -> None:
    sink = Sink(topics, default_partitions, host)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(sink), host, port, reuse_address=True)
    sink.port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {sink.port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--partitions", type=int, default=1, help="partitions of topics not listed")
    ap.add_argument("--topic", action="append", default=[], help="NAME=PARTITIONS")
    args = ap.parse_args(argv)
    topics = {}
    for item in args.topic:
        name, _, n = item.partition("=")
        topics[name] = int(n or 1)
    try:  # uvloop as brokerd: asyncio's own transports copy a large response's unsent tail per send
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.host, args.port, topics, args.partitions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
