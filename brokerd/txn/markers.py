"""Commit and abort markers: written by each partition's leader, sent by the coordinator.

:func:`write_here` appends markers to partitions this broker leads (WriteTxnMarkers, or the
coordinator's own partitions) and answers once they are durable: fsynced and, in a cluster,
below the high watermark (Kafka writes markers with acks=all). A marker on a
``__consumer_offsets`` partition also decides the offsets committed in the transaction there
(the group coordinator listens to the producer state's markers).

:class:`MarkerSender` is the coordinator's side: every partition of a transaction gets its
marker from its current leader, this broker or another (WriteTxnMarkers over the inter-broker
connection); what could not be written yet (no leader, a leadership move, too few in-sync
replicas, a broker unreachable) is returned for the coordinator to retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kio.schema.errors import ErrorCode as E

from brokerd.idempotence import ProduceRefused
from brokerd.txn.peers import PeerChannels, TopicPartition, send_markers

log = logging.getLogger("brokerd.txn")

COMMITTED_TIMEOUT_S = 10.0
#: a newer producer epoch wrote there: the transaction being ended is no longer open there
_SUPERSEDED = frozenset({E.invalid_producer_epoch, E.producer_fenced})


async def write_here(
    broker: Any, pid: int, epoch: int, commit: bool, coordinator_epoch: int, tps: list[TopicPartition]
) -> dict[TopicPartition, E]:
    """Markers on the partitions of ``tps`` this broker leads; the error per partition."""
    replicas = broker.replicas
    results: dict[TopicPartition, E] = {}
    written: list[tuple[Any, TopicPartition, int]] = []
    now_ms = int(time.time() * 1000)
    for tp in tps:
        name, index = tp
        plog = broker.logs.log(name, index)
        leader_epoch = None
        if replicas is not None:
            state = replicas.partition(name, index)
            if state is None and plog is None:
                results[tp] = E.unknown_topic_or_partition
                continue
            if plog is None or not replicas.leads(name, index):
                results[tp] = E.not_leader_or_follower
                continue
            if replicas.isr_size(name, index) < replicas.min_insync(name):
                results[tp] = E.not_enough_replicas
                continue
            leader_epoch = state.leader_epoch
        elif plog is None:
            results[tp] = E.unknown_topic_or_partition
            continue
        try:
            base = broker.producers.write_marker(
                plog, pid, epoch, commit, coordinator_epoch, leader_epoch=leader_epoch, now_ms=now_ms
            )
        except ProduceRefused as exc:
            results[tp] = E(exc.code)
            continue
        except OSError as exc:
            log.error("cannot write a marker to %s-%d: %s", name, index, exc)
            results[tp] = E.kafka_storage_error
            continue
        if replicas is not None:
            replicas.appended(name, index)
        written.append((plog, tp, base + 1))
        results[tp] = E.none
    if written:
        await _durable(broker, written, results)
    return results


async def _durable(broker: Any, written: list, results: dict[TopicPartition, E]) -> None:
    try:
        await broker.flusher.wait([plog for plog, _tp, _end in written])
    except (OSError, RuntimeError) as exc:
        log.error("cannot fsync markers: %s", exc)
        for _plog, tp, _end in written:
            results[tp] = E.kafka_storage_error
        return
    replicas = broker.replicas
    if replicas is None:
        return
    for _plog, tp, end in written:
        committed = replicas.wait_committed(tp[0], tp[1], end)
        if committed is None:
            results[tp] = E.not_leader_or_follower
            continue
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the high watermark passes, and a stopping broker would wait on
            async with asyncio.timeout(COMMITTED_TIMEOUT_S):
                ok = await asyncio.shield(committed)
        except TimeoutError:
            results[tp] = E.request_timed_out
            continue
        if not ok:
            results[tp] = E.not_leader_or_follower


class MarkerSender:
    """The coordinator's marker delivery: each partition's current leader writes its marker."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.channels = PeerChannels(broker, "txn-markers")

    def _leader(self, tp: TopicPartition) -> int | None:
        """The partition's leader; -1 when the topic is gone (nothing to mark), None when it has
        no leader now."""
        broker = self.broker
        replicas = broker.replicas
        if replicas is None:
            return broker.node_id if broker.logs.log(*tp) is not None else -1
        state = replicas.partition(*tp)
        if state is None:
            return -1
        if state.leader < 0 or state.leader not in replicas.membership.view.state.brokers:
            return None
        return state.leader

    async def send(
        self, pid: int, epoch: int, commit: bool, coordinator_epoch: int, tps: list[TopicPartition]
    ) -> list[TopicPartition]:
        """Markers to ``tps``; returns the partitions still to be marked (retry later)."""
        remaining: list[TopicPartition] = []
        by_node: dict[int, list[TopicPartition]] = {}
        for tp in tps:
            leader = self._leader(tp)
            if leader is None:
                remaining.append(tp)
            elif leader >= 0:
                by_node.setdefault(leader, []).append(tp)

        async def deliver(node: int, group: list[TopicPartition]) -> dict[TopicPartition, E]:
            if node == self.broker.node_id:
                return await write_here(self.broker, pid, epoch, commit, coordinator_epoch, group)
            return await send_markers(self.channels, node, pid, epoch, commit, coordinator_epoch, group)

        answers = await asyncio.gather(*(deliver(node, group) for node, group in by_node.items()))
        for results in answers:
            for tp, error in results.items():
                if error is E.none:
                    continue
                if error in _SUPERSEDED:
                    log.warning("marker for producer %d on %s-%d refused: %s", pid, tp[0], tp[1], error.name)
                    continue
                if error is E.unknown_topic_or_partition and self._leader(tp) == -1:
                    continue  # the topic was deleted
                remaining.append(tp)
        return remaining

    async def close(self) -> None:
        await self.channels.close()
