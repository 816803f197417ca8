"""A tiny blocking Kafka wire client for tests that need exact bytes (raw frames, odd versions).

Independent of brokerd's own codec: requests are encoded with kio's writers, record batches
are built here from the spec.
"""

from __future__ import annotations

import io
import socket
import struct
import time

import crc32c
from kio.index import load_payload_module
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

# Apache Kafka 4.1's ApiVersions ranges for the APIs brokerd serves. Produce keeps v0-2 in the
# range as Kafka does (librdkafka needs them listed) and refuses them.
KAFKA_41 = {
    0: (0, 13),
    1: (4, 18),
    2: (1, 10),
    3: (0, 13),
    8: (2, 9),
    9: (1, 9),
    10: (0, 6),
    11: (0, 9),
    12: (0, 4),
    13: (0, 5),
    14: (0, 5),
    15: (0, 6),
    16: (0, 5),
    17: (0, 1),
    18: (0, 4),
    19: (2, 7),
    20: (1, 6),
    21: (0, 2),
    22: (0, 5),
    23: (2, 4),
    24: (0, 5),
    25: (0, 4),
    26: (0, 5),
    27: (1, 1),
    28: (0, 5),
    29: (1, 3),
    30: (1, 3),
    31: (1, 3),
    32: (1, 4),
    33: (0, 2),
    35: (1, 4),
    36: (0, 2),
    37: (0, 3),
    42: (0, 2),
    43: (0, 2),
    44: (0, 1),
    45: (0, 1),
    46: (0, 0),
    47: (0, 0),
    48: (0, 1),
    49: (0, 1),
    60: (0, 2),
    61: (0, 0),
    65: (0, 0),
    66: (0, 1),
    68: (0, 1),
    69: (0, 1),
    71: (0, 0),
    72: (0, 0),
    74: (0, 1),
    75: (0, 0),
}


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


def _varint(n: int) -> bytes:
    return _uvarint((n << 1) ^ (n >> 63))


def make_batch(
    records: list[tuple[bytes | None, bytes | None]], *, timestamp: int | None = None, base_offset: int = 0
) -> bytes:
    """An uncompressed v2 record batch with correct CRC-32C."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = bytearray(b"\x00")  # attributes
        rec += _varint(0)  # timestamp delta
        rec += _varint(i)  # offset delta
        for part in (key, value):
            if part is None:
                rec += _varint(-1)
            else:
                rec += _varint(len(part)) + part
        rec += _varint(0)  # headers
        body += _varint(len(rec)) + rec
    n = len(records)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, ts, ts, -1, -1, -1, n) + bytes(body)
    crc = crc32c.crc32c(after_crc)
    batch_len = 4 + 1 + 4 + len(after_crc)  # leader epoch + magic + crc + rest
    return struct.pack(">qiibI", base_offset, batch_len, -1, 2, crc) + after_crc


def request_class(api_key: int, version: int):
    mod = load_payload_module(api_key, version, EntityType.request)
    return next(v for v in vars(mod).values() if getattr(v, "__type__", None) is EntityType.request)


def response_class(api_key: int, version: int):
    mod = load_payload_module(api_key, version, EntityType.response)
    return next(v for v in vars(mod).values() if getattr(v, "__type__", None) is EntityType.response)


def encode(entity) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


class Wire:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self, api_key: int, version: int, flexible: bool, client_id: str = "wire-test") -> bytes:
        self.corr += 1
        cid = client_id.encode()
        head = struct.pack(">hhih", api_key, version, self.corr, len(cid)) + cid
        return head + (b"\x00" if flexible else b"")

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def send(self, entity, *, body: bytes | None = None) -> int:
        cls = type(entity)
        payload = self.header(cls.__api_key__, cls.__version__, cls.__flexible__)
        payload += encode(entity) if body is None else body
        self.send_raw(payload)
        return self.corr

    def recv_frame(self) -> bytes | None:
        """One response frame, or None if the broker closed the connection."""
        head = self._recv_exactly(4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        return self._recv_exactly(size)

    def _recv_exactly(self, n: int) -> bytes | None:
        chunks = []
        while n:
            try:
                chunk = self.sock.recv(n)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv(self, api_key: int, version: int):
        frame = self.recv_frame()
        if frame is None:
            return None
        cls = response_class(api_key, version)
        flexible_header = cls.__flexible__ and api_key != 18
        offset = 5 if flexible_header else 4
        value, _ = entity_reader(cls)(frame, offset)
        return value

    def request(self, entity):
        self.send(entity)
        return self.recv(type(entity).__api_key__, type(entity).__version__)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
