"""A partition leader's question to the transaction coordinator (KIP-890 part 1): is this
partition in the producer's open transaction? Asked before the first transactional batch of a
producer is appended to a partition, and before a group coordinator holds transactional offsets.
The coordinator answers itself when it runs here; otherwise it is asked with AddPartitionsToTxn
v4 (verify-only) over the inter-broker connection."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode as E

from brokerd.coordination.internal_topics import TRANSACTIONS
from brokerd.txn.peers import PeerChannels, TopicPartition, verify_remote


class TxnVerifier:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.channels = PeerChannels(broker, "txn-verify")

    def local(
        self, tid: str, pid: int, epoch: int, tps: list[TopicPartition]
    ) -> dict[TopicPartition, E] | None:
        """The answers when this broker coordinates ``tid`` (None when another broker may)."""
        coord = self.broker.transactions
        if coord is None or coord.owner_error(tid) is not None:
            return None
        return {tp: coord.verify(tid, pid, epoch, tp) for tp in tps}

    async def verify(
        self, tid: str, pid: int, epoch: int, tps: list[TopicPartition]
    ) -> dict[TopicPartition, E]:
        answers = self.local(tid, pid, epoch, tps)
        if answers is not None:
            return answers
        error, node = self.broker.internal_topics.coordinator(TRANSACTIONS, tid)
        if error is not E.none:
            return dict.fromkeys(tps, error)
        if node == self.broker.node_id:  # led here, not loaded yet
            coord = self.broker.transactions
            return dict.fromkeys(tps, (coord.owner_error(tid) if coord else None) or E.not_coordinator)
        return await verify_remote(self.channels, node, tid, pid, epoch, tps)

    async def close(self) -> None:
        await self.channels.close()
