"""Offsets held by earlier versions of the broker for open transactions, drained on upgrade.

Offsets committed inside a transaction are now the producer's transactional records in
``__consumer_offsets``, which its commit or abort marker decides (the group coordinator,
brokerd/groups). Earlier versions held them in a file beside the producer state
(``pending_txn_offsets.json``) instead. A broker that finds that file still decides each of
its transactions from it, as before: when the coordinator completes the transaction (it
finishes every prepared transaction when it starts, and aborts open ones that time out), a
commit hands the offsets to the group coordinator, an abort drops them. Nothing new is added
to it; once empty it is removed.
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


class LegacyTxnOffsets:
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
        if self._pending:
            log.info("offsets of %d transaction(s) held by an earlier version: decided as they end",
                     len(self._pending))  # fmt: skip
        else:
            self.path.unlink()

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
            if self._pending:
                await self._save()
            else:
                await asyncio.to_thread(self.path.unlink, True)
