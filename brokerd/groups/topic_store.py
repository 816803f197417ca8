"""Committed offsets and group metadata in the ``__consumer_offsets`` topic.

The group coordinator's store when it runs on the topic's partition leaders: each write is
one batch of Kafka-format records (brokerd/groups/records.py) appended to the partition of
its group, acknowledged once the partition's in-sync replicas hold it. The same interface
as :class:`~brokerd.groups.store.OffsetsStore` (a broker's own file, read once when it
starts), so the coordinator's state machine is one whatever keeps its records.

Writes go through ``append(partition, records) -> Future``, which the broker binds to
:meth:`brokerd.coordination.internal_topics.InternalTopics.append` with the leader epoch the
partition was loaded in: a write made after leadership moved fails with NOT_COORDINATOR.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from brokerd.groups import consumer_records as cr
from brokerd.groups import records as rec
from brokerd.groups.store import LoadedState, OffsetAndMetadata, StoreError, TopicPartition
from brokerd.records import CONTROL_COMMIT, BatchHeader

log = logging.getLogger("brokerd.groups")

Records = list[tuple[bytes, bytes | None]]
#: append(partition, records, producer=None): ``producer`` (id, epoch) makes the batch transactional
Append = Callable[..., "asyncio.Future[Any]"]
#: (header, control record type or None, records), as InternalTopics.read_batches reads them back
Batch = tuple[BatchHeader, int | None, list[tuple[bytes | None, bytes | None]]]


class OffsetsTopicStore:
    def __init__(self, partition_of: Callable[[str], int], append: Append) -> None:
        self.partition_of = partition_of
        self._append_to = append
        self._pending: set[asyncio.Future[None]] = set()
        #: consumer group -> its records' keys and values as this store last appended them
        self._written: dict[str, dict[bytes, bytes]] = {}

    # -- appends (the OffsetsStore interface) --------------------------------------------------
    def commit(
        self, group: str, entries: Iterable[tuple[TopicPartition, OffsetAndMetadata]]
    ) -> asyncio.Future[None]:
        return self._append(group, [(rec.offset_key(group, tp), rec.offset_value(om)) for tp, om in entries])

    def commit_in_transaction(
        self, group: str, producer_id: int, producer_epoch: int,
        entries: Iterable[tuple[TopicPartition, OffsetAndMetadata]],
    ) -> asyncio.Future[None]:
        """Offsets committed inside a producer's transaction (TxnOffsetCommit): a transactional
        batch of the producer, which its commit or abort marker in the partition decides."""
        records = [(rec.offset_key(group, tp), rec.offset_value(om)) for tp, om in entries]
        return self._append(group, records, (producer_id, producer_epoch))

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> asyncio.Future[None]:
        return self._append(group, [(rec.offset_key(group, tp), None) for tp in tps])

    def put_group(self, group: str, document: dict[str, Any]) -> asyncio.Future[None]:
        """A classic group's GroupMetadata record, or a consumer group's records (only those
        that changed since this store last wrote them, and tombstones for the members named in
        ``tombstone_members``). A group that changed protocol: the later record of the two kinds
        wins when the partition is read; the other kind's are tombstoned when known."""
        gone = document.get("tombstone_members")
        if document.get("type") != "consumer":
            records: Records = [(rec.group_key(group), rec.group_value(document))]
            if gone is not None:  # it was a consumer group until now
                records += cr.tombstones(group, gone, whole_group=True)
            self._written.pop(group, None)
            return self._append(group, records)
        written = self._written.get(group)
        records = []
        if written is None:  # first write here: what the other kinds left is gone
            written = self._written[group] = {}
            records += [(rec.group_key(group), None), (rec.consumer_group_key(group), None)]
        for key, value in cr.tombstones(group, gone or (), whole_group=False):
            written.pop(key, None)
            records.append((key, value))
        for key, value in cr.group_records(group, document):
            if written.get(key) != value:
                written[key] = value
                records.append((key, value))
        return self._append(group, records)

    def forget(self, groups: Iterable[str]) -> None:
        """Another coordinator may write these groups from now on: write them in full next time."""
        for group in groups:
            self._written.pop(group, None)

    def delete_group(self, group: str, offsets: Iterable[TopicPartition] = ()) -> asyncio.Future[None]:
        """Tombstones for the group's metadata and each of its committed offsets (Kafka's
        DeleteGroups writes both: compaction then drops every record of the group)."""
        records: Records = [(rec.offset_key(group, tp), None) for tp in offsets]
        records += [(rec.group_key(group), None), (rec.consumer_group_key(group), None)]
        records += cr.tombstones(group, (), whole_group=True)
        self._written.pop(group, None)
        return self._append(group, records)

    def _append(
        self, group: str, records: Records, producer: tuple[int, int] | None = None
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        out: asyncio.Future[None] = loop.create_future()
        if not records:
            out.set_result(None)
            return out
        if producer is None:
            appended = self._append_to(self.partition_of(group), records)
        else:
            appended = self._append_to(self.partition_of(group), records, producer=producer)
        self._pending.add(out)

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(out)
            if out.done():
                return
            if f.cancelled() or f.exception() is not None:
                self._written.pop(group, None)  # unknown what the partition holds: all next time
            if f.cancelled():
                out.set_exception(StoreError("append cancelled", ErrorCode.coordinator_not_available))
            elif f.exception() is not None:
                exc = f.exception()
                code = getattr(exc, "code", ErrorCode.coordinator_not_available)
                out.set_exception(StoreError(str(exc), code))
            else:
                out.set_result(None)

        appended.add_done_callback(done)
        return out

    async def flush(self) -> None:
        if self._pending:
            await asyncio.wait(list(self._pending))

    async def close(self) -> None:
        await self.flush()

    def close_sync(self) -> None:
        pass


async def fold(batches: AsyncIterator[Batch]) -> LoadedState:
    """A partition's live groups and offsets from its batches, in log order (the last record of
    a key wins; a tombstone removes it). Offsets in a producer's transaction are held apart
    until its commit marker makes them the group's (its abort marker drops them); those of a
    transaction still open at the log end are ``state.txn_offsets``. Records of other kinds are
    skipped."""
    state = LoadedState()
    consumer = cr.ConsumerGroupFold()
    #: group -> log position of its last classic (or former brokerd) metadata record
    seqs: dict[str, int] = {}
    async for header, control, records in batches:
        producer_id = header.producer_id
        state.end_offset = header.last_offset + 1
        if control is not None:
            held = state.txn_offsets.pop(producer_id, None)
            if held and control == CONTROL_COMMIT:
                for group, offsets in held.items():
                    state.offsets.setdefault(group, {}).update(offsets)
            continue
        for key, value in records:
            state.records += 1
            if key is None:
                continue
            try:
                if header.is_transactional:
                    _fold_transactional(state, producer_id, key, value)
                    continue
                which = rec.decode_key(key)
                if isinstance(which, cr.ConsumerRecordKey):
                    consumer.apply(which, value, state.records)
                    continue
                if isinstance(which, rec.OffsetKey):
                    tp = (which.topic, which.partition)
                    if value is None:
                        offsets = state.offsets.get(which.group)
                        if offsets is not None:
                            offsets.pop(tp, None)
                            if not offsets:
                                del state.offsets[which.group]
                    else:
                        state.offsets.setdefault(which.group, {})[tp] = rec.decode_offset_value(value)
                elif isinstance(which, rec.GroupKey | rec.ConsumerGroupKey):
                    if value is None:
                        state.groups.pop(which.group, None)
                    elif isinstance(which, rec.ConsumerGroupKey):
                        state.groups[which.group] = rec.decode_consumer_group_value(value)
                        seqs[which.group] = state.records
                    else:
                        state.groups[which.group] = rec.decode_group_value(value)
                        seqs[which.group] = state.records
            except (rec.RecordError, cr.ConsumerRecordError, UnicodeDecodeError) as exc:
                log.error("unreadable record in the offsets topic: %s", exc)
    for group, (seq, document) in consumer.documents().items():
        if seq > seqs.get(group, 0):
            state.groups[group] = document
    return state


def _fold_transactional(state: LoadedState, producer_id: int, key: bytes, value: bytes | None) -> None:
    which = rec.decode_key(key)
    if isinstance(which, rec.OffsetKey) and value is not None:
        held = state.txn_offsets.setdefault(producer_id, {}).setdefault(which.group, {})
        held[(which.topic, which.partition)] = rec.decode_offset_value(value)

