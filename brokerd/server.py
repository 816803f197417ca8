"""Listeners, framing and the per-connection request loop.

Each connection parses frames as they arrive and dispatches them in order. Handlers may
complete later (acks=all, fetch long-polls); responses are still written in request order.
The number of requests in flight per connection is bounded: past the bound the connection
stops reading until responses drain.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import struct
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from brokerd.api import response_error_counts, with_throttle
from brokerd.context import RequestContext
from brokerd.errors import CloseConnection
from brokerd.protocol import kio_adapter
from brokerd.protocol.fastpath import FileRange
from brokerd.protocol.framing import (
    HEAD,
    SIZE,
    FrameError,
    RawBody,
    parse_request_header,
    response_prefix,
)
from brokerd.settings import Listener

if TYPE_CHECKING:
    from brokerd.broker import Broker

log = logging.getLogger("brokerd.server")

API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36


class _Slot:
    __slots__ = ("close_after", "held", "parts", "ready")

    def __init__(self) -> None:
        self.ready = False
        self.parts: list | None = None
        self.close_after = False
        self.held = 0  # bytes of this ready response waiting behind an unfinished earlier one


# Reads land in a scratch buffer of this size; a frame larger than it that has not all arrived
# gets a buffer of its own that the transport reads the rest into, so a large Produce frame is
# copied once (socket to its buffer) instead of appended to the stream buffer and sliced out.
READ_BYTES = 256 * 1024
# A client that sends a large frame's size and little else must not make the broker allocate
# the whole frame, for each of its connections: frames above OWN_FRAME_MAX (Produce requests
# are about 1 MB, the clients' max.request.size), and any while the buffers of frames not yet
# complete hold OWN_FRAMES_BYTES in all, are gathered as they arrive, as small ones are.
OWN_FRAME_MAX = 8 * 1024 * 1024
OWN_FRAMES_BYTES = 16 * 1024 * 1024
# One scratch buffer per event-loop thread, shared by its connections: a read is taken out of
# it (buffer_updated) before the loop runs anything else. Also the loop's spare frame buffer
# and the bytes its connections' incomplete own-buffer frames hold.
_scratch = threading.local()


def _read_scratch() -> memoryview:
    view = getattr(_scratch, "view", None)
    if view is None:
        view = _scratch.view = memoryview(bytearray(READ_BYTES))
        _scratch.own_frames = 0
    return view


def _holders(buf: bytearray) -> int:
    return sys.getrefcount(buf)


# What _holders reports of the loop's spare frame buffer when nothing else refers to it (the
# count includes the call's own references, which differ between Python versions).
_scratch.spare = bytearray(1)
_UNSHARED = _holders(_scratch.spare)
del _scratch.spare


def _frame_buffer(size: int) -> bytearray:
    """A buffer of ``size`` bytes for a large frame, every byte of which the socket then fills.

    The last large frame's buffer is taken again when nothing else refers to it any more (its
    handler, and whatever the handler passed its records to, are done with it) and it is big
    enough without reallocating: a Produce stream then does not allocate and zero a new
    megabyte per request.
    """
    if getattr(_scratch, "spare", None) is not None and _holders(_scratch.spare) == _UNSHARED:
        spare = _scratch.spare
        room = spare.__alloc__()
        if room // 2 <= size < room:
            have = len(spare)
            if size < have:
                del spare[size:]
            elif size > have:
                spare.extend(bytes(size - have))
            return spare
    return bytearray(size)


# Responses queued in one turn of the loop are written once they reach this size (so that
# pause_writing still stops a pipelining client early).
WRITE_BATCH_BYTES = 256 * 1024
LISTEN_BACKLOG = 512  # connections the kernel holds for the broker until it accepts them


_IOV_MAX = 512


def _write_all(fd: int, chunk: list) -> list | None:
    """Write ``chunk`` (bytes-like parts) to the non-blocking socket ``fd``: None when all of
    it went, else the unsent rest (the socket would block)."""
    i = 0
    while i < len(chunk):
        batch = chunk[i : i + _IOV_MAX]
        want = sum(len(b) for b in batch)
        try:
            n = os.writev(fd, batch)
        except BlockingIOError:
            n = 0
        if n == want:
            i += len(batch)
            continue
        rest = []
        for b in chunk[i:]:
            if n >= len(b):
                n -= len(b)
                continue
            rest.append(memoryview(b)[n:] if n else b)
            n = 0
        return rest
    return None


def _sendfile_all(fd: int, part: FileRange) -> int:
    """sendfile ``part`` to the non-blocking socket ``fd``; returns the bytes sent (fewer: it would block)."""
    done = 0
    while done < part.size:
        try:
            n = os.sendfile(fd, part.fd, part.pos + done, part.size - done)
        except BlockingIOError:
            return done
        if n == 0:
            raise OSError("segment file shrank under a fetch")
        done += n
    return done


class Connection(asyncio.BufferedProtocol):
    def __init__(self, broker: Broker, listener: Listener, bound_port: int) -> None:
        self.broker = broker
        self.listener = listener
        self.port = bound_port
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buf = bytearray()  # received bytes not yet taken as frames
        self._scratch = _read_scratch()
        # A frame being read into its own buffer (it comes before anything in _buf), how much
        # of it has arrived, and whether the last buffer handed to the transport was its.
        self._frame: bytearray | None = None
        self._frame_got = 0
        self._into_frame = False
        self._pending: deque[_Slot] = deque()
        self._apis = broker.apis
        self._max_inflight = broker.config["max.inflight.requests.per.connection"]
        # Ready responses held back by an unfinished earlier request (responses go out in
        # order) are bounded in bytes too: a client cannot pile up fetch responses behind a
        # long poll. Past the bound the connection stops reading, as for the request count.
        self._held = 0
        self._max_held = broker.config["socket.request.max.bytes"]
        self._max_frame = broker.config["socket.request.max.bytes"]
        self._max_preauth = broker.config["sasl.server.max.receive.size"]
        self._blocked = False  # waiting on a barrier request (SASL)
        # Fetch records go from segment files to the socket by sendfile (plaintext only)
        self.zero_copy = bool(broker.config["fetch.zero.copy"]) and not listener.tls
        self._sock_fd = -1
        self._reading_paused = False
        self._writing_paused = False
        self.closed = False
        # resolved once the connection's latest Produce that waited for the transaction
        # coordinator's answer is appended: the next ones are appended after it, in order
        # (brokerd/handlers/produce.py)
        self.txn_verifying: asyncio.Future | None = None
        self.principal: str | None = None
        self.authenticated = not listener.sasl
        self.sasl_mechanism: str | None = None
        self.sasl_session: Any = None
        self.legacy_sasl = False
        self.last_active = time.monotonic()
        # what the client said it is in ApiVersions v3+ (client telemetry matches on it)
        self.client_software_name = ""
        self.client_software_version = ""
        # what the connection limits counted, released when the connection closes
        self._counted_ip: str | None = None
        self._counted_principal: str | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if self.zero_copy and sock is not None and not self.listener.tls:
            self._sock_fd = sock.fileno()
            self._zero_copy_counter = self.broker.metering.metrics.zero_copy_bytes
        else:
            self.zero_copy = False
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.broker.connections.add(self)
        ip = self.peer.rpartition(":")[0]
        if self.broker.quotas.connection_opened(ip, self.listener.name):  # connection limits
            self._counted_ip = ip
        else:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._frame is not None:  # never completed: its memory goes back to the budget
            _scratch.own_frames -= len(self._frame)
            self._frame = None
        self.broker.connections.discard(self)
        self._pending.clear()
        if self._counted_ip is not None:
            quotas = self.broker.quotas
            quotas.connection_closed(self._counted_ip, self.listener.name, self._counted_principal)
            self._counted_ip = self._counted_principal = None

    def authenticated_as(self, principal: str) -> None:
        """SASL succeeded: the connection acts as ``principal`` (closed if over its connection limit)."""
        self.principal = principal
        self.authenticated = True
        self.sasl_session = None
        self.legacy_sasl = False
        log.info("authenticated %s as %s (%s)", self.peer, principal, self.sasl_mechanism)
        error = self.broker.quotas.authenticated(principal)  # per-principal limit
        if error:
            self.close(error)
            return
        self._counted_principal = principal
        self.broker.metering.authenticated(principal)

    # --- KIP-219 muting (quotas) ----------------------------------------------
    _muted = False
    _mute_until = 0.0

    def mute(self, ms: int) -> None:
        """Read and process nothing more from this client for ``ms`` (responses still go out).

        Overlapping mutes (a byte-rate and a request-time throttle) end with the longest.
        """
        if ms <= 0 or self.closed:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + ms / 1000.0
        if until <= self._mute_until:
            return
        self._mute_until = until
        if not self._muted:
            self._muted = True
            self._update_reading()
        loop.call_at(until, self._unmute)

    def _unmute(self) -> None:
        if not self._muted or asyncio.get_running_loop().time() < self._mute_until:
            return  # a longer mute came later; its own timer unmutes
        self._muted = False
        if not self.closed:
            self._update_reading()
            self._process()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()
        self._process()

    def get_buffer(self, sizehint: int) -> memoryview:
        frame = self._frame
        self._into_frame = frame is not None and self._frame_got < len(frame)
        return memoryview(frame)[self._frame_got :] if self._into_frame else self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        if self._into_frame:
            self._frame_got += nbytes
            if self._frame_got < len(self._frame):
                return
        else:
            self._buf += self._scratch[:nbytes]
        self._process()

    def data_received(self, data: bytes) -> None:
        """Bytes already read (tests, the fuzzer): fed through the same buffers as the transport's reads."""
        view = memoryview(data)
        while view and not self.closed:
            into = self.get_buffer(len(view))
            n = min(len(into), len(view))
            into[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    # --- output: responses ready in one turn of the loop go out in one write ----------------
    _out: list | None = None
    _write_scheduled = False

    _out_bytes = 0

    def _queue_write(self, parts: list) -> None:
        if self.zero_copy:
            for part in parts:
                if type(part) is FileRange:
                    self._send_direct(parts)
                    return
        out = self._out
        if out is None:
            self._out = list(parts)
        else:
            out.extend(parts)
        for part in parts:
            self._out_bytes += len(part)
        if self._out_bytes >= WRITE_BATCH_BYTES:
            self._write_out()

    def _send_direct(self, parts: list) -> None:
        """Send ``parts`` (and everything queued before them) in order, file ranges by sendfile.

        Straight to the socket only while the transport holds nothing unsent: then no write
        of the transport can interleave with ours (we are its only writer, and the loop runs
        nothing else meanwhile). Once the socket would block, the rest (file ranges copied)
        goes through the transport as usual, behind what we wrote.
        """
        out = self._out or []
        self._out = None
        self._out_bytes = 0
        out.extend(parts)
        if self.closed:
            return
        direct = self.transport.get_write_buffer_size() == 0
        fd = self._sock_fd
        chunk: list = []
        sent_zero_copy = 0
        try:
            for part in out:
                if type(part) is not FileRange:
                    chunk.append(part)
                    continue
                if direct:
                    rest = _write_all(fd, chunk)
                    if rest is None:
                        chunk = []
                        done = _sendfile_all(fd, part)
                        sent_zero_copy += done
                        if done == part.size:
                            part.close()
                            continue
                        direct = False
                        chunk.append(os.pread(part.fd, part.size - done, part.pos + done))
                        if len(chunk[-1]) != part.size - done:
                            raise OSError("segment file shrank under a fetch")
                        part.close()
                        continue
                    direct = False
                    chunk = rest
                chunk.append(part.read())
                part.close()
        except OSError as exc:
            self.close(f"fetch response not sent: {exc}")
            return
        finally:
            if sent_zero_copy:
                self._zero_copy_counter.inc(sent_zero_copy)
        if direct:
            rest = _write_all(fd, chunk)
            chunk = [] if rest is None else rest
        if chunk:
            self._out = chunk
            self._out_bytes = sum(len(c) for c in chunk)

    def _write_out(self) -> None:
        self._write_scheduled = False
        out = self._out
        if out:
            self._out = None
            self._out_bytes = 0
            if not self.closed:
                self.transport.writelines(out)

    def _schedule_write(self) -> None:
        if self._out and not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_out)

    # --- frames ---------------------------------------------------------------------------
    def close(self, reason: str | None = None) -> None:
        if reason:
            log.info("closing connection from %s (%s): %s", self.peer, self.principal or "-", reason)
        if self._out and not self.closed and self.transport is not None:
            self._write_out()  # responses already ready go out before the close
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _update_reading(self) -> None:
        if self.transport is None or self.closed:
            return
        should_pause = (
            self._writing_paused
            or self._muted
            or self._blocked
            or len(self._pending) >= self._max_inflight
            or self._held > self._max_held
            or len(self._buf) > self._max_frame + 4
        )
        if should_pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        elif not should_pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def _process(self, write: bool = True) -> None:
        buf = self._buf
        pos = 0
        try:
            while (
                not self.closed
                and not self._blocked
                and not self._muted
                and len(self._pending) < self._max_inflight
                and self._held <= self._max_held
            ):
                if self._writing_paused:
                    break
                frame = self._frame
                if frame is not None:  # a frame read into its own buffer: next in order
                    if self._frame_got < len(frame):
                        break
                    self._frame = None
                    _scratch.own_frames -= len(frame)
                    self._handle_frame(frame if frame[:2] == b"\0\0" else bytes(frame))
                    _scratch.spare = frame
                    continue
                if len(buf) - pos < 4:
                    break
                (size,) = SIZE.unpack_from(buf, pos)
                limit = self._max_frame if self.authenticated else self._max_preauth
                if size < 0 or size > limit:
                    self.close(f"frame of {size} bytes refused (limit {limit})")
                    return
                if len(buf) - pos - 4 < size:
                    if READ_BYTES < size <= OWN_FRAME_MAX and _scratch.own_frames + size <= OWN_FRAMES_BYTES:
                        # the rest is read straight into the frame's own buffer
                        _scratch.own_frames += size
                        frame = self._frame = _frame_buffer(size)
                        got = len(buf) - pos - 4
                        frame[:got] = memoryview(buf)[pos + 4 :]
                        self._frame_got = got
                        pos = len(buf)
                    break
                if size >= 2 and buf[pos + 4] == 0 and buf[pos + 5] == 0:
                    frame = buf[
                        pos + 4 : pos + 4 + size
                    ]  # Produce: a bytearray, batches are stamped in place
                else:
                    frame = bytes(buf[pos + 4 : pos + 4 + size])  # kio wants read-only buffers
                pos += 4 + size
                self._handle_frame(frame)
        finally:
            if pos:
                del buf[:pos]
            if write and self._out:
                self._write_out()
            self._update_reading()

    def _handle_frame(self, frame: bytes) -> None:
        started = time.perf_counter()  # latency metrics and the request quota
        if self.legacy_sasl:
            self._legacy_sasl_token(frame)
            return
        if len(frame) < 8:
            self.close("truncated request header")
            return
        api_key, version, corr = HEAD.unpack_from(frame, 0)
        spec = self._apis.get(api_key)
        if spec is None:
            self.close(f"unknown api key {api_key}")
            return
        if not spec.min_version <= version <= spec.max_version:
            if api_key == API_VERSIONS:
                self._add_ready(corr, False, self.broker.api_versions_unsupported())
                return
            self.close(f"unsupported version {version} of api key {api_key}")
            return
        if version < spec.refuse_below:
            self.close(f"api key {api_key} version {version} is no longer supported; upgrade the client")
            return
        if not self.authenticated and not spec.pre_auth:
            self.close(f"api key {api_key} before SASL authentication")
            return
        try:
            flexible = kio_adapter.is_flexible_request(api_key, version)
            client_id, body = parse_request_header(frame, flexible)
            if spec.decode is not None:
                request = spec.decode(frame, body, version)
            else:
                request = kio_adapter.decode_request(api_key, version, frame, body)
        except (FrameError, kio_adapter.ProtocolError, struct.error, ValueError, IndexError) as exc:
            self.close(f"malformed request (api key {api_key} v{version}): {exc}")
            return
        ctx = RequestContext(self.broker, self, api_key, version, corr, client_id)
        ctx.started = started
        try:
            result = spec.handler(request, ctx)
        except CloseConnection as exc:
            self.close(str(exc))
            return
        except Exception:
            log.exception("handler for api key %d v%d failed; closing the connection", api_key, version)
            self.close()
            return
        flex_resp = self.broker.response_header_flexible(api_key, version)
        # the request-time quota (handler time of the synchronous part; waiting in
        # a long poll or for an fsync does not occupy the loop). Its throttle goes into the
        # response's throttle_time_ms (fast-path handlers put it there themselves).
        throttle = ctx.request_throttle()
        if isinstance(result, asyncio.Future) or (
            result is not None and not isinstance(result, bytes | RawBody) and inspect.isawaitable(result)
        ):
            slot = _Slot()
            self._pending.append(slot)
            if spec.barrier:
                self._blocked = True
            fut = result if isinstance(result, asyncio.Future) else asyncio.ensure_future(result)
            fut.add_done_callback(lambda f: self._complete(slot, f, ctx, flex_resp, spec.barrier))
        else:
            if throttle and result is not None:
                result = with_throttle(result, throttle)
            self._add_ready(corr, flex_resp, result, ctx.close_after)
            self._request_done(ctx, result)

    def _request_done(self, ctx: RequestContext, result: Any) -> None:
        errors = ctx.errors
        if errors is None and result is not None and hasattr(type(result), "__dataclass_fields__"):
            errors = response_error_counts(result)
        self.broker.metering.request_done(ctx.api_key, ctx.started, self.principal, errors)

    def _encode(self, corr: int, flexible: bool, result: Any) -> list | None:
        if result is None:
            return None
        if isinstance(result, RawBody):
            return [response_prefix(corr, flexible, result.size), *result.parts]
        if isinstance(result, bytes | bytearray):
            return [response_prefix(corr, flexible, len(result)), result]
        body = kio_adapter.encode(result)
        return [response_prefix(corr, flexible, len(body)), body]

    def _add_ready(self, corr: int, flexible: bool, result: Any, close_after: bool = False) -> None:
        slot = _Slot()
        try:
            slot.parts = self._encode(corr, flexible, result)
        except Exception:
            log.exception("cannot encode the response to correlation id %d; closing the connection", corr)
            slot.parts = None
            close_after = True
        slot.ready = True
        slot.close_after = close_after
        if not self._pending and not self.closed and not close_after:
            if slot.parts:
                self._queue_write(slot.parts)  # written at the end of _process
            return
        if self._pending and slot.parts:
            self._hold(slot)
        self._pending.append(slot)
        self._flush()

    def _complete(
        self, slot: _Slot, fut: asyncio.Future, ctx: RequestContext, flexible: bool, barrier: bool
    ) -> None:
        if self.closed:
            if not fut.cancelled():
                fut.exception()  # mark retrieved
            return
        try:
            result = fut.result()
            if ctx.request_throttle_ms > 0 and result is not None:
                result = with_throttle(result, ctx.request_throttle_ms)
            slot.parts = self._encode(ctx.correlation_id, flexible, result)
            slot.close_after = ctx.close_after
            self._request_done(ctx, result)
        except CloseConnection as exc:
            slot.parts = None
            slot.close_after = True
            log.info("closing connection from %s: %s", self.peer, exc)
        except Exception:
            log.exception(
                "handler for api key %d v%d failed; closing the connection", ctx.api_key, ctx.api_version
            )
            slot.parts = None
            slot.close_after = True
        slot.ready = True
        if barrier:
            self._blocked = False
        if slot.parts and self._pending and self._pending[0] is not slot:
            self._hold(slot)
        self._flush()
        if not self.closed:
            # Responses completed in this turn (a group fsync releases many) share one write.
            self._process(write=False)
            self._schedule_write()

    def _hold(self, slot: _Slot) -> None:
        slot.held = sum(len(part) for part in slot.parts or ())
        self._held += slot.held

    def _flush(self) -> None:
        pending = self._pending
        while pending and pending[0].ready:
            slot = pending.popleft()
            self._held -= slot.held
            if self.closed:
                return
            if slot.parts:
                self._queue_write(slot.parts)
            if slot.close_after:
                self.close()
                return
        self._update_reading()

    # --- legacy SASL (raw tokens after SaslHandshake v0) -------------------------------------
    def _legacy_sasl_token(self, token: bytes) -> None:
        slot = _Slot()
        self._pending.append(slot)
        self._blocked = True

        async def run() -> Any:
            # One raw token exchange (SaslHandshake v0 clients). Raises AuthenticationFailed.
            session = self.sasl_session
            reply, done = await session.step(token)
            if done:
                self.authenticated_as(session.principal)
            return reply

        fut = asyncio.ensure_future(run())

        def done(f: asyncio.Future) -> None:
            if self.closed:
                f.exception()
                return
            exc = f.exception()
            if exc is not None:
                log.info("SASL authentication failed for %s: %s", self.peer, exc)
                slot.parts = None
                slot.close_after = True
            else:
                reply = f.result()
                slot.parts = [SIZE.pack(len(reply)), reply]
            slot.ready = True
            self._blocked = False
            self._flush()
            if not self.closed:
                self._process()

        fut.add_done_callback(done)


async def start_listener(broker: Broker, listener: Listener) -> asyncio.AbstractServer:
    """Bind and listen without accepting yet, as Kafka's socket server does: the port is
    known, connections wait in the kernel's backlog, and the broker starts serving them once
    its metadata view is loaded (``Broker.start``). Refusing them meanwhile would make a
    broker that has just registered look dead to the failure detector (nothing listening),
    and get it fenced while it starts."""
    loop = asyncio.get_running_loop()
    holder: dict[str, int] = {}

    def factory() -> Connection:
        return Connection(broker, listener, holder["port"])

    holder["port"] = listener.port
    ssl_context = broker.tls.listening if listener.tls else None  # SASL_SSL
    server = await loop.create_server(
        factory, listener.host, listener.port, reuse_address=True, backlog=LISTEN_BACKLOG, ssl=ssl_context,
        ssl_handshake_timeout=10.0 if ssl_context is not None else None, start_serving=False,
    )
    holder["port"] = server.sockets[0].getsockname()[1]
    for sock in server.sockets:
        with sock.dup() as listening:  # the same socket: asyncio listens only once serving
            listening.listen(LISTEN_BACKLOG)
    return server
