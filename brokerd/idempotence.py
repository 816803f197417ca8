"""Idempotent producers: producer ids, per-partition sequence state, and the produce-path checks.

Built by ``Broker.start()`` before the listeners open: the id block and the sequence snapshot are
loaded, then the batches written after the snapshot are replayed from the logs, so a retry
that reached the log before a crash is still recognised as a duplicate. Produce calls
:meth:`ProducerState.check` before an append and :meth:`ProducerState.appended` after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from kio.schema.errors import ErrorCode

from brokerd.errors import CloseConnection
from brokerd.producers import ProducerIdAllocator, ProducerStateManager
from brokerd.records import HEADER_SIZE, StampedBatch, read_header
from brokerd.storage import PartitionLog

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
            batches = [
                (tp, h.base_offset, h.last_offset, h.producer_id, h.producer_epoch, h.base_sequence,
                 h.last_offset - h.base_offset + 1)
                for h in plog.batch_headers_from(start)
                if h.last_offset >= start and h.producer_id >= 0
            ]  # fmt: skip
            applied += self.sequences.replay(batches)
        return applied

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
        for batch in batches:
            header = read_header(records, pos)
            pos += batch.size
            if header.producer_id < 0:
                continue
            idempotent = True
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
