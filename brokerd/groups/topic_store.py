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

from brokerd.groups import records as rec
from brokerd.groups.store import LoadedState, OffsetAndMetadata, StoreError, TopicPartition

log = logging.getLogger("brokerd.groups")

Records = list[tuple[bytes, bytes | None]]
Append = Callable[[int, Records], "asyncio.Future[Any]"]


class OffsetsTopicStore:
    def __init__(self, partition_of: Callable[[str], int], append: Append) -> None:
        self.partition_of = partition_of
        self._append_to = append
        self._pending: set[asyncio.Future[None]] = set()

    # -- appends (the OffsetsStore interface) --------------------------------------------------
    def commit(
        self, group: str, entries: Iterable[tuple[TopicPartition, OffsetAndMetadata]]
    ) -> asyncio.Future[None]:
        return self._append(group, [(rec.offset_key(group, tp), rec.offset_value(om)) for tp, om in entries])

    def delete_offsets(self, group: str, tps: Iterable[TopicPartition]) -> asyncio.Future[None]:
        return self._append(group, [(rec.offset_key(group, tp), None) for tp in tps])

    def put_group(self, group: str, document: dict[str, Any]) -> asyncio.Future[None]:
        # A group that changed protocol keeps its older record of the other kind until deleted:
        # the later record wins when the partition is read (compaction keeps their order).
        return self._append(group, [(rec.group_key(group, document), rec.group_value(document))])

    def delete_group(self, group: str, offsets: Iterable[TopicPartition] = ()) -> asyncio.Future[None]:
        """Tombstones for the group's metadata and each of its committed offsets (Kafka's
        DeleteGroups writes both: compaction then drops every record of the group)."""
        records: Records = [(rec.offset_key(group, tp), None) for tp in offsets]
        records += [(rec.group_key(group), None), (rec.consumer_group_key(group), None)]
        return self._append(group, records)

    def _append(self, group: str, records: Records) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        out: asyncio.Future[None] = loop.create_future()
        if not records:
            out.set_result(None)
            return out
        appended = self._append_to(self.partition_of(group), records)
        self._pending.add(out)

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(out)
            if out.done():
                return
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


async def fold(records: AsyncIterator[tuple[bytes | None, bytes | None]]) -> LoadedState:
    """A partition's live groups and offsets from its records, in log order (the last record of
    a key wins; a tombstone removes it). Records of other kinds are skipped."""
    state = LoadedState()
    async for key, value in records:
        state.records += 1
        if key is None:
            continue
        try:
            which = rec.decode_key(key)
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
                else:
                    state.groups[which.group] = rec.decode_group_value(value)
        except (rec.RecordError, UnicodeDecodeError) as exc:
            log.error("unreadable record in the offsets topic: %s", exc)
    return state
