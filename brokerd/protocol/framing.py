"""Frame and header helpers (sans-IO)."""

from __future__ import annotations

import struct

SIZE = struct.Struct(">i")
HEAD = struct.Struct(">hhi")
_I16 = struct.Struct(">h")
_CORR = struct.Struct(">ii")
_CORR_TAG = struct.Struct(">iiB")


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    """(value, bytes consumed) of an unsigned varint; works on any buffer, writable or not."""
    b = buf[pos]
    if b < 0x80:
        return b, 1
    result = b & 0x7F
    shift = 7
    i = pos + 1
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i - pos
        shift += 7
        if shift > 63:
            raise FrameError("varint is too long")


class FrameError(Exception):
    """The frame cannot be parsed; the connection is closed."""


class RawBody:
    """A pre-encoded response body: a list of buffers written without copying."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: list, size: int | None = None) -> None:
        self.parts = parts
        self.size = sum(len(p) for p in parts) if size is None else size


def parse_request_header(frame: bytes, flexible: bool) -> tuple[str | None, int]:
    """(client_id, body offset) of a request frame whose first 8 bytes were already read."""
    if len(frame) < 10:
        raise FrameError("request header is truncated")
    (n,) = _I16.unpack_from(frame, 8)
    pos = 10
    client_id = None
    if n >= 0:
        if pos + n > len(frame):
            raise FrameError("client id overruns the frame")
        client_id = frame[pos : pos + n].decode("utf-8", "replace")
        pos += n
    if flexible:
        try:
            count, size = read_uvarint(frame, pos)
            pos += size
            for _ in range(count):
                _tag, size = read_uvarint(frame, pos)
                pos += size
                length, size = read_uvarint(frame, pos)
                pos += size + length
        except Exception as exc:
            raise FrameError(f"bad request header tagged fields: {exc}") from None
        if pos > len(frame):
            raise FrameError("request header tagged fields overrun the frame")
    return client_id, pos


def response_prefix(correlation_id: int, flexible_header: bool, body_size: int) -> bytes:
    """Size prefix + response header."""
    if flexible_header:
        return _CORR_TAG.pack(body_size + 5, correlation_id, 0)
    return _CORR.pack(body_size + 4, correlation_id)
