"""The transaction coordinator: Kafka's TransactionCoordinator on a broker that hosts
``__transaction_state``.

Each transactional id's state (producer id and epoch, timeout, state, partitions, times) is a
record of ``__transaction_state`` (brokerd/txn/log.py), keyed by the id, in the partition its
hash picks; the topic is compacted, replicated in a cluster, and created on first use
(brokerd/coordination/internal_topics.py). The coordinator of an id is the leader of that
partition: it loads the partition from its log when it becomes leader (the ids answer
COORDINATOR_LOAD_IN_PROGRESS meanwhile) and finishes every transaction it finds prepared;
a former leader forgets the partition's ids (NOT_COORDINATOR). A state change is answered only
once its record is acknowledged (fsynced, and held by the in-sync replicas in a cluster).

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

Markers go to each partition's current leader (brokerd/txn/markers.py): appended here for the
partitions this broker leads, sent with WriteTxnMarkers to the other brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode as E

from brokerd.coordination.internal_topics import AppendError, partition_for
from brokerd.groups import GroupCoordinator, StoreError
from brokerd.idempotence import ProducerState
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
#: how long a state change waits for its acknowledgement (Kafka: the request timeout), then
#: COORDINATOR_NOT_AVAILABLE and the client retries
STATE_APPEND_TIMEOUT_S = 5.0


@dataclass(slots=True)
class TxnConfig:
    """Kafka's transaction coordinator configs."""

    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    abort_interval_ms: int = 10_000  # transaction.abort.timed.out.transaction.cleanup.interval.ms
    id_expiration_ms: int = 604_800_000  # transactional.id.expiration.ms
    offsets_partitions: int = 50  # offsets.topic.num.partitions (AddOffsetsToTxn's partition)


