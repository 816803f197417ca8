"""Every broker's copy of the cluster metadata in etcd, kept current by a watch.

The view reads the whole prefix once (one revision), then applies watch events from the
next revision on. A broken watch is answered by reading everything again; nothing is
assumed about what happened while the stream was down. ``caught_up`` is set once the
view holds a complete read and its watch runs: that is when a broker may say it is
healthy. ``wait_for(revision)`` lets a writer read its own write.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from brokerd.coordination.etcd import CoordinationError, Entry, Etcd, WatchEvent
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import (
    BrokerRegistration,
    ControllerRecord,
    PartitionState,
    Suspicion,
    TopicRecord,
)
from brokerd.coordination.tasks import cancel_and_wait

log = logging.getLogger("brokerd.coordination")

RETRY_SECONDS = 0.5
_SERIALS = itertools.count(1)


@dataclass
class ClusterState:
    revision: int = 0
    cluster_id: str | None = None
    brokers: dict[int, BrokerRegistration] = field(default_factory=dict)
    controller: ControllerRecord | None = None
    topics: dict[str, TopicRecord] = field(default_factory=dict)
    partitions: dict[tuple[str, int], PartitionState] = field(default_factory=dict)
    suspicions: dict[tuple[int, int], Suspicion] = field(default_factory=dict)  # (suspect, reporter)
    # ACL bindings as rows (resource type, name, pattern type, principal, host, operation,
    # permission) and client quotas as entity -> values, each by its key; ``*_serial`` takes a new
    # value at every change of one of them (one per key, so one per event even when a transaction
    # changed several) and at every full read, so followers rebuild only then
    acls: dict[bytes, tuple] = field(default_factory=dict)
    quotas: dict[bytes, tuple[tuple, dict[str, float]]] = field(default_factory=dict)
    acls_serial: int = field(default_factory=lambda: next(_SERIALS))
    quotas_serial: int = field(default_factory=lambda: next(_SERIALS))
    #: client-metrics subscriptions: name -> configs (metrics, interval.ms, match)
    client_metrics: dict[str, dict[str, str]] = field(default_factory=dict)
    client_metrics_serial: int = field(default_factory=lambda: next(_SERIALS))
    #: internal topics brokers asked the controller to create: name -> the request (JSON)
    internal_requests: dict[str, dict] = field(default_factory=dict)

    def live_epochs(self) -> dict[int, int]:
        return {node_id: reg.epoch for node_id, reg in self.brokers.items()}

    def topic_partitions(self, name: str) -> list[PartitionState] | None:
        """A topic's partitions in order, or None while the topic is absent or not complete
        (a watch delivers a transaction's keys one by one)."""
        topic = self.topics.get(name)
        if topic is None:
            return None
        states = [self.partitions.get((name, p)) for p in range(topic.partitions)]
        if any(s is None or s.topic_id != topic.topic_id for s in states):
            return None
        return states  # type: ignore[return-value]


class ClusterView:
    def __init__(self, etcd: Etcd, keys: Keys) -> None:
        self.etcd = etcd
        self.keys = keys
        self.state = ClusterState()
        self.caught_up = asyncio.Event()
        self.listeners: list[Callable[[ClusterState], None]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self.last_error: CoordinationError | None = None  # why the view is not caught up, if it is not

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cluster-view")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def wait_for(self, revision: int, timeout: float = 10.0) -> None:
        """Wait until the view has applied ``revision`` (a write's own revision)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.state.revision >= revision), timeout)

    async def wait_until(self, predicate: Callable[[ClusterState], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.state)), timeout)

    # --- the loop -------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                revision, entries = await self.etcd.get_prefix(self.keys.prefix)
                state = ClusterState(revision=revision)
                for entry in entries:
                    self._apply(state, WatchEvent(False, entry))
                self.state = state
                # Caught up before the listeners hear of it: they skip a view that is not (a
                # partial read must not delete anything), and a read after a broken watch may be
                # the only news of a leadership this broker took meanwhile. A leader that missed
                # it served produce without recording where its epoch began, and followers asking
                # OffsetForLeaderEpoch kept a diverging tail.
                self.last_error = None
                self.caught_up.set()
                await self._notify()
                async for event in self.etcd.watch_prefix(self.keys.prefix, revision + 1):
                    self._apply(self.state, event)
                    self.state.revision = max(self.state.revision, event.entry.mod_revision)
                    await self._notify()
            except CoordinationError as exc:
                log.warning("cluster metadata watch interrupted (%s); reading again", exc)
                self.last_error = exc
                self.caught_up.clear()
                await asyncio.sleep(RETRY_SECONDS)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
        for listener in list(self.listeners):
            try:
                listener(self.state)
            except Exception:  # one listener's bug must not stop the metadata from flowing
                log.exception("cluster metadata listener failed")

    def _apply(self, state: ClusterState, event: WatchEvent) -> None:
        keys, entry = self.keys, event.entry
        key = entry.key
        try:
            if key == keys.cluster:
                state.cluster_id = None if event.deleted else entry.value.decode()
            elif key == keys.controller:
                state.controller = None if event.deleted else _controller(entry)
            elif key.startswith(keys.brokers):
                node_id = keys.broker_id(key)
                if event.deleted:
                    state.brokers.pop(node_id, None)
                else:
                    state.brokers[node_id] = BrokerRegistration.from_bytes(
                        entry.value, epoch=entry.create_revision, lease=entry.lease
                    )
            elif key.startswith(keys.topics):
                name = keys.topic_name(key)
                if event.deleted:
                    state.topics.pop(name, None)
                else:
                    state.topics[name] = TopicRecord.from_bytes(entry.value)
            elif key.startswith(keys.internal):
                name = keys.internal_name(key)
                if event.deleted:
                    state.internal_requests.pop(name, None)
                else:
                    state.internal_requests[name] = json.loads(entry.value)
            elif key.startswith(keys.partitions):
                where = keys.partition_of(key)
                if event.deleted:
                    state.partitions.pop(where, None)
                else:
                    state.partitions[where] = PartitionState.from_bytes(
                        entry.value, mod_revision=entry.mod_revision
                    )
            elif key.startswith(keys.suspects):
                suspect, reporter = keys.suspicion_of(key)
                if event.deleted:
                    state.suspicions.pop((suspect, reporter), None)
                else:
                    state.suspicions[(suspect, reporter)] = Suspicion.from_bytes(
                        entry.value, suspect=suspect, reporter=reporter, mod_revision=entry.mod_revision
                    )
            elif key.startswith(keys.acls):
                state.acls_serial = next(_SERIALS)
                if event.deleted:
                    state.acls.pop(key, None)
                else:
                    state.acls[key] = tuple(json.loads(entry.value))
            elif key.startswith(keys.quotas):
                state.quotas_serial = next(_SERIALS)
                if event.deleted:
                    state.quotas.pop(key, None)
                else:
                    doc = json.loads(entry.value)
                    entity = tuple((str(t), None if n is None else str(n)) for t, n in doc["entity"])
                    state.quotas[key] = (entity, {str(k): float(v) for k, v in doc["values"].items()})
            elif key.startswith(keys.client_metrics):
                state.client_metrics_serial = next(_SERIALS)
                name = key[len(keys.client_metrics):].decode()
                if event.deleted:
                    state.client_metrics.pop(name, None)
                else:
                    state.client_metrics[name] = {str(k): str(v) for k, v in json.loads(entry.value).items()}
        except (ValueError, KeyError, TypeError) as exc:
            # Only brokerd writes here; a value it cannot read is logged, never fatal.
            log.error("unreadable metadata at %r: %s", key, exc)


def _controller(entry: Entry) -> ControllerRecord:
    return ControllerRecord.from_bytes(entry.value, epoch=entry.create_revision)
