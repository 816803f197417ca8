"""The transaction coordinator: Kafka's TransactionCoordinator on a broker that hosts
``__transaction_state``.

Each transactional id's state (producer id and epoch, timeout, state, partitions, times) is a
record of ``__transaction_state`` (brokerd/txn/log.py), keyed by the id, in the partition its
hash picks; the topic is compacted and is created on first use. A state change is answered
only once its record is fsynced; the in-memory state follows the log, and a broker that starts
reads the topic back and finishes every transaction it finds prepared.

States and transitions are Kafka's (transaction version 1: the epoch is bumped by
InitProducerId, never per transaction):

* InitProducerId: a new id gets a producer id; an existing one gets its epoch bumped (a new
  producer id once the epoch is exhausted), which fences the previous producer. An open
  transaction of the id is aborted first (CONCURRENT_TRANSACTIONS until that is done).
* AddPartitionsToTxn / AddOffsetsToTxn: Empty or Complete* -> Ongoing, with the partitions.
* EndTxn: Ongoing -> PrepareCommit / PrepareAbort (answered once durable), then markers go to
  every partition of the transaction (the marker in the group's ``__consumer_offsets``
  partition commits or drops the offsets committed in it), and the state becomes
  CompleteCommit / CompleteAbort.
* A transaction open longer than its timeout is aborted with a bumped epoch: its producer is
  fenced (PRODUCER_FENCED at its next request to the coordinator, INVALID_PRODUCER_EPOCH at a
  partition).
* Ids idle for ``transactional.id.expiration.ms`` are removed (a tombstone).

On a standalone broker the markers are appended to the local partitions directly; the
WriteTxnMarkers API appends them the same way for a coordinator elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode as E

from brokerd.coordination.internal_topics import partition_for as group_partition_for
from brokerd.groups import GroupCoordinator, StoreError
from brokerd.idempotence import ProduceRefused, ProducerState
from brokerd.records import build_batch, read_varint, validate_and_stamp
from brokerd.storage import Flusher, LogManager, PartitionLog
from brokerd.storage.compaction import decode
from brokerd.txn import log as txnlog
from brokerd.txn.log import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    DEAD,
    EMPTY,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    PREPARE_EPOCH_FENCE,
    STATE_NAMES,
    TxnLogValue,
)
from brokerd.txn.offsets import LegacyTxnOffsets

log = logging.getLogger("brokerd.txn")

OFFSETS_TOPIC = "__consumer_offsets"
MAX_EPOCH = 32767
NO_PRODUCER_ID = -1
RETRY_S = 0.5
SETTLE_S = 1.0


@dataclass(slots=True)
class TxnConfig:
    """Kafka's transaction coordinator configs."""

    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    partitions: int = 50  # transaction.state.log.num.partitions
    segment_bytes: int = 104_857_600  # transaction.state.log.segment.bytes
    abort_interval_ms: int = 10_000  # transaction.abort.timed.out.transaction.cleanup.interval.ms
    id_expiration_ms: int = 604_800_000  # transactional.id.expiration.ms
    offsets_partitions: int = 50  # offsets.topic.num.partitions (AddOffsetsToTxn's partition)


@dataclass(slots=True)
class TxnMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: int
    partitions: set[tuple[str, int]] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1
    last_producer_epoch: int = -1
    #: the state a write in flight moves to (another request meanwhile: CONCURRENT_TRANSACTIONS)
    pending: int | None = None
    #: resolved once a prepared transaction is complete (markers written, Complete* durable)
    completing: asyncio.Future | None = None

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def value(self, **changes) -> TxnLogValue:
        v = TxnLogValue(
            self.producer_id,
            self.producer_epoch,
            self.timeout_ms,
            self.state,
            set(self.partitions),
            self.last_update_ms,
            self.start_ms,
        )
        for name, val in changes.items():
            setattr(v, name, val)
        return v

    def apply(self, v: TxnLogValue) -> None:
        self.producer_id, self.producer_epoch, self.timeout_ms = v.producer_id, v.producer_epoch, v.timeout_ms
        self.state, self.partitions = v.state, set(v.partitions)
        self.last_update_ms, self.start_ms = v.last_update_ms, v.start_ms


