"""Offsets committed inside transactions (TxnOffsetCommit), held until the transaction ends.

Kafka keeps them as transactional records in ``__consumer_offsets`` and the commit or abort
marker there decides them. Here the group coordinator's offsets live in its own store, so the
pending offsets are kept durably beside the producer state (``pending_txn_offsets.json``,
replaced atomically on every change) until the transaction coordinator ends the transaction:
a commit hands them to the group coordinator (durable there before they leave this file), an
abort drops them. A crash in between leaves them here, and the coordinator, which finishes
every prepared transaction when it starts, decides them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from brokerd.durable import atomic_write
from brokerd.groups import GroupCoordinator, OffsetAndMetadata

log = logging.getLogger("brokerd.txn")

FILE = "pending_txn_offsets.json"

TopicPartition = tuple[str, int]


class PendingTxnOffsets:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / FILE
        #: producer id -> group -> partition -> offset
        self._pending: dict[int, dict[str, dict[TopicPartition, OffsetAndMetadata]]] = {}
        #: (group, partition) -> producer ids holding an offset for it
        self._by_partition: dict[tuple[str, TopicPartition], set[int]] = {}
        self._lock = asyncio.Lock()

    def load(self) -> None:
        self._pending.clear()
        self._by_partition.clear()
        if not self.path.exists():
            return
        doc = json.loads(self.path.read_bytes())
        for pid, groups in doc.get("producers", {}).items():
            for group, entries in groups.items():
                offsets = {
                    (topic, int(partition)): OffsetAndMetadata(int(offset), int(epoch), metadata, int(ts))
                    for topic, partition, offset, epoch, metadata, ts in entries
                }
                self._put(int(pid), group, offsets)

    def _put(self, pid: int, group: str, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self._pending.setdefault(pid, {}).setdefault(group, {}).update(offsets)
        for tp in offsets:
            self._by_partition.setdefault((group, tp), set()).add(pid)

    def _document(self) -> bytes:
        producers = {
            str(pid): {
                group: [
                    [t, p, om.offset, om.leader_epoch, om.metadata, om.commit_timestamp_ms]
                    for (t, p), om in offsets.items()
                ]
                for group, offsets in groups.items()
            }
            for pid, groups in self._pending.items()
        }
        return json.dumps({"version": 1, "producers": producers}, separators=(",", ":")).encode()

    async def _save(self) -> None:
        await asyncio.to_thread(atomic_write, self.path, self._document())

    def unstable(self, group: str, tp: TopicPartition) -> bool:
        return bool(self._by_partition.get((group, tp)))

    def groups_of(self, producer_id: int) -> list[str]:
        return list(self._pending.get(producer_id, {}))

    async def add(
        self, producer_id: int, group: str, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        """Hold offsets for a transaction (durable when this returns; OSError otherwise)."""
        async with self._lock:
            self._put(producer_id, group, offsets)
            await self._save()

    async def complete(self, producer_id: int, commit: bool, groups: GroupCoordinator) -> None:
        """The producer's transaction ended: commit its offsets to their groups, or drop them.
        Raises (StoreError, OSError) when that could not be made durable: the caller retries."""
        async with self._lock:
            held = self._pending.get(producer_id)
            if not held:
                return
            if commit:
                for group, offsets in held.items():
                    await groups.commit_transactional(group, sorted(offsets.items()))
            del self._pending[producer_id]
            for group, offsets in held.items():
                for tp in offsets:
                    pids = self._by_partition.get((group, tp))
                    if pids is not None:
                        pids.discard(producer_id)
                        if not pids:
                            del self._by_partition[(group, tp)]
            await self._save()
