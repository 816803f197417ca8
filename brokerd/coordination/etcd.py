"""A thin etcd v3 client for brokerd: reads, compare-and-set transactions, leases, watches.

Built on ``aetcd`` (asyncio, gRPC) for the channel, authentication, leases and watches;
ranges and transactions go through the raw KV stub so that callers get the response
header's revision (a controller's epoch is the revision its election key was created at).

Endpoints: the client talks to one endpoint at a time and moves to the next one after a
connection failure, so a three-member etcd keeps serving brokers when one member is down.
A call that failed is not retried here: a transaction's outcome is unknown after a lost
connection, and every writer in brokerd re-reads and compares before writing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aetcd
import grpc
from aetcd import rpc, utils

log = logging.getLogger("brokerd.coordination")


class CoordinationError(Exception):
    """etcd refused or failed a call."""


class CoordinationUnavailable(CoordinationError):
    """No etcd endpoint answered; the caller retries later."""


class CoordinationDenied(CoordinationError):
    """etcd's authorisation refused the call (wrong credentials or a key outside the role)."""


@dataclass(frozen=True)
class Entry:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def of(cls, kv: rpc.KeyValue) -> Entry:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the transaction (its own if it wrote)
    ranges: tuple[tuple[Entry, ...], ...]  # the results of the get operations, in order


@dataclass(frozen=True)
class WatchEvent:
    deleted: bool
    entry: Entry  # for a delete: the key, an empty value and the delete's mod_revision


# --- transaction building blocks --------------------------------------------------------------
def created_at(key: bytes, revision: int) -> rpc.Compare:
    """The key was created at ``revision``; 0 means the key does not exist."""
    return rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=revision)


def modified_at(key: bytes, revision: int) -> rpc.Compare:
    return rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=revision)


def put(key: bytes, value: bytes, lease: int = 0) -> rpc.RequestOp:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete(key: bytes, *, prefix: bool = False) -> rpc.RequestOp:
    request = rpc.DeleteRangeRequest(key=key)
    if prefix:
        request.range_end = utils.prefix_range_end(key)
    return rpc.RequestOp(request_delete_range=request)


def get(key: bytes, *, prefix: bool = False) -> rpc.RequestOp:
    request = rpc.RangeRequest(key=key)
    if prefix:
        request.range_end = utils.prefix_range_end(key)
    return rpc.RequestOp(request_range=request)


