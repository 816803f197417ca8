"""Idempotent producers: producer ids, per-partition sequence state, and the produce-path checks.

Built by ``Broker.start()`` before the listeners open: the id block and the sequence snapshot are
loaded, then the batches written after the snapshot are replayed from the logs, so a retry
that reached the log before a crash is still recognised as a duplicate. Produce calls
:meth:`ProducerState.check` before an append and :meth:`ProducerState.appended` after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kio.schema.errors import ErrorCode

from brokerd.errors import CloseConnection
from brokerd.producers import ProducerIdAllocator, ProducerStateManager
from brokerd.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    HEADER_SIZE,
    BatchHeader,
    StampedBatch,
    control_batch,
    control_type,
    read_header,
    stamp_leader_epoch,
    validate_and_stamp,
)
from brokerd.storage import PartitionLog
from brokerd.storage.txnindex import AbortedTxn, AbortedTxnIndex

log = logging.getLogger("brokerd.producers")

SNAPSHOT_INTERVAL_S = 10.0


class ProduceRefused(Exception):
    """A batch the sequence state refuses (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = int(code)


class ProducerState:
    """The broker's idempotent-producer subsystem."""

    def __init__(self, data_dir: str, *, expiration_ms: int, fault_every: int = 0) -> None:
        self.ids = ProducerIdAllocator(data_dir)
        self.sequences = ProducerStateManager(data_dir, expiration_ms=expiration_ms)
        # Tests only: drop the connection after every Nth idempotent append, before answering.
        self.fault_every = fault_every
        self._idempotent_appends = 0
        self._dirty = False
        self._snapshot_task: asyncio.Future | None = None
        # per partition: (the log it was loaded for, its aborted-transaction index)
        self._txn_indexes: dict[tuple[str, int], tuple[PartitionLog, AbortedTxnIndex]] = {}
        #: (topic, partition) -> the partition's log or None; set by Broker.start
        self.log_of: Callable[[str, int], PartitionLog | None] | None = None
        #: told of every marker this broker writes as a leader (log, producer id, commit, offset)
        self.marker_listeners: list[Callable[[PartitionLog, int, bool, int], None]] = []

    # --- start / stop ---------------------------------------------------------------------
    def start(self, logs: Iterable[PartitionLog]) -> None:
        """Load ids and the snapshot, replay the logs past it, then snapshot periodically."""
        self.ids.load()
        self.sequences.load_snapshot()
        replayed = self._replay(logs)
        if replayed:
            log.info("producer state: replayed %d idempotent batches from the log", replayed)
        self._snapshot_task = asyncio.ensure_future(self._snapshot_loop())

    def _replay(self, logs: Iterable[PartitionLog]) -> int:
        """Feed idempotent batch headers found after each partition's snapshot offset.

        Without a snapshot entry for a partition the active segment is replayed (Kafka snapshots
        at segment rolls; producers idle for longer than that have nothing left to retry).
        """
        applied = 0
        for plog in logs:
            tp = (plog.topic, plog.partition)
            start = self.sequences.replay_from(tp)
            if start > plog.next_offset:
                self.sequences.truncate(tp, plog.next_offset)
                start = plog.next_offset
            if start == 0 and plog.segments:
                start = plog.active.base
            # The sequence span comes from the offset span, as Kafka's lastSequence: the cleaner
            # may have removed records (or all of them) from the batch.
            for h in plog.batch_headers_from(start):
                if h.last_offset < start or h.producer_id < 0:
                    continue
                if h.is_control:  # a transaction marker: the transaction ends
                    readable = h.base_offset >= plog.start_offset
                    found = plog.read(h.base_offset, h.size, True) if readable else b""
                    self._end_txn(plog, h, control_type(found) if found else None)
                    applied += 1
                    continue
                applied += self.sequences.replay([(
                    tp, h.base_offset, h.last_offset, h.producer_id, h.producer_epoch, h.base_sequence,
                    h.last_offset - h.base_offset + 1,
                )])  # fmt: skip
                if h.is_transactional:
                    self.sequences.begin_txn(tp, h.producer_id, h.base_offset)
        return applied

    def truncated(self, plog: PartitionLog) -> None:
        """A follower cut its log back (KIP-101 truncation): forget the batches past the new log
        end, then take from the log's active segment the producers whose every remembered batch
        was cut, so that as a new leader it still recognises their retries of older batches."""
        tp = (plog.topic, plog.partition)
        self.sequences.truncate(tp, plog.next_offset)
        if not plog.segments:
            return
        known = set(self.sequences.last_offsets(tp))
        for h in plog.batch_headers_from(plog.active.base):
            if h.producer_id >= 0 and h.producer_id not in known and h.last_offset < plog.next_offset:
                self.sequences.on_append(tp, h.producer_id, h.producer_epoch, h.base_sequence,
                                         h.last_offset - h.base_offset + 1, h.base_offset, h.last_offset)
        self._dirty = True

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            self.sequences.expire()
            if self._dirty:
                self._dirty = False
                try:
                    await asyncio.to_thread(self.sequences.write_snapshot)
                except OSError as exc:
                    log.error("cannot write the producer state snapshot: %s", exc)

    async def stop(self) -> None:
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
        try:
            self.sequences.write_snapshot()
        except OSError as exc:
            log.error("cannot write the producer state snapshot: %s", exc)

    # --- the produce path -----------------------------------------------------------------
    def check(self, topic: str, partition: int, records: bytes | bytearray | memoryview) -> int | None:
        """Before appending: None to append, the original base offset of a duplicate, or raise
        :class:`ProduceRefused`."""
        if len(records) < HEADER_SIZE:
            return None
        header = read_header(records)
        if header.producer_id < 0:
            return None
        check = self.sequences.check(
            (topic, partition), header.producer_id, header.producer_epoch, header.base_sequence,
            header.records_count,
        )  # fmt: skip
        if check.error is not ErrorCode.none:
            raise ProduceRefused(check.error, check.message)
        if check.duplicate is not None:
            return check.duplicate.first_offset
        return None

    def appended(
        self, topic: str, partition: int, records: bytes | bytearray | memoryview, batches: list[StampedBatch]
    ) -> None:
        """After appending: record the idempotent batches (and run the test-only fault hook)."""
        pos = 0
        idempotent = False
        plog = None
        for batch in batches:
            header = read_header(records, pos)
            if header.producer_id < 0:
                pos += batch.size
                continue
            idempotent = True
            if header.is_control:  # a marker (the coordinator's, or a follower copying its leader's)
                if plog is None:
                    plog = self._log_of(topic, partition)
                if plog is not None:
                    marker = header._replace(base_offset=batch.base_offset)
                    self._end_txn(plog, marker, control_type(records, pos))
                pos += batch.size
                continue
            pos += batch.size
            if header.is_transactional:
                self.sequences.begin_txn((topic, partition), header.producer_id, batch.base_offset)
            self.sequences.on_append(
                (topic, partition), header.producer_id, header.producer_epoch, header.base_sequence,
                header.records_count, batch.base_offset, batch.base_offset + header.last_offset_delta,
                batch.max_timestamp,
            )  # fmt: skip
        if idempotent:
            self._dirty = True
            if self.fault_every:
                self._idempotent_appends += 1
                if self._idempotent_appends % self.fault_every == 0:
                    log.warning("TEST FAULT: dropping the connection after appending to %s-%d",
                                topic, partition)
                    raise CloseConnection("test fault: dropped after append, before the response")

    # --- transactions: markers, the last stable offset, aborted transactions ------------------
    def _log_of(self, topic: str, partition: int) -> PartitionLog | None:
        return self.log_of(topic, partition) if self.log_of is not None else None

    def txn_index(self, plog: PartitionLog) -> AbortedTxnIndex:
        tp = (plog.topic, plog.partition)
        held = self._txn_indexes.get(tp)
        if held is None or held[0] is not plog:  # first use, or the topic was deleted and made again
            index = AbortedTxnIndex.load(plog.dir, plog.next_offset)
            self._txn_indexes[tp] = (plog, index)
            return index
        return held[1]

    def _end_txn(self, plog: PartitionLog, header: BatchHeader, kind: int | None) -> None:
        """A marker at ``header.base_offset`` ends the producer's transaction on the partition; an
        abort marker records the transaction in the aborted-transaction index."""
        tp = (plog.topic, plog.partition)
        offset = header.base_offset
        first = self.sequences.end_txn(tp, header.producer_id, header.producer_epoch, offset)
        self._dirty = True
        if kind == CONTROL_ABORT and first is not None:
            lso = self.last_stable_offset(plog, offset + 1)
            segment = plog.segments[-1].base
            for seg in plog.segments:
                if seg.base <= offset:
                    segment = seg.base
            self.txn_index(plog).add(AbortedTxn(header.producer_id, first, offset, lso), segment)

    def write_marker(
        self, plog: PartitionLog, producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
        *, leader_epoch: int | None = None, now_ms: int,
    ) -> int:
        """Append a commit or abort marker for a producer (WriteTxnMarkers) and end its
        transaction here. Returns its offset; raises :class:`ProduceRefused` for a marker of an
        older epoch than the producer's (a fenced coordinator's). OSError from the append."""
        tp = (plog.topic, plog.partition)
        entry = self.sequences.entry(tp, producer_id)
        if entry is not None and producer_epoch < entry.epoch:
            raise ProduceRefused(
                ErrorCode.invalid_producer_epoch,
                f"marker epoch {producer_epoch} of producer {producer_id} is older than {entry.epoch}",
            )
        batch = control_batch(commit, producer_id, producer_epoch, coordinator_epoch, now_ms)
        stamped, count = validate_and_stamp(batch, plog.next_offset, len(batch) + 1)
        if leader_epoch is not None:
            stamp_leader_epoch(batch, stamped, leader_epoch)
        base = plog.append(batch, stamped, count)
        kind = CONTROL_COMMIT if commit else CONTROL_ABORT
        self._end_txn(plog, read_header(batch)._replace(base_offset=base), kind)
        for listener in self.marker_listeners:
            listener(plog, producer_id, commit, base)
        return base

    def last_stable_offset(self, plog: PartitionLog, high_watermark: int) -> int:
        """Kafka's LSO: the first offset of the oldest open transaction, else the high watermark."""
        first = self.sequences.first_unstable_offset((plog.topic, plog.partition))
        if first is None or first >= plog.next_offset:  # (a recreated topic's stale entries)
            return high_watermark
        return min(first, high_watermark)

    def aborted_between(self, plog: PartitionLog, start: int, end: int) -> list[tuple[int, int, int]]:
        """(producer id, first offset, marker offset) of the aborted transactions with records in
        [start, end): what the log cleaner removes."""
        entries = self.txn_index(plog).between(start, end)
        return [(e.producer_id, e.first_offset, e.last_offset) for e in entries]

    def forget_aborted(self, plog: PartitionLog, spent: set[tuple[int, int]]) -> None:
        """The log cleaner removed every record of these aborted transactions (producer id,
        marker offset): Fetch no longer lists them, and their markers may go."""
        self.txn_index(plog).forget(spent)

    def aborted(self, plog: PartitionLog, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions with records in [start, end)."""
        return self.txn_index(plog).overlapping(start, end)
