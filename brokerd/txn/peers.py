"""What a broker asks other brokers for transactions, as Kafka's brokers do: a partition leader
asks the transaction coordinator whether a partition is in a producer's open transaction
(AddPartitionsToTxn v4, verify-only; KIP-890), and the coordinator sends commit and abort
markers to each partition's leader (WriteTxnMarkers).

Connections go to the other broker's listener the replication fetchers use, logged in with
the same inter-broker credentials (``ReplicaManager.leader_address``). Each purpose has its own
connections per broker, so markers never wait behind a verification; a request goes on an idle
one, a new one while there are fewer than ``POOL`` (one request in flight on each), so the
markers of concurrent transactions do not wait for each other's replication.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kio.schema.errors import ErrorCode as E

from brokerd.protocol import kio_adapter
from brokerd.replication.client import BrokerConnection, BrokerUnavailable

log = logging.getLogger("brokerd.txn")

ADD_PARTITIONS, ADD_PARTITIONS_VERSION = 24, 4
WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION = 27, 1
REQUEST_TIMEOUT_S = 10.0
POOL = 4

TopicPartition = tuple[str, int]


class PeerChannels:
    """Connections to the other brokers, opened on first use (up to ``POOL`` each) and replaced
    when the broker's address or the credentials change."""

    def __init__(self, broker: Any, purpose: str) -> None:
        self.broker = broker
        self.purpose = purpose
        self._conns: dict[int, list[BrokerConnection]] = {}
        self._next = 0
        self._closing: set[asyncio.Future] = set()

    def connection(self, node_id: int) -> BrokerConnection | None:
        replicas = self.broker.replicas
        address = replicas.leader_address(node_id) if replicas is not None else None
        if address is None:
            return None
        conns = self._conns.setdefault(node_id, [])
        for conn in [c for c in conns if (c.host, c.port, c.sasl_plain, c.ca_file) != address]:
            conns.remove(conn)
            task = asyncio.ensure_future(conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        idle = next((c for c in conns if not c.busy), None)
        if idle is not None:
            return idle
        if len(conns) < POOL:
            conn = BrokerConnection(
                address.host, address.port, client_id=f"brokerd-{self.broker.node_id}-{self.purpose}",
                timeout=REQUEST_TIMEOUT_S, sasl_plain=address.sasl_plain, ca_file=address.ca_file,
            )  # fmt: skip
            conns.append(conn)
            return conn
        self._next += 1
        return conns[self._next % len(conns)]

    async def close(self) -> None:
        conns = [c for group in self._conns.values() for c in group]
        self._conns = {}
        for conn in conns:
            await conn.close()


def _by_topic(tps: list[TopicPartition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, index in tps:
        by_topic.setdefault(topic, []).append(index)
    return by_topic


async def verify_remote(
    channels: PeerChannels, node_id: int, tid: str, pid: int, epoch: int, tps: list[TopicPartition]
) -> dict[TopicPartition, E]:
    """Ask the coordinator on ``node_id`` whether ``tps`` are in the producer's open transaction.
    A coordinator that cannot be reached answers NOT_COORDINATOR for them (retriable)."""
    conn = channels.connection(node_id)
    if conn is None:
        return dict.fromkeys(tps, E.not_coordinator)
    mod = kio_adapter.request_module(ADD_PARTITIONS, ADD_PARTITIONS_VERSION)
    by_topic = _by_topic(tps)
    request = kio_adapter.request_class(ADD_PARTITIONS, ADD_PARTITIONS_VERSION)(
        transactions=(
            mod.AddPartitionsToTxnTransaction(
                transactional_id=tid, producer_id=pid, producer_epoch=epoch, verify_only=True,
                topics=tuple(
                    mod.AddPartitionsToTxnTopic(name=t, partitions=tuple(ps)) for t, ps in by_topic.items()
                ),
            ),
        )
    )  # fmt: skip
    try:
        response = await conn.request(request)
    except BrokerUnavailable as exc:
        log.debug("verifying the transaction of %s with broker %d: %s", tid, node_id, exc)
        return dict.fromkeys(tps, E.not_coordinator)
    if response.error_code:
        return dict.fromkeys(tps, E(response.error_code))
    answers: dict[TopicPartition, E] = {}
    for txn in response.results_by_transaction:
        for topic in txn.topic_results:
            for part in topic.results_by_partition:
                answers[(topic.name, int(part.partition_index))] = E(part.partition_error_code)
    return {tp: answers.get(tp, E.not_coordinator) for tp in tps}


async def send_markers(
    channels: PeerChannels, node_id: int, pid: int, epoch: int, commit: bool, coordinator_epoch: int,
    tps: list[TopicPartition],
) -> dict[TopicPartition, E]:
    """WriteTxnMarkers for ``tps`` to the broker that leads them: the error per partition
    (NOT_LEADER_OR_FOLLOWER for all when the broker cannot be reached)."""
    conn = channels.connection(node_id)
    if conn is None:
        return dict.fromkeys(tps, E.not_leader_or_follower)
    mod = kio_adapter.request_module(WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION)
    by_topic = _by_topic(tps)
    marker = mod.WritableTxnMarker(
        producer_id=pid, producer_epoch=epoch, transaction_result=commit, coordinator_epoch=coordinator_epoch,
        topics=tuple(
            mod.WritableTxnMarkerTopic(name=t, partition_indexes=tuple(ps)) for t, ps in by_topic.items()
        ),
    )  # fmt: skip
    request = kio_adapter.request_class(WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION)(markers=(marker,))
    try:
        response = await conn.request(request)
    except BrokerUnavailable as exc:
        log.debug("markers of producer %d to broker %d: %s", pid, node_id, exc)
        return dict.fromkeys(tps, E.not_leader_or_follower)
    answers: dict[TopicPartition, E] = {}
    for result in response.markers:
        for topic in result.topics:
            for part in topic.partitions:
                answers[(topic.name, int(part.partition_index))] = E(part.error_code)
    return {tp: answers.get(tp, E.not_leader_or_follower) for tp in tps}