class TransactionCoordinator:
    def __init__(
        self,
        *,
        logs: LogManager,
        flusher: Flusher,
        producers: ProducerState,
        groups: GroupCoordinator,
        config: TxnConfig,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.logs = logs
        self.flusher = flusher
        self.producers = producers
        self.groups = groups
        self.config = config
        self._clock = clock
        self.txns: dict[str, TxnMetadata] = {}
        self.offsets = LegacyTxnOffsets(producers.sequences.directory)
        self.coordinator_epoch = 0
        self._tasks: set[asyncio.Future] = set()
        self._loop_task: asyncio.Future | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Read ``__transaction_state`` back (when it exists), finish prepared transactions,
        and start the timeout and expiration loop."""
        self.producers.sequences.directory.mkdir(parents=True, exist_ok=True)
        self.offsets.load()
        self.groups.transactional_pending = self.offsets.unstable
        topic = self.logs.topics.get(txnlog.TOPIC)
        if topic is not None:
            loaded = 0
            for plog in topic.partitions:
                loaded += self._load(plog)
            log.info(
                "transaction coordinator: %d transactional id(s) from %d record(s) of %s",
                len(self.txns),
                loaded,
                txnlog.TOPIC,
            )
        for meta in self.txns.values():
            if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                self._begin_completion(meta)
        self._loop_task = asyncio.ensure_future(self._housekeeping())

    def _load(self, plog: PartitionLog) -> int:
        offset = plog.start_offset
        records = 0
        while offset < plog.next_offset:
            data = plog.read(offset, 1 << 20, True)
            if not data:
                break
            pos = 0
            view = memoryview(data)
            while pos + 61 <= len(data):
                h, payload, recs = decode(view[pos:])
                pos += h.size
                offset = h.last_offset + 1
                if h.is_control:
                    continue
                for r in recs:
                    if r.key is None:
                        continue
                    tid = txnlog.decode_key(bytes(r.key))
                    if tid is None:
                        continue
                    records += 1
                    value = _record_value(payload, r)
                    if value is None:
                        self.txns.pop(tid, None)
                        continue
                    v = txnlog.decode_value(value)
                    meta = self.txns.get(tid)
                    if meta is None:
                        meta = self.txns[tid] = TxnMetadata(
                            tid, v.producer_id, v.producer_epoch, v.timeout_ms, v.state
                        )
                    meta.apply(v)
        return records

    async def close(self) -> None:
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks) + ([self._loop_task] if self._loop_task else []):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the log ---------------------------------------------------------------------------
    def ensure_topic(self) -> None:
        """Create ``__transaction_state`` on first use (as Kafka does on the first FindCoordinator)."""
        if txnlog.TOPIC in self.logs.topics:
            return
        self.logs.create_topic(
            txnlog.TOPIC,
            self.config.partitions,
            {
                "cleanup.policy": "compact",
                "segment.bytes": str(self.config.segment_bytes),
            },
        )

    def partition_for(self, transactional_id: str) -> int:
        topic = self.logs.topics.get(txnlog.TOPIC)
        count = len(topic.partitions) if topic is not None else self.config.partitions
        return txnlog.partition_for(transactional_id, count)

    async def _write(self, transactional_id: str, value: TxnLogValue | None) -> None:
        """Append one state record and wait for its fsync. OSError when it could not be written."""
        self.ensure_topic()
        plog = self.logs.topics[txnlog.TOPIC].partitions[self.partition_for(transactional_id)]
        record = txnlog.encode_value(value) if value is not None else None
        batch = build_batch([(txnlog.encode_key(transactional_id), record)], timestamp_ms=self._clock())
        stamped, count = validate_and_stamp(batch, plog.next_offset, len(batch) + 1)
        plog.append(batch, stamped, count)
        await self.flusher.wait([plog])

    async def _transition(self, meta: TxnMetadata, value: TxnLogValue) -> E:
        """Write ``value`` and apply it to ``meta``; COORDINATOR_NOT_AVAILABLE if the write failed."""
        meta.pending = value.state
        try:
            await self._write(meta.transactional_id, value)
        except OSError as exc:
            log.error("cannot write the state of transactional id %s: %s", meta.transactional_id, exc)
            return E.coordinator_not_available
        finally:
            meta.pending = None
        meta.apply(value)
        return E.none

    # --- InitProducerId ----------------------------------------------------------------------
    async def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        producer_id: int = -1,
        producer_epoch: int = -1,
        *,
        allocate: Callable[[], int],
    ) -> tuple[E, int, int]:
        if not transactional_id:
            return E.invalid_request, -1, -1
        if timeout_ms <= 0 or timeout_ms > self.config.max_timeout_ms:
            return E.invalid_transaction_timeout, -1, -1
        try:
            self.ensure_topic()
        except OSError as exc:
            log.error("cannot create %s: %s", txnlog.TOPIC, exc)
            return E.coordinator_not_available, -1, -1
        meta = self.txns.get(transactional_id)
        if meta is not None:
            await self._settled(meta)
        now = self._clock()
        fresh = meta is None
        if meta is None:
            meta = TxnMetadata(transactional_id, allocate(), -1, timeout_ms, EMPTY, last_update_ms=now)
        if meta.pending is not None:
            return E.concurrent_transactions, -1, -1
        if producer_id != NO_PRODUCER_ID and not fresh:
            # KIP-360: a producer resuming after an error names what it had; anything else is fenced
            if producer_id != meta.producer_id or producer_epoch not in (
                meta.producer_epoch,
                meta.last_producer_epoch,
            ):
                return E.producer_fenced, -1, -1
            if producer_epoch == meta.last_producer_epoch and meta.state == EMPTY:
                return E.none, meta.producer_id, meta.producer_epoch  # a retried bump: already done
        if meta.state in (PREPARE_COMMIT, PREPARE_ABORT, PREPARE_EPOCH_FENCE, DEAD):
            return E.concurrent_transactions, -1, -1
        if meta.state == ONGOING:
            # The previous producer's transaction is aborted first, under a bumped epoch.
            error = await self._abort_fencing(meta)
            if error is not E.none:
                return error, -1, -1
            await self._settled(meta)
            if meta.state != COMPLETE_ABORT or meta.pending is not None:
                return E.concurrent_transactions, -1, -1
        pid, epoch = meta.producer_id, meta.producer_epoch + 1
        if epoch >= MAX_EPOCH - 1:  # the epoch is exhausted: a new producer id
            pid, epoch = allocate(), 0
        value = meta.value(
            producer_id=pid,
            producer_epoch=epoch,
            timeout_ms=timeout_ms,
            state=EMPTY,
            partitions=set(),
            start_ms=-1,
            last_update_ms=now,
        )
        if fresh:
            self.txns[transactional_id] = meta
        previous_epoch = meta.producer_epoch
        error = await self._transition(meta, value)
        if error is not E.none:
            if fresh:
                self.txns.pop(transactional_id, None)
            return error, -1, -1
        meta.last_producer_epoch = previous_epoch if pid == meta.producer_id else -1
        return E.none, pid, epoch

    # --- AddPartitionsToTxn / AddOffsetsToTxn -------------------------------------------------
    def _producer(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> tuple[TxnMetadata | None, E | None]:
        """The id's state if the producer is its current one, else the error to answer."""
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return None, E.invalid_producer_id_mapping
        if meta.producer_epoch != producer_epoch:
            return None, E.producer_fenced
        return meta, None

    async def add_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: list[tuple[str, int]]
    ) -> E:
        if (current := self.txns.get(transactional_id)) is not None:
            await self._settled(current)
        meta, error = self._producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return error
        if meta.pending is not None or meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return E.concurrent_transactions
        if meta.state in (PREPARE_EPOCH_FENCE, DEAD):
            return E.invalid_txn_state
        wanted = set(partitions)
        if meta.state == ONGOING and wanted <= meta.partitions:
            return E.none
        now = self._clock()
        start = meta.start_ms if meta.state == ONGOING else now
        value = meta.value(
            state=ONGOING, partitions=meta.partitions | wanted, start_ms=start, last_update_ms=now
        )
        return await self._transition(meta, value)

    def verify(self, transactional_id: str, producer_id: int, producer_epoch: int, tp: tuple[str, int]) -> E:
        """KIP-890's check that a partition is in the producer's open transaction (no write)."""
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return E.invalid_producer_id_mapping
        if producer_epoch < meta.producer_epoch:
            return E.producer_fenced
        if meta.pending is not None or meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return E.concurrent_transactions
        if meta.state == ONGOING and tp in meta.partitions:
            return E.none
        return E.invalid_txn_state

    def offsets_partition(self, group_id: str) -> tuple[str, int]:
        """The ``__consumer_offsets`` partition of a group (Kafka's partitionFor)."""
        topic = self.logs.topics.get(OFFSETS_TOPIC)  # the group coordinator's own partitioning
        count = len(topic.partitions) if topic is not None else self.config.offsets_partitions
        return OFFSETS_TOPIC, group_partition_for(group_id, count)

    # --- TxnOffsetCommit ----------------------------------------------------------------------
    def check_offset_commit(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> E:
        meta, error = self._producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return error
        if (
            meta.pending is not None
            or meta.state != ONGOING
            or self.offsets_partition(group_id) not in meta.partitions
        ):
            return E.invalid_txn_state  # AddOffsetsToTxn first (and not once the transaction ends)
        return E.none

    # --- EndTxn ----------------------------------------------------------------------------
    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool) -> E:
        meta, error = self._producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return error
        if meta.pending is not None:
            return E.concurrent_transactions
        state = meta.state
        if state == ONGOING:
            value = meta.value(
                state=PREPARE_COMMIT if commit else PREPARE_ABORT, last_update_ms=self._clock()
            )
            error = await self._transition(meta, value)
            if error is E.none:
                self._begin_completion(meta)
            return error
        if state == COMPLETE_COMMIT:
            return E.none if commit else E.invalid_txn_state
        if state == COMPLETE_ABORT:
            return E.none if not commit else E.invalid_txn_state
        if state == PREPARE_COMMIT:
            return E.concurrent_transactions if commit else E.invalid_txn_state
        if state == PREPARE_ABORT:
            return E.concurrent_transactions if not commit else E.invalid_txn_state
        return E.invalid_txn_state  # Empty: no transaction to end

    async def _abort_fencing(self, meta: TxnMetadata) -> E:
        """Abort an open transaction under a bumped epoch (InitProducerId of a new producer, or
        the timeout): the old producer's batches and requests are refused from now on."""
        epoch = min(meta.producer_epoch + 1, MAX_EPOCH - 1)
        previous = meta.producer_epoch
        value = meta.value(producer_epoch=epoch, state=PREPARE_ABORT, last_update_ms=self._clock())
        error = await self._transition(meta, value)
        if error is E.none:
            meta.last_producer_epoch = previous
            self._begin_completion(meta)
        return error

    async def _settled(self, meta: TxnMetadata) -> None:
        """Wait a little for a prepared transaction to complete: the producer's next request
        (AddPartitionsToTxn of its next transaction, InitProducerId) is answered then rather
        than with CONCURRENT_TRANSACTIONS, which clients retry only after a backoff."""
        fut = meta.completing
        if fut is not None and not fut.done() and meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), SETTLE_S)

    def _begin_completion(self, meta: TxnMetadata) -> None:
        meta.completing = asyncio.get_running_loop().create_future()
        self._spawn(self._complete(meta, meta.completing))

    async def _complete(self, meta: TxnMetadata, fut: asyncio.Future) -> None:
        """Markers to every partition of a prepared transaction, its group offsets decided, then
        CompleteCommit / CompleteAbort. Retried until done (a storage error, a restart)."""
        try:
            await self._write_completion(meta)
        finally:
            if not fut.done():
                fut.set_result(None)

    async def _write_completion(self, meta: TxnMetadata) -> None:
        commit = meta.state == PREPARE_COMMIT
        pid, epoch = meta.producer_id, meta.producer_epoch
        remaining = sorted(meta.partitions)
        while not self._closed:
            written: list[PartitionLog] = []
            failed = []
            for tp in remaining:
                topic, index = tp
                plog = self.logs.log(topic, index)
                if plog is None:
                    continue  # a deleted topic
                try:
                    self.producers.write_marker(
                        plog, pid, epoch, commit, self.coordinator_epoch, now_ms=self._clock()
                    )
                except ProduceRefused as exc:  # a newer epoch wrote there: nothing to end
                    log.warning("marker for producer %d on %s-%d refused: %s", pid, topic, index, exc)
                    continue
                except OSError as exc:
                    log.error("cannot write a marker to %s-%d: %s", topic, index, exc)
                    failed.append(tp)
                    continue
                written.append(plog)
            try:
                if written:
                    await self.flusher.wait(written)
                await self.offsets.complete(pid, commit, self.groups)
            except (OSError, StoreError) as exc:
                log.error("cannot finish the transaction of %s: %s", meta.transactional_id, exc)
                failed = failed or remaining
            if failed:
                remaining = failed
                await asyncio.sleep(RETRY_S)
                continue
            break
        if self._closed:
            return
        value = meta.value(
            state=COMPLETE_COMMIT if commit else COMPLETE_ABORT,
            partitions=set(),
            last_update_ms=self._clock(),
        )
        while not self._closed:
            if await self._transition(meta, value) is E.none:
                return
            await asyncio.sleep(RETRY_S)

    # --- timeouts and expiration ---------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.config.abort_interval_ms / 1000)
            try:
                await self.abort_timed_out()
                await self.expire_ids()
            except Exception:
                log.exception("transaction housekeeping failed")

    async def abort_timed_out(self) -> int:
        now = self._clock()
        expired = [
            m
            for m in self.txns.values()
            if m.state == ONGOING and m.pending is None and m.start_ms + m.timeout_ms < now
        ]
        for meta in expired:
            log.info(
                "aborting the transaction of %s (producer %d, epoch %d): open longer than %d ms",
                meta.transactional_id,
                meta.producer_id,
                meta.producer_epoch,
                meta.timeout_ms,
            )
            await self._abort_fencing(meta)
        return len(expired)

    async def expire_ids(self) -> int:
        now = self._clock()
        idle = [
            m
            for m in self.txns.values()
            if m.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT)
            and m.pending is None
            and m.last_update_ms + self.config.id_expiration_ms < now
        ]
        for meta in idle:
            meta.pending = DEAD
            try:
                await self._write(meta.transactional_id, None)
            except OSError:
                meta.pending = None
                continue
            self.txns.pop(meta.transactional_id, None)
        return len(idle)

    # --- DescribeTransactions / ListTransactions -----------------------------------------------
    def describe(self, transactional_id: str) -> TxnMetadata | None:
        return self.txns.get(transactional_id)

    def listing(self) -> list[TxnMetadata]:
        return list(self.txns.values())


def _record_value(payload: bytes, r) -> bytes | None:
    """The value bytes of a decoded record (compaction.decode gives positions, not the value)."""
    pos = r.rest_at
    _off, pos = read_varint(payload, pos)
    key_len, pos = read_varint(payload, pos)
    pos += max(key_len, 0)
    value_len, pos = read_varint(payload, pos)
    if value_len < 0:
        return None
    return bytes(payload[pos : pos + value_len])
