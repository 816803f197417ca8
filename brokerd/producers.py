"""Idempotent-producer state: producer id allocation and per-partition sequence tracking.

Kafka's ProducerIdManager / ProducerStateManager, reduced to what an idempotent (not
transactional) producer needs:

* :class:`ProducerIdAllocator` hands out producer ids from blocks reserved durably in
  ``DATA_DIR/__producer_state/producer_ids`` (one fsync per block), so ids never repeat across
  restarts.
* :class:`ProducerStateManager` keeps, per (topic, partition) and producer id, the epoch and the
  metadata of the last 5 batches. Before an append, :meth:`~ProducerStateManager.check` answers:
  append it, it is a duplicate (return the original offsets, do not write), or refuse with
  OUT_OF_ORDER_SEQUENCE_NUMBER / INVALID_PRODUCER_EPOCH. After an append,
  :meth:`~ProducerStateManager.on_append` records it. Call both in the same synchronous step as
  the append's offset assignment (no ``await`` in between), so concurrent requests cannot
  interleave.
* State survives restart: :meth:`~ProducerStateManager.write_snapshot` (periodically and at
  shutdown) plus :meth:`~ProducerStateManager.replay` of the batch headers that storage recovery
  finds after each partition's snapshot offset (:meth:`~ProducerStateManager.replay_from`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kio.schema.errors import ErrorCode

from brokerd.durable import atomic_write

log = logging.getLogger("brokerd.producers")

STATE_DIR = "__producer_state"
IDS_FILE = "producer_ids"
SNAPSHOT_FILE = "snapshot.json"
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
MAX_BATCHES_PER_PRODUCER = 5
INT32_MAX = 2**31 - 1

TopicPartition = tuple[str, int]


def increment_sequence(sequence: int, increment: int) -> int:
    """Kafka's DefaultRecordBatch.incrementSequence: sequences wrap to 0 after INT32_MAX."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


# --- producer ids ------------------------------------------------------------------------------


class ProducerIdAllocator:
    """Durable, never-repeating producer ids (blocks of ``block_size`` reserved with one fsync)."""

    def __init__(self, data_dir: str | os.PathLike[str], *, block_size: int = 1000) -> None:
        self.directory = Path(data_dir) / STATE_DIR
        self.path = self.directory / IDS_FILE
        self.block_size = block_size
        self._next = 0
        self._block_end = 0
        self._lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        reserved = 0
        if self.path.exists():
            try:
                reserved = int(self.path.read_text().strip() or 0)
            except ValueError:
                log.error("%s is unreadable; producer ids restart after a gap", self.path)
                reserved = int(time.time() * 1000)  # far past anything handed out before
        # Ids below the reserved mark may have been handed out before a crash: skip them.
        self._next = self._block_end = reserved
        self._loaded = True

    @property
    def reserved(self) -> int:
        """Every id below this may have been handed out already."""
        if not self._loaded:
            self.load()
        return self._block_end

    def allocate(self) -> int:
        """A fresh producer id. Blocks on an fsync once per ``block_size`` ids."""
        if not self._loaded:
            self.load()
        with self._lock:
            if self._next >= self._block_end:
                end = self._next + self.block_size
                atomic_write(self.path, f"{end}\n".encode())
                self._block_end = end
            pid = self._next
            self._next += 1
            return pid


# --- sequence state ----------------------------------------------------------------------------