#: append(partition, [(key, value)]) -> the base offset once acknowledged; AppendError otherwise
Append = Callable[[int, list[tuple[bytes, bytes | None]]], Awaitable[int]]
#: send(producer id, epoch, commit, coordinator epoch, partitions) -> the partitions to retry
SendMarkers = Callable[[int, int, bool, int, list[tuple[str, int]]], Awaitable[list[tuple[str, int]]]]


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
        producers: ProducerState,
        groups: GroupCoordinator,
        config: TxnConfig,
        append: Append,
        send_markers: SendMarkers,
        partition_count: Callable[[], int | None],
        offsets_partition_count: Callable[[], int | None],
        leader_epoch: Callable[[int], int],
        ensure_topic: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.producers = producers
        self.groups = groups
        self.config = config
        self._append = append
        self._send_markers = send_markers
        self._partition_count = partition_count
        self._offsets_partition_count = offsets_partition_count
        self._leader_epoch = leader_epoch  # a partition's loaded leader epoch: its markers' coordinator epoch
        self._ensure_topic = ensure_topic  # an InitProducerId may come before any FindCoordinator
        self._clock = clock
        self.txns: dict[str, TxnMetadata] = {}  # the ids of the partitions loaded here
        self.loading: set[int] = set()
        self.loaded: set[int] = set()
        self.offsets = LegacyTxnOffsets(producers.sequences.directory)
        self._tasks: set[asyncio.Future] = set()
        self._loop_task: asyncio.Future | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """The transactional offsets held here, and the timeout and expiration loop. The
        partitions of ``__transaction_state`` come and go with their leadership (:meth:`load`)."""
        self.producers.sequences.directory.mkdir(parents=True, exist_ok=True)
        self.offsets.load()
        self.groups.transactional_pending = self.offsets.unstable
        self._loop_task = asyncio.ensure_future(self._housekeeping())

    # --- partitions of __transaction_state (brokerd/coordination/internal_topics.py) ------------
    def begin_load(self, partition: int) -> None:
        self.loading.add(partition)

    async def load(self, partition: int, records: AsyncIterator[tuple[bytes | None, bytes | None]]) -> None:
        """Rebuild the ids of ``partition`` from its records, then coordinate them: a prepared
        transaction is completed (its markers sent again), as a new coordinator must."""
        found: dict[str, TxnMetadata] = {}
        count = 0
        async for key, value in records:
            if key is None:
                continue
            tid = txnlog.decode_key(key)
            if tid is None:
                continue
            count += 1
            if value is None:
                found.pop(tid, None)
                continue
            v = txnlog.decode_value(value)
            meta = found.get(tid)
            if meta is None:
                meta = found[tid] = TxnMetadata(tid, v.producer_id, v.producer_epoch, v.timeout_ms, v.state)
            meta.apply(v)
        if partition not in self.loading:
            return  # unloaded meanwhile
        self.loading.discard(partition)
        self.loaded.add(partition)
        adopted = []
        for tid, meta in found.items():
            current = self.txns.get(tid)
            # Earlier versions put an id whose hash is negative in another partition than Kafka's
            # (a broker alone reads both): the newer state wins.
            if current is not None and current.last_update_ms > meta.last_update_ms:
                continue
            self.txns[tid] = meta
            adopted.append(meta)
        for meta in adopted:
            if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                self._begin_completion(meta)
        log.info("transaction coordinator: partition %d loaded, %d transactional id(s) from %d record(s)",
                 partition, len(found), count)  # fmt: skip

    def unload(self, partition: int) -> None:
        """Another broker leads ``partition`` now: forget its ids (their requests answer
        NOT_COORDINATOR; completions in progress stop)."""
        self.loading.discard(partition)
        self.loaded.discard(partition)
        for tid in [t for t in self.txns if self.partition_for(t) == partition]:
            meta = self.txns.pop(tid)
            if meta.completing is not None and not meta.completing.done():
                meta.completing.set_result(None)

    def owner_error(self, transactional_id: str) -> E | None:
        """None when this broker coordinates the id now, else what to answer for it."""
        partition = self.partition_for(transactional_id)
        if partition is None:
            return E.coordinator_not_available  # __transaction_state is being created
        if partition in self.loading:
            return E.coordinator_load_in_progress
        if partition not in self.loaded:
            return E.not_coordinator
        return None

    def _owns(self, meta: TxnMetadata) -> bool:
        return not self._closed and self.txns.get(meta.transactional_id) is meta

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
    def partition_for(self, transactional_id: str) -> int | None:
        count = self._partition_count()
        return partition_for(transactional_id, count) if count else None

    async def _write(self, transactional_id: str, value: TxnLogValue | None) -> None:
        """Append one state record and wait for its acknowledgement (AppendError otherwise)."""
        partition = self.partition_for(transactional_id)
        if partition is None or partition not in self.loaded:
            raise AppendError(E.not_coordinator, f"partition of {transactional_id} not coordinated here")
        record = txnlog.encode_value(value) if value is not None else None
        await self._append(partition, [(txnlog.encode_key(transactional_id), record)])

    async def _transition(self, meta: TxnMetadata, value: TxnLogValue) -> E:
        """Write ``value`` and apply it to ``meta``; NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE
        if the write was not acknowledged."""
        meta.pending = value.state
        try:
            await self._write(meta.transactional_id, value)
        except AppendError as exc:
            log.warning("cannot write the state of transactional id %s: %s", meta.transactional_id, exc)
            return exc.code
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
        if (owner := self.owner_error(transactional_id)) is not None:
            if owner is E.coordinator_not_available:
                self._ensure_topic()
            return owner, -1, -1
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
        if (owner := self.owner_error(transactional_id)) is not None:
            return None, owner
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
        if (owner := self.owner_error(transactional_id)) is not None:
            return owner
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
        count = self._offsets_partition_count() or self.config.offsets_partitions
        return OFFSETS_TOPIC, partition_for(group_id, count)

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
        partition = self.partition_for(meta.transactional_id)
        coordinator_epoch = self._leader_epoch(partition) if partition is not None else 0
        remaining = sorted(meta.partitions)
        while self._owns(meta):
            try:
                remaining = await self._send_markers(pid, epoch, commit, coordinator_epoch, remaining)
                if not remaining:  # offsets an earlier version held for it are decided too
                    await self.offsets.complete(pid, commit, self.groups)
            except (OSError, StoreError) as exc:
                log.error("cannot finish the transaction of %s: %s", meta.transactional_id, exc)
                remaining = remaining or sorted(meta.partitions)
            if not remaining:
                break
            await asyncio.sleep(RETRY_S)
        value = meta.value(
            state=COMPLETE_COMMIT if commit else COMPLETE_ABORT,
            partitions=set(),
            last_update_ms=self._clock(),
        )
        while self._owns(meta):
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
            except AppendError:
                meta.pending = None
                continue
            self.txns.pop(meta.transactional_id, None)
        return len(idle)

    # --- DescribeTransactions / ListTransactions -----------------------------------------------
    def describe(self, transactional_id: str) -> TxnMetadata | None:
        return self.txns.get(transactional_id) if self.owner_error(transactional_id) is None else None

    def listing(self) -> list[TxnMetadata]:
        return list(self.txns.values())

