"""The etcd client when its connection closes under a call in flight: one caller that met a
failure closes the shared channel, and gRPC cancels every other call on it. Those callers
must see etcd unavailable (and retry), never a cancellation of their own task: a broker's
lease keep-alive that ended so let its lease expire without the broker noticing, after an
etcd restart, and the broker stayed out of the cluster for good."""

from __future__ import annotations

import asyncio
import socket

import pytest

from brokerd.coordination import etcd as e


@pytest.fixture
def silent_endpoint():
    """An endpoint that accepts and never answers: a keep-alive to it stays in flight."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield silent.getsockname()


async def _keepalive_in_flight(endpoint) -> tuple[e.Etcd, asyncio.Task]:
    etcd = e.Etcd([endpoint], timeout=30)
    keepalive = asyncio.create_task(etcd.keepalive(1234))
    await asyncio.sleep(1.0)
    assert not keepalive.done()
    return etcd, keepalive


def test_a_call_whose_channel_another_caller_closes_sees_etcd_unavailable(silent_endpoint) -> None:
    async def body() -> None:
        etcd, keepalive = await _keepalive_in_flight(silent_endpoint)
        await etcd._drop(rotate=True)  # what a caller does after its own call failed
        with pytest.raises(e.CoordinationUnavailable):
            await asyncio.wait_for(keepalive, 10)
        await etcd.close()

    asyncio.run(body())


def test_cancelling_the_caller_still_cancels(silent_endpoint) -> None:
    async def body() -> None:
        etcd, keepalive = await _keepalive_in_flight(silent_endpoint)
        keepalive.cancel()
        with pytest.raises(asyncio.CancelledError):
            await keepalive
        await etcd.close()

    asyncio.run(body())