@dataclass(slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp_ms: int = -1


class ProducerEntry:
    __slots__ = ("batches", "epoch", "last_timestamp_ms")

    def __init__(self, epoch: int, last_timestamp_ms: int) -> None:
        self.epoch = epoch
        self.batches: deque[BatchMetadata] = deque(maxlen=MAX_BATCHES_PER_PRODUCER)
        self.last_timestamp_ms = last_timestamp_ms

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        if epoch != self.epoch:
            return None
        for batch in self.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        return None


class AppendCheck(NamedTuple):
    """``error`` is ErrorCode.none to append; ``duplicate`` is set when the batch is a retry."""

    error: ErrorCode
    duplicate: BatchMetadata | None = None
    message: str = ""


APPEND_OK = AppendCheck(ErrorCode.none)


class ProducerStateManager:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        expiration_ms: int = 86_400_000,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.directory = Path(data_dir) / STATE_DIR
        self.snapshot_path = self.directory / SNAPSHOT_FILE
        self.expiration_ms = expiration_ms
        self._clock = clock
        self._partitions: dict[TopicPartition, dict[int, ProducerEntry]] = {}
        #: per partition, the next offset the state covers (the snapshot's or the last append's)
        self._covered: dict[TopicPartition, int] = {}
        self._snapshot_offsets: dict[TopicPartition, int] = {}
        #: per partition, producer id -> first offset of its open transaction: the first unstable
        #: offset, which bounds the last stable offset (Kafka's ongoingTxns)
        self._ongoing: dict[TopicPartition, dict[int, int]] = {}

    # -- the produce path ---------------------------------------------------------------------

    def check(
        self, tp: TopicPartition, producer_id: int, epoch: int, base_sequence: int, record_count: int
    ) -> AppendCheck:
        """Validate an idempotent batch before it is appended (Kafka's analyzeAndValidateProducerState)."""
        if producer_id < 0:
            return APPEND_OK  # not idempotent
        entry = self._partitions.get(tp, {}).get(producer_id)
        if entry is None:
            # Unknown producer (new, or its state expired): accept any sequence, as Kafka does.
            return APPEND_OK
        last_seq = increment_sequence(base_sequence, record_count - 1)
        duplicate = entry.find_duplicate(epoch, base_sequence, last_seq)
        if duplicate is not None:
            return AppendCheck(ErrorCode.none, duplicate, "duplicate batch")
        if epoch < entry.epoch:
            return AppendCheck(
                ErrorCode.invalid_producer_epoch,
                message=f"epoch {epoch} of producer {producer_id} is older than {entry.epoch}",
            )
        if epoch != entry.epoch:
            # A bumped epoch must start again at sequence 0.
            if base_sequence != 0:
                return AppendCheck(
                    ErrorCode.out_of_order_sequence_number,
                    message=f"new epoch {epoch} of producer {producer_id} starts at sequence {base_sequence}",
                )
            return APPEND_OK
        current = entry.last_seq
        if (
            current == NO_SEQUENCE
            or base_sequence == current + 1
            or (base_sequence == 0 and current == INT32_MAX)
        ):
            return APPEND_OK
        return AppendCheck(
            ErrorCode.out_of_order_sequence_number,
            message=f"producer {producer_id}: sequence {base_sequence} after {current}",
        )

    def on_append(
        self,
        tp: TopicPartition,
        producer_id: int,
        epoch: int,
        base_sequence: int,
        record_count: int,
        base_offset: int,
        last_offset: int | None = None,
        timestamp_ms: int = -1,
    ) -> None:
        """Record an appended idempotent batch (``last_offset`` defaults to base + count - 1)."""
        if producer_id < 0:
            return
        if last_offset is None:
            last_offset = base_offset + record_count - 1
        now = self._clock()
        producers = self._partitions.get(tp)
        if producers is None:
            producers = self._partitions[tp] = {}
        entry = producers.get(producer_id)
        if entry is None:
            entry = producers[producer_id] = ProducerEntry(epoch, now)
        elif epoch != entry.epoch:
            entry.epoch = epoch
            entry.batches.clear()
        entry.batches.append(
            BatchMetadata(
                base_sequence,
                increment_sequence(base_sequence, record_count - 1),
                base_offset,
                last_offset,
                timestamp_ms,
            )
        )
        entry.last_timestamp_ms = now
        if last_offset + 1 > self._covered.get(tp, 0):
            self._covered[tp] = last_offset + 1

    # -- transactions ---------------------------------------------------------------------------

    def begin_txn(self, tp: TopicPartition, producer_id: int, first_offset: int) -> None:
        """A transactional batch was appended: the producer's transaction is open from its first one."""
        ongoing = self._ongoing.get(tp)
        if ongoing is None:
            ongoing = self._ongoing[tp] = {}
        ongoing.setdefault(producer_id, first_offset)

    def end_txn(self, tp: TopicPartition, producer_id: int, epoch: int, marker_offset: int) -> int | None:
        """A commit or abort marker was appended: the first offset of the transaction it ends
        (None when the producer had none open here), and the producer's epoch moves up to the
        marker's (a bumped epoch fences older batches)."""
        ongoing = self._ongoing.get(tp)
        first = ongoing.pop(producer_id, None) if ongoing else None
        entry = self._partitions.get(tp, {}).get(producer_id)
        if entry is None:
            producers = self._partitions.setdefault(tp, {})
            entry = producers[producer_id] = ProducerEntry(epoch, self._clock())
        elif epoch > entry.epoch:
            entry.epoch = epoch
            entry.batches.clear()
        entry.last_timestamp_ms = self._clock()
        if marker_offset + 1 > self._covered.get(tp, 0):
            self._covered[tp] = marker_offset + 1
        return first

    def first_unstable_offset(self, tp: TopicPartition) -> int | None:
        """The first offset of the oldest open transaction of a partition, or None."""
        ongoing = self._ongoing.get(tp)
        return min(ongoing.values()) if ongoing else None

    def open_transactions(self, tp: TopicPartition) -> dict[int, int]:
        """Producer id -> first offset of each open transaction of a partition."""
        return dict(self._ongoing.get(tp, {}))

    # -- recovery -------------------------------------------------------------------------------

    def replay_from(self, tp: TopicPartition) -> int:
        """The first offset whose batch headers storage recovery should feed to :meth:`replay`."""
        return self._snapshot_offsets.get(tp, 0)

    def replay(self, batches: Iterable[tuple[TopicPartition, int, int, int, int, int, int]]) -> int:
        """Rebuild state from batch headers found in the log.

        Each item is ``(tp, base_offset, last_offset, producer_id, epoch, base_sequence,
        record_count)``, in log order per partition. Batches below the partition's snapshot offset
        and non-idempotent batches are skipped. Returns how many batches were applied.
        """
        applied = 0
        for tp, base_offset, last_offset, producer_id, epoch, base_sequence, record_count in batches:
            if producer_id < 0 or base_offset < self._snapshot_offsets.get(tp, 0):
                continue
            self.on_append(tp, producer_id, epoch, base_sequence, record_count, base_offset, last_offset)
            applied += 1
        return applied

    def truncate(self, tp: TopicPartition, log_end_offset: int) -> None:
        """The log was truncated to ``log_end_offset`` (a torn tail): forget later batches."""
        producers = self._partitions.get(tp)
        if producers:
            for pid in list(producers):
                entry = producers[pid]
                kept = [b for b in entry.batches if b.last_offset < log_end_offset]
                if not kept:
                    del producers[pid]
                elif len(kept) != len(entry.batches):
                    entry.batches.clear()
                    entry.batches.extend(kept)
        if self._snapshot_offsets.get(tp, 0) > log_end_offset:
            self._snapshot_offsets[tp] = log_end_offset
        if self._covered.get(tp, 0) > log_end_offset:
            self._covered[tp] = log_end_offset
        ongoing = self._ongoing.get(tp)
        if ongoing:
            for pid in [p for p, first in ongoing.items() if first >= log_end_offset]:
                del ongoing[pid]

    def truncate_head(self, tp: TopicPartition, log_start_offset: int) -> None:
        """Retention removed offsets below ``log_start_offset``: drop producers wholly before it."""
        producers = self._partitions.get(tp)
        if not producers:
            return
        for pid in list(producers):
            batches = producers[pid].batches
            if batches and batches[-1].last_offset < log_start_offset:
                del producers[pid]

    def remove_partition(self, tp: TopicPartition) -> None:
        self._partitions.pop(tp, None)
        self._covered.pop(tp, None)
        self._snapshot_offsets.pop(tp, None)
        self._ongoing.pop(tp, None)

    def expire(self, now_ms: int | None = None) -> int:
        """Forget producers idle longer than ``producer.id.expiration.ms``."""
        now = self._clock() if now_ms is None else now_ms
        removed = 0
        for tp, producers in self._partitions.items():
            ongoing = self._ongoing.get(tp, {})  # a producer with an open transaction stays
            for pid in [p for p, e in producers.items()
                        if now - e.last_timestamp_ms >= self.expiration_ms and p not in ongoing]:
                del producers[pid]
                removed += 1
        return removed

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot_document(self) -> dict:
        partitions = []
        for (topic, partition), producers in self._partitions.items():
            partitions.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "next_offset": self._covered.get((topic, partition), 0),
                    "producers": [
                        {
                            "id": pid,
                            "epoch": e.epoch,
                            "ts": e.last_timestamp_ms,
                            "batches": [
                                [b.first_seq, b.last_seq, b.first_offset, b.last_offset, b.timestamp_ms]
                                for b in e.batches
                            ],
                        }
                        for pid, e in producers.items()
                    ],
                    "ongoing": self._ongoing_document((topic, partition)),
                }
            )
        for (topic, partition), offset in self._covered.items():
            if (topic, partition) not in self._partitions:
                partitions.append(
                    {"topic": topic, "partition": partition, "next_offset": offset, "producers": [],
                     "ongoing": self._ongoing_document((topic, partition))}
                )
        return {"version": 1, "partitions": partitions}

    def _ongoing_document(self, tp: TopicPartition) -> list[list[int]]:
        return [[pid, first] for pid, first in self._ongoing.get(tp, {}).items()]

    def write_snapshot(self) -> None:
        """Write the state durably (atomic replace). Blocking: run off the loop if large."""
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.snapshot_path, json.dumps(self.snapshot_document(), separators=(",", ":")).encode()
        )
        self._snapshot_offsets = dict(self._covered)

    def load_snapshot(self) -> None:
        self._partitions.clear()
        self._covered.clear()
        self._snapshot_offsets.clear()
        self._ongoing.clear()
        if not self.snapshot_path.exists():
            return
        try:
            doc = json.loads(self.snapshot_path.read_bytes())
        except (OSError, ValueError) as exc:
            log.error(
                "producer state snapshot %s unreadable (%s); rebuilding from the log", self.snapshot_path, exc
            )
            return
        for part in doc.get("partitions", []):
            tp = (part["topic"], int(part["partition"]))
            producers: dict[int, ProducerEntry] = {}
            for p in part.get("producers", []):
                entry = ProducerEntry(int(p["epoch"]), int(p["ts"]))
                for first_seq, last_seq, first_offset, last_offset, ts in p["batches"]:
                    entry.batches.append(BatchMetadata(first_seq, last_seq, first_offset, last_offset, ts))
                producers[int(p["id"])] = entry
            if producers:
                self._partitions[tp] = producers
            if part.get("ongoing"):
                self._ongoing[tp] = {int(pid): int(first) for pid, first in part["ongoing"]}
            self._covered[tp] = self._snapshot_offsets[tp] = int(part.get("next_offset", 0))

    # -- introspection --------------------------------------------------------------------------

    def entry(self, tp: TopicPartition, producer_id: int) -> ProducerEntry | None:
        return self._partitions.get(tp, {}).get(producer_id)

    def last_offsets(self, tp: TopicPartition) -> dict[int, int]:
        """Producer id -> last offset of its last batch, for each known producer of a partition
        (the log cleaner keeps those batches)."""
        producers = self._partitions.get(tp, {})
        return {pid: e.batches[-1].last_offset for pid, e in producers.items() if e.batches}

    def describe(self, tp: TopicPartition) -> list[tuple[int, int, int, int, int]]:
        """(producer id, epoch, last sequence, last batch timestamp, first offset of its open
        transaction or -1) of each producer a partition knows (DescribeProducers)."""
        ongoing = self._ongoing.get(tp, {})
        out = []
        for pid, e in self._partitions.get(tp, {}).items():
            last_ts = e.batches[-1].timestamp_ms if e.batches else -1
            out.append((pid, e.epoch, e.last_seq, last_ts, ongoing.get(pid, -1)))
        return out

    def producer_count(self) -> int:
        return sum(len(p) for p in self._partitions.values())
