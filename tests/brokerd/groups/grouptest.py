"""Shared helpers for the group coordinator unit tests (no wire, real asyncio timers)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from kio.schema.errors import ErrorCode

from brokerd.groups import GroupConfig, GroupCoordinator, JoinResult

T = TypeVar("T")

#: Small timeouts so that session/rebalance timeouts fire in tens of milliseconds.
FAST = GroupConfig(
    min_session_timeout_ms=10,
    max_session_timeout_ms=60_000,
    initial_rebalance_delay_ms=0,
    commit_flush_window_ms=0,
)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 15))  # type: ignore[arg-type]


@asynccontextmanager
async def coordinator(data_dir: Path, config: GroupConfig = FAST, **kwargs: Any):
    coord = GroupCoordinator(data_dir, config, **kwargs)
    await coord.start()
    try:
        yield coord
    finally:
        await coord.close()


def subscription(*topics: str, user_data: bytes | None = None) -> bytes:
    """A ConsumerProtocolSubscription v0 (what the consumer sends as protocol metadata)."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        raw = t.encode()
        out += struct.pack(">h", len(raw)) + raw
    if user_data is None:
        out += struct.pack(">i", -1)
    else:
        out += struct.pack(">i", len(user_data)) + user_data
    return out


PROTOCOLS = [("range", subscription("t")), ("roundrobin", subscription("t"))]


async def join(
    coord: GroupCoordinator,
    group: str = "g",
    member_id: str = "",
    *,
    protocols: list[tuple[str, bytes]] | None = None,
    session_ms: int = 5000,
    rebalance_ms: int = 5000,
    instance: str | None = None,
    version: int = 9,
    protocol_type: str = "consumer",
    client_id: str = "c",
) -> JoinResult:
    return await coord.join(
        group,
        member_id,
        protocol_type,
        protocols if protocols is not None else PROTOCOLS,
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms,
        group_instance_id=instance,
        client_id=client_id,
        client_host="/127.0.0.1",
        api_version=version,
    )


async def join_new(coord: GroupCoordinator, group: str = "g", **kw: Any) -> JoinResult:
    """JoinGroup v4+ dance: MEMBER_ID_REQUIRED, then join with the given id."""
    first = await join(coord, group, **kw)
    assert first.error is ErrorCode.member_id_required, first
    return await join(coord, group, first.member_id, **kw)


async def heartbeat_loop(
    coord: GroupCoordinator,
    group: str,
    member_id: Callable[[], str],
    generation: Callable[[], int],
    every: float,
) -> None:
    while True:
        await asyncio.sleep(every)
        coord.heartbeat(group, generation(), member_id())
