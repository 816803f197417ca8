"""Internal topics, and coordinators that run on their partitions' leaders.

Kafka keeps coordinator state in compacted internal topics (``__consumer_offsets`` for
groups, ``__transaction_state`` for transactions): a key's coordinator is the leader of
partition ``Utils.abs(key.hashCode()) % partitions``, it appends its records there as an
acks=all write (acknowledged once the high watermark passes them), and a broker that
becomes a partition's leader rebuilds that partition's state from the log before it
answers for it (COORDINATOR_LOAD_IN_PROGRESS meanwhile), while the old leader forgets it.

This module holds what every such coordinator shares:

* :class:`InternalTopic`: name, partition count and replication factor settings, configs;
* :func:`partition_for`: Java's ``String.hashCode`` and Kafka's ``Utils.abs``, so a group or
  transactional id maps to the partition Kafka would choose;
* :class:`InternalTopics` (``Broker.internal_topics``): creating a topic when first needed (a
  broker alone creates its local log; in a cluster any broker asks, through etcd, and the
  controller creates it), which broker coordinates a key (FindCoordinator), appending records as
  the partition leader, and reading a partition back;
* :class:`CoordinatorLoader`: follows this broker's leaderships of one internal topic and
  calls ``begin_load`` / ``load`` / ``unload`` on a :class:`PartitionCoordinator`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kio.schema.errors import ErrorCode

from brokerd.records import (
    ATTR_TRANSACTIONAL,
    HEADER_SIZE,
    BatchHeader,
    build_batch,
    control_type,
    read_header,
    stamp_leader_epoch,
    validate_and_stamp,
)
from brokerd.storage.compaction import record_heads

log = logging.getLogger("brokerd.coordination")

E = ErrorCode
OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_TOPIC = "__transaction_state"
READ_BYTES = 1 << 20
WHOLE_RECORD = 1 << 31

#: a batch as coordinators read it back: header, control record type or None, records
Batch = tuple[BatchHeader, int | None, list[tuple[bytes | None, bytes | None]]]


@dataclass(frozen=True)
class InternalTopic:
    name: str
    partitions_setting: str  # the broker setting naming its partition count
    replication_setting: str  # and its replication factor
    configs: dict[str, str] = field(default_factory=dict)
    #: broker settings giving topic configs at creation (Kafka's transaction.state.log.min.isr)
    config_settings: dict[str, str] = field(default_factory=dict)


OFFSETS = InternalTopic(
    OFFSETS_TOPIC,
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    {"cleanup.policy": "compact", "compression.type": "producer", "segment.bytes": "104857600"},
)
TRANSACTIONS = InternalTopic(
    TRANSACTION_TOPIC,
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    {"cleanup.policy": "compact", "compression.type": "uncompressed"},
    {
        "segment.bytes": "transaction.state.log.segment.bytes",
        "min.insync.replicas": "transaction.state.log.min.isr",
    },
)
#: Kafka's Topic.isInternal: clients keep these out of pattern subscriptions; tenants cannot
#: produce to them, delete them or create them.
INTERNAL_TOPIC_NAMES = frozenset({OFFSETS_TOPIC, TRANSACTION_TOPIC})


def is_internal(name: str | None) -> bool:
    return name in INTERNAL_TOPIC_NAMES


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, 32-bit wrap-around)."""
    h = 0
    raw = text.encode("utf-16-be")
    for i in range(0, len(raw), 2):
        h = (31 * h + ((raw[i] << 8) | raw[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(key.hashCode()) % partitions`` (``Utils.abs(MIN_VALUE)`` is 0)."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class AppendError(Exception):
    """An internal append that is not acknowledged; ``code`` is the error Kafka's coordinators
    answer for it (NOT_COORDINATOR when leadership moved, COORDINATOR_NOT_AVAILABLE when the
    in-sync replicas did not take it in time)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class PartitionCoordinator(Protocol):
    """What :class:`CoordinatorLoader` drives: a coordinator's state per partition."""

    def begin_load(self, partition: int) -> None: ...

    async def load(self, partition: int, records: AsyncIterator[Any]) -> None:
        """``records``: (key, value) pairs, or :data:`Batch` es when the coordinator's
        ``reads_batches`` is true (it needs transactions and their markers)."""
        ...

    def unload(self, partition: int) -> None: ...


class InternalTopics:
    """The broker's internal topics (``broker.internal_topics``): created on first need, written
    and read by the coordinators that live on their partitions' leaders."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.on_leadership: list[Callable[[], None]] = []  # run when leaderships may have changed
        self._requested: set[str] = set()
        self._request_task: asyncio.Future | None = None

    @property
    def clustered(self) -> bool:
        """Whether the broker runs in a cluster (``coordination`` set), joined yet or not."""
        return getattr(self.broker.config, "coordination", None) is not None

    # --- the topics ------------------------------------------------------------------------------
    def settings(self, topic: InternalTopic) -> tuple[int, int]:
        """(partitions, replication factor) as configured on this broker."""
        config = self.broker.config
        return int(config[topic.partitions_setting]), int(config[topic.replication_setting])

    def configs(self, topic: InternalTopic) -> dict[str, str]:
        """The topic configs it is created with: its own, and those set by broker settings."""
        configs = dict(topic.configs)
        for name, setting in topic.config_settings.items():
            configs[name] = str(self.broker.config[setting])
        if not self.clustered:
            configs.pop("min.insync.replicas", None)  # one replica alone
        return configs

    def partition_count(self, name: str) -> int | None:
        """The topic's partition count where it exists (the cluster's, else the local one)."""
        replicas = self.broker.replicas
        if replicas is not None:
            record = replicas.membership.view.state.topics.get(name)
            return record.partitions if record is not None else None
        if self.clustered:
            return None  # joining the cluster: nothing is known yet
        topic = self.broker.logs.topics.get(name)
        return len(topic.partitions) if topic is not None else None

    def ensure(self, topic: InternalTopic) -> None:
        """Create ``topic`` if it does not exist yet: locally when alone, else through the
        controller (a request key in etcd it acts on)."""
        if self.partition_count(topic.name) is not None:
            return
        partitions, replication = self.settings(topic)
        if not self.clustered:
            log.info("creating internal topic %s (%d partitions)", topic.name, partitions)
            self.broker.create_topic(topic.name, partitions, self.configs(topic))
            self.notify()
            return
        if topic.name in self._requested or self.broker.cluster is None:
            return
        self._requested.add(topic.name)

        async def request() -> None:
            try:
                await self.broker.cluster.request_internal_topic(
                    topic.name, partitions, replication, self.configs(topic)
                )
            except Exception as exc:  # asked again on the next FindCoordinator
                log.warning("could not ask for internal topic %s: %s", topic.name, exc)
            finally:
                self._requested.discard(topic.name)

        self._request_task = asyncio.ensure_future(request())

    def notify(self) -> None:
        for callback in list(self.on_leadership):
            try:
                callback()
            except Exception:
                log.exception("internal topic leadership listener failed")

    # --- who coordinates what --------------------------------------------------------------------
    def leader_of(self, name: str, partition: int) -> int | None:
        replicas = self.broker.replicas
        if replicas is None:
            return None if self.clustered else self.broker.node_id
        state = replicas.partition(name, partition)
        if state is None or state.leader < 0 or state.leader not in replicas.membership.view.state.brokers:
            return None
        return state.leader

    def led_epoch(self, name: str, partition: int) -> int | None:
        """This broker's leader epoch of the partition while it leads it (0 alone), else None."""
        replicas = self.broker.replicas
        if replicas is None:
            return 0 if not self.clustered and self.broker.logs.log(name, partition) else None
        if not replicas.leads(name, partition) or self.broker.logs.log(name, partition) is None:
            return None
        return replicas.partition(name, partition).leader_epoch

    def coordinator(self, topic: InternalTopic, key: str) -> tuple[ErrorCode, int]:
        """FindCoordinator for ``key``: (error, node id of the leader of its partition).
        COORDINATOR_NOT_AVAILABLE while the topic is being created or the partition has no
        leader, as Kafka answers."""
        count = self.partition_count(topic.name)
        if count is None:
            self.ensure(topic)
            count = self.partition_count(topic.name)
            if count is None:
                return E.coordinator_not_available, -1
        leader = self.leader_of(topic.name, partition_for(key, count))
        if leader is None:
            return E.coordinator_not_available, -1
        return E.none, leader

    # --- writing and reading, as the leader --------------------------------------------------------
    def append(
        self, name: str, partition: int, records: list[tuple[bytes, bytes | None]], *, leader_epoch: int,
        timeout: float, producer: tuple[int, int] | None = None,
    ) -> asyncio.Future[int]:
        """Append ``records`` (key, value) as one batch, now, while this broker leads the
        partition in ``leader_epoch``. The future resolves with the base offset once an fsync
        covers the batch and, in a cluster, the high watermark passed it (acks=all); it fails
        with :class:`AppendError`. Appends made in order land in that order.

        With ``producer`` (producer id, epoch) the batch is transactional, part of that
        producer's open transaction (offsets committed inside it): the partition's producer
        state holds the transaction open until its commit or abort marker."""
        try:
            plog, base, end = self._append_now(name, partition, records, leader_epoch, producer)
        except AppendError as exc:
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            fut.set_exception(exc)
            return fut
        return asyncio.ensure_future(self._acknowledge(plog, name, partition, base, end, timeout))

    def _append_now(self, name: str, partition: int, records, leader_epoch: int, producer=None):
        broker = self.broker
        plog = broker.logs.log(name, partition)
        if plog is None or self.led_epoch(name, partition) != leader_epoch:
            raise AppendError(E.not_coordinator, f"not the leader of {name}-{partition}")
        replicas = broker.replicas
        if replicas is not None and replicas.isr_size(name, partition) < replicas.min_insync(name):
            raise AppendError(E.coordinator_not_available, f"{name}-{partition}: not enough in-sync replicas")
        now = int(time.time() * 1000)
        if producer is None:
            data = build_batch(records, timestamp_ms=now)
        else:  # as Kafka's coordinator appends them: no sequence number, never deduplicated
            data = build_batch(records, timestamp_ms=now, producer_id=producer[0], producer_epoch=producer[1],
                               attributes=ATTR_TRANSACTIONAL)  # fmt: skip
        batches, count = validate_and_stamp(data, plog.next_offset, len(data) + 1)
        if replicas is not None:
            stamp_leader_epoch(data, batches, leader_epoch)
        try:
            base = plog.append(data, batches, count)
        except OSError as exc:
            raise AppendError(E.not_coordinator, f"append to {name}-{partition} failed: {exc}") from None
        if producer is not None:
            broker.producers.sequences.begin_txn((name, partition), producer[0], base)
        if replicas is not None:
            replicas.appended(name, partition)
        return plog, base, base + count

    async def _acknowledge(self, plog, name: str, partition: int, base: int, end: int, timeout: float) -> int:
        try:
            await asyncio.wait_for(asyncio.shield(self.broker.flusher.wait([plog])), timeout)
        except (TimeoutError, OSError, RuntimeError) as exc:
            raise AppendError(E.coordinator_not_available, f"fsync of {name}-{partition}: {exc!r}") from None
        replicas = self.broker.replicas
        if replicas is None:
            return base
        committed = replicas.wait_committed(name, partition, end)
        if committed is None:
            raise AppendError(E.not_coordinator, f"no longer the leader of {name}-{partition}")
        try:
            ok = await asyncio.wait_for(asyncio.shield(committed), timeout)
        except TimeoutError:
            raise AppendError(
                E.coordinator_not_available, f"{name}-{partition}: in-sync replicas did not follow in time"
            ) from None
        if not ok:
            raise AppendError(E.not_coordinator, f"no longer the leader of {name}-{partition}")
        return base

    async def read(self, name: str, partition: int) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
        """Every record (key, value) of a partition from its log start to its log end, yielding
        to the event loop between chunks (control batches left out)."""
        async for _header, _control, records in self.read_batches(name, partition):
            for record in records:
                yield record

    async def read_batches(self, name: str, partition: int) -> AsyncIterator[Batch]:
        """Every batch of a partition from its log start to its log end: its header, its
        control record type (commit or abort marker) or None, and its records (key, value)."""
        plog = self.broker.logs.log(name, partition)
        if plog is None:
            return
        offset = plog.start_offset
        end = plog.next_offset
        while offset < end:
            data = plog.read(offset, READ_BYTES, True)
            if not data:
                break
            view = memoryview(data)
            pos = 0
            last = offset
            while len(view) - pos >= HEADER_SIZE:
                h = read_header(view, pos)
                if pos + h.size > len(view):
                    break
                batch = view[pos : pos + h.size]
                pos += h.size
                last = h.last_offset
                if h.is_control:
                    yield h, control_type(batch), []
                else:
                    yield h, None, [(key, value) for _i, key, value in record_heads(batch, WHOLE_RECORD)]
            offset = last + 1
            await asyncio.sleep(0)


class CoordinatorLoader:
    """Runs a :class:`PartitionCoordinator` on the partitions of ``topic`` this broker leads:
    a partition newly led (or led in a new leader epoch) is loaded from its log, one no longer
    led is unloaded at once."""

    def __init__(
        self, topics: InternalTopics, topic: InternalTopic, coordinator: PartitionCoordinator
    ) -> None:
        self.topics = topics
        self.topic = topic
        self.coordinator = coordinator
        self.epochs: dict[int, int] = {}  # partition -> leader epoch it is loaded (or loading) for
        self._tasks: dict[int, asyncio.Task] = {}
        topics.on_leadership.append(self.refresh)

    def refresh(self) -> None:
        name = self.topic.name
        count = self.topics.partition_count(name) or 0
        for partition in sorted(set(range(count)) | set(self.epochs)):
            epoch = self.topics.led_epoch(name, partition) if partition < count else None
            current = self.epochs.get(partition)
            if current == epoch:
                continue
            if current is not None:
                self._cancel(partition)
                del self.epochs[partition]
                self.coordinator.unload(partition)
                log.info("%s-%d: no longer led here in epoch %d; unloaded", name, partition, current)
            if epoch is not None:
                self.epochs[partition] = epoch
                self.coordinator.begin_load(partition)
                self._tasks[partition] = asyncio.ensure_future(self._load(partition, epoch))

    async def _load(self, partition: int, epoch: int) -> None:
        started = time.perf_counter()
        try:
            batches = getattr(self.coordinator, "reads_batches", False)
            read = self.topics.read_batches if batches else self.topics.read
            await self.coordinator.load(partition, read(self.topic.name, partition))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s-%d: loading failed", self.topic.name, partition)
            if self.epochs.get(partition) == epoch:
                del self.epochs[partition]
                self.coordinator.unload(partition)
            return
        finally:
            self._tasks.pop(partition, None)
        log.info("%s-%d: loaded for leader epoch %d in %.1f ms", self.topic.name, partition, epoch,
                 (time.perf_counter() - started) * 1000)  # fmt: skip

    def _cancel(self, partition: int) -> None:
        task = self._tasks.pop(partition, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        for partition in list(self._tasks):
            self._cancel(partition)
        for partition in list(self.epochs):
            self.coordinator.unload(partition)
        self.epochs.clear()
        if self.refresh in self.topics.on_leadership:
            self.topics.on_leadership.remove(self.refresh)
