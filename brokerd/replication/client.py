"""A broker's own Kafka client for talking to other brokers (follower fetches, requests
forwarded to the controller): one connection, one request in flight, kio's codec.

Requests and responses are kio entities of a given version; the header is request header
v1 (v2 for flexible versions) and the response header v0 (v1 when flexible; ApiVersions
always answers with v0, KIP-511). A broken connection fails the request in flight with
BrokerUnavailable and is opened again by the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from typing import Any, NamedTuple

from brokerd.protocol import kio_adapter

_HEADER = struct.Struct(">hhih")
_SIZE = struct.Struct(">i")
_CORRELATION = struct.Struct(">i")
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


class BrokerUnavailable(Exception):
    """The other broker could not be reached, or the connection broke mid-request."""

    def __init__(self, message: str, *, refused: bool = False, lost: bool = False) -> None:
        super().__init__(message)
        self.refused = refused  # the connection was refused: nothing listens at the address
        self.lost = lost  # an open connection broke (the other end closed it or died)


class LeaderAddress(NamedTuple):
    """A listener followers fetch through, and how they log in to it."""

    host: str
    port: int
    sasl_plain: tuple[str, str] | None  # (user, password) for a SASL listener
    ca_file: str | None  # set for a SASL_SSL listener: the CA that verifies its certificate


class BrokerConnection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        timeout: float = 10.0,
        sasl_plain: tuple[str, str] | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sasl_plain = sasl_plain  # (user, password) for a SASL listener
        self.ca_file = ca_file  # TLS, verified against this CA, when set
        self.client_id = client_id.encode()
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"BrokerConnection({self.host}:{self.port})"

    @property
    def busy(self) -> bool:
        """A request is in flight (or waiting for the connection)."""
        return self._lock.locked()

    async def _connect(self) -> None:
        try:
            tls = None
            if self.ca_file is not None:
                # the platform's broker certificates name their hosts' addresses
                tls = ssl.create_default_context(cafile=self.ca_file)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as what it waits for completes, and a follower's fetcher, cancelled as the
            # broker stops, then fetched on for ever (the process never exited).
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, ssl=tls, server_hostname=self.host if tls else None
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            refused = isinstance(exc, ConnectionRefusedError)
            message = f"cannot connect to {self.host}:{self.port}: {exc}"
            raise BrokerUnavailable(message, refused=refused) from exc
        if self.sasl_plain is not None:
            await self._authenticate(*self.sasl_plain)

    async def _authenticate(self, user: str, password: str) -> None:
        """SASL/PLAIN (SaslHandshake v1, then SaslAuthenticate v2), as any Kafka client."""
        try:
            handshake = await self._exchange(kio_adapter.request_class(17, 1)(mechanism="PLAIN"))
            if handshake.error_code:
                raise BrokerUnavailable(f"{self.host}:{self.port}: no SASL/PLAIN ({handshake.error_code})")
            token = b"\0" + user.encode() + b"\0" + password.encode()
            answer = await self._exchange(kio_adapter.request_class(36, 2)(auth_bytes=token))
            if answer.error_code:
                raise BrokerUnavailable(
                    f"{self.host}:{self.port} refused the inter-broker credentials: {answer.error_message}"
                )
        except BaseException:
            await self.close()
            raise

    def _frame(self, entity: Any) -> bytes:
        cls = type(entity)
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        header = _HEADER.pack(cls.__api_key__, cls.__version__, self._correlation, len(self.client_id))
        header += self.client_id
        if kio_adapter.is_flexible_request(cls.__api_key__, cls.__version__):
            header += b"\x00"  # no tagged fields
        payload = header + kio_adapter.encode(entity)
        return _SIZE.pack(len(payload)) + payload

    async def request(self, entity: Any, *, timeout: float | None = None) -> Any:
        """Send ``entity`` and return the decoded response of the same API and version."""
        async with self._lock:
            if self._writer is None:
                await self._connect()
            return await self._exchange(entity, timeout)

    async def _exchange(self, entity: Any, timeout: float | None = None) -> Any:
        """One request and its response on the open connection (the caller holds the lock)."""
        cls = type(entity)
        if self._reader is None or self._writer is None:
            raise BrokerUnavailable(f"{self.host}:{self.port}: the connection is closed")
        frame = self._frame(entity)
        correlation = self._correlation
        try:
            self._writer.write(frame)
            await self._writer.drain()
            async with asyncio.timeout(timeout or self.timeout):  # see _connect
                body = await self._read_frame()
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            await self.close()
            message = f"{self.host}:{self.port}: {exc or type(exc).__name__}"
            raise BrokerUnavailable(message, lost=True) from exc
        (answered,) = _CORRELATION.unpack_from(body, 0)
        if answered != correlation:
            await self.close()
            raise BrokerUnavailable(f"{self.host}:{self.port}: answer {answered} to request {correlation}")
        offset = 5 if kio_adapter.is_flexible_response(cls.__api_key__, cls.__version__) else 4
        response_cls = kio_adapter.response_class(cls.__api_key__, cls.__version__)
        return kio_adapter.decode_entity(response_cls, body, offset)

    async def _read_frame(self) -> bytes:
        assert self._reader is not None
        (size,) = _SIZE.unpack(await self._reader.readexactly(4))
        if not 4 <= size <= MAX_RESPONSE_BYTES:
            raise OSError(f"response frame of {size} bytes")
        return await self._reader.readexactly(size)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)
