"""Producer ids unique across a cluster: each broker takes blocks of ids from one counter in
etcd, as Kafka's brokers take them from the controller (AllocateProducerIds, KIP-730).

``{prefix}producer_ids`` holds the start of the next free block. A broker takes a block with a
compare-and-set on the key's mod revision (or on its absence, for the first block) that also
compares its own registration with its broker epoch, so two brokers never get the same block
and a fenced broker gets none. The counter only grows, so ids never repeat, across restarts
too (a restarted broker takes a fresh block; the rest of its old one is skipped, as in Kafka).

Handing out an id never waits for etcd: the next block is fetched in the background once 90%
of the current one is used (Kafka's RPCProducerIdManager). When no id is at hand,
:class:`ProducerIdsUnavailable` asks the client to retry (COORDINATOR_LOAD_IN_PROGRESS).
"""

from __future__ import annotations

import asyncio
import json
import logging

from brokerd.coordination import etcd as e
from brokerd.coordination.session import BrokerSession

log = logging.getLogger("brokerd.coordination")

BLOCK_SIZE = 1000
PREFETCH_AT = 0.9  # fetch the next block once this share of the current one is used


class ProducerIdsUnavailable(Exception):
    """No block of producer ids is at hand yet; the client retries."""


class ClusterProducerIds:
    def __init__(self, session: BrokerSession, *, floor: int = 0, block_size: int = BLOCK_SIZE) -> None:
        self.session = session
        self.key = session.keys.producer_ids
        self.block_size = block_size
        # Ids this broker's data dir reserved before it was in a cluster (or before producer ids
        # were cluster-wide): no block starts below them.
        self.floor = floor
        self._next = 0
        self._end = 0  # the current block is [_next, _end)
        self._block_start = 0
        self._ready: range | None = None  # the next block, fetched ahead
        self._fetching: asyncio.Task | None = None

    async def start(self) -> None:
        """Take a first block before the broker serves (a failure is retried on demand)."""
        try:
            self._install(await self.take_block())
        except e.CoordinationError as exc:
            log.warning("no block of producer ids yet (%s); taking one on the first request", exc)

    async def stop(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()

    def allocate(self) -> int:
        """A producer id no other broker of the cluster ever hands out."""
        if self._next >= self._end:
            if self._ready is None:
                self._fetch_ahead()
                raise ProducerIdsUnavailable("taking a block of producer ids from the cluster")
            self._install(self._ready)
            self._ready = None
        pid = self._next
        self._next += 1
        if self._ready is None and self._next - self._block_start >= PREFETCH_AT * self.block_size:
            self._fetch_ahead()
        return pid

    def _install(self, block: range) -> None:
        self._block_start, self._next, self._end = block.start, block.start, block.stop

    def _fetch_ahead(self) -> None:
        if self._fetching is not None and not self._fetching.done():
            return
        self._fetching = asyncio.ensure_future(self._fetch())

    async def _fetch(self) -> None:
        try:
            self._ready = await self.take_block()
        except e.CoordinationError as exc:
            log.warning("cannot take a block of producer ids yet: %s", exc)

    async def take_block(self) -> range:
        """Take the next free block from the counter in etcd (compare-and-set, retried while
        other brokers take theirs)."""
        session = self.session
        mine = e.created_at(session.keys.broker(session.node_id), session.epoch)
        for _attempt in range(20):
            current = await session.etcd.get(self.key)
            if current is None:
                start, guard = 0, e.created_at(self.key, 0)
            else:
                start = int(json.loads(current.value)["next"])
                guard = e.modified_at(self.key, current.mod_revision)
            start = max(start, self.floor)
            end = start + self.block_size
            taken = e.put(self.key, json.dumps({"next": end}).encode())
            result = await session.etcd.txn([guard, mine], [taken])
            if result.succeeded:
                log.info("broker %d took producer ids %d to %d", session.node_id, start, end - 1)
                return range(start, end)
            registered = await session.etcd.get(session.keys.broker(session.node_id))
            if registered is None or registered.create_revision != session.epoch:
                raise e.CoordinationError(
                    f"broker {session.node_id} is not registered with epoch {session.epoch}"
                )
        raise e.CoordinationError("the producer id counter kept changing; try again")