def _translate(error: grpc.aio.AioRpcError, what: str) -> CoordinationError:
    code = error.code()
    detail = error.details() or str(code)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return CoordinationUnavailable(f"etcd {what}: {detail}")
    # etcd answers a missing user or a wrong password with INVALID_ARGUMENT
    auth_failed = any(text in detail for text in ("user name is empty", "authentication failed"))
    if auth_failed or code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return CoordinationDenied(f"etcd {what}: {detail}")
    return CoordinationError(f"etcd {what}: {detail}")


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not a call it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Etcd:
    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        if (user is None) != (password is None):
            raise ValueError("an etcd user needs a password and a password needs a user")
        self.endpoints = list(endpoints)
        self.user = user
        self.password = password
        self.timeout = timeout
        self._current = 0
        self._client: aetcd.Client | None = None
        self._connect_lock = asyncio.Lock()

    # --- connection ------------------------------------------------------------------------
    async def client(self) -> aetcd.Client:
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            host, port = self.endpoints[self._current]
            client = aetcd.Client(
                host, port, username=self.user, password=self.password, timeout=self.timeout
            )
            try:
                await client.connect()
            except (aetcd.exceptions.UnauthenticatedError, aetcd.exceptions.InvalidArgumentError) as exc:
                # etcd answers a wrong user or password with INVALID_ARGUMENT
                await client.close()
                raise CoordinationDenied(f"etcd at {host}:{port} refused the credentials: {exc}") from exc
            except aetcd.exceptions.ClientError as exc:
                await client.close()
                self._rotate()
                raise CoordinationUnavailable(f"etcd at {host}:{port}: {exc}") from exc
            self._client = client
            return client

    def _rotate(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    async def _drop(self, *, rotate: bool) -> None:
        client, self._client = self._client, None
        if rotate:
            self._rotate()
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 2.0)
            except Exception:  # a broken channel may fail to close; it is gone either way
                log.debug("closing an etcd channel failed", exc_info=True)

    async def close(self) -> None:
        await self._drop(rotate=False)

    async def _call(self, what: str, call):
        """Run ``call(client)``; on a lost connection or an expired auth token, reconnect for
        the next call (a token is re-requested once, since etcd forgets tokens on restart)."""
        for attempt in (1, 2):
            client = await self.client()
            try:
                return await call(client)
            except grpc.aio.AioRpcError as exc:
                error = _translate(exc, what)
                if isinstance(error, CoordinationUnavailable):
                    await self._drop(rotate=True)
                    raise error from exc
                token_expired = "auth token" in (exc.details() or "")
                if token_expired and attempt == 1:
                    await self._drop(rotate=False)
                    continue
                raise error from exc
            except aetcd.exceptions.ConnectionFailedError as exc:
                await self._drop(rotate=True)
                raise CoordinationUnavailable(f"etcd {what}: {exc}") from exc
            except aetcd.exceptions.ClientError as exc:
                raise CoordinationError(f"etcd {what}: {exc}") from exc
            except asyncio.CancelledError as exc:
                if _being_cancelled():
                    raise
                # gRPC cancels the calls in flight on a channel that another caller closed after
                # a failure (``_drop``). Only the channel ended, not the caller: to it this is
                # etcd being unreachable, retried like any other, never a silent end of the
                # caller's task (a lease keep-alive that ended so would let the lease expire
                # without the broker ever noticing).
                raise CoordinationUnavailable(f"etcd {what}: the connection closed during the call") from exc
        raise AssertionError("unreachable")

    # --- key-value ---------------------------------------------------------------------------
    async def get(self, key: bytes) -> Entry | None:
        async def call(client: aetcd.Client):
            return await client.kvstub.Range(
                rpc.RangeRequest(key=key), timeout=self.timeout, metadata=client.metadata
            )

        response = await self._call(f"get {key!r}", call)
        return Entry.of(response.kvs[0]) if response.kvs else None

    async def get_prefix(self, prefix: bytes) -> tuple[int, list[Entry]]:
        """Every key under ``prefix`` and the revision the read saw."""

        async def call(client: aetcd.Client):
            request = rpc.RangeRequest(key=prefix, range_end=utils.prefix_range_end(prefix))
            return await client.kvstub.Range(request, timeout=self.timeout, metadata=client.metadata)

        response = await self._call(f"read {prefix!r}", call)
        return response.header.revision, [Entry.of(kv) for kv in response.kvs]

    async def txn(
        self,
        compare: Sequence[rpc.Compare],
        success: Sequence[rpc.RequestOp],
        failure: Sequence[rpc.RequestOp] = (),
    ) -> TxnResult:
        request = rpc.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))

        async def call(client: aetcd.Client):
            return await client.kvstub.Txn(request, timeout=self.timeout, metadata=client.metadata)

        response = await self._call("transaction", call)
        ranges = tuple(
            tuple(Entry.of(kv) for kv in op.response_range.kvs)
            for op in response.responses
            if op.WhichOneof("response") == "response_range"
        )
        return TxnResult(response.succeeded, response.header.revision, ranges)

    # --- leases --------------------------------------------------------------------------------
    async def grant_lease(self, ttl: int) -> int:
        async def call(client: aetcd.Client):
            return await client.leasestub.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout, metadata=client.metadata
            )

        return (await self._call("lease grant", call)).ID

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; return its new TTL, 0 when it has already expired."""

        async def call(client: aetcd.Client):
            async for reply in client.leasestub.LeaseKeepAlive(
                [rpc.LeaseKeepAliveRequest(ID=lease_id)], timeout=self.timeout, metadata=client.metadata
            ):
                return reply.TTL
            return 0

        return await self._call("lease keep-alive", call)

    async def revoke_lease(self, lease_id: int) -> None:
        async def call(client: aetcd.Client):
            return await client.leasestub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout, metadata=client.metadata
            )

        await self._call("lease revoke", call)

    # --- watches -------------------------------------------------------------------------------
    async def watch_prefix(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Events under ``prefix`` from ``start_revision`` on, in revision order. The iterator
        ends with CoordinationUnavailable when the stream breaks; the caller re-reads and
        watches again from the revision it has seen."""
        client = await self.client()
        try:
            watch = await client.watch_prefix(prefix, start_revision=start_revision)
        except aetcd.exceptions.ClientError as exc:
            await self._drop(rotate=True)
            raise CoordinationUnavailable(f"etcd watch {prefix!r}: {exc}") from exc
        try:
            async for event in watch:
                kv = event.kv
                entry = Entry(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                yield WatchEvent(event.kind == aetcd.rtypes.EventKind.DELETE, entry)
        except (aetcd.exceptions.ClientError, grpc.aio.AioRpcError) as exc:
            await self._drop(rotate=True)
            raise CoordinationUnavailable(f"etcd watch {prefix!r} broke: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):  # cancelling on a dead channel may fail or hang
                await asyncio.wait_for(asyncio.shield(watch.cancel()), 1.0)
        # aetcd ends the iterator without an error when the stream closes cleanly
        await self._drop(rotate=True)
        raise CoordinationUnavailable(f"etcd watch {prefix!r} ended")
