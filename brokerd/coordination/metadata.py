"""Cluster metadata that any registered broker writes: topics and their partitions, topic
configs, ACL bindings, client quotas and client-metrics subscriptions.

Kafka 4 brokers forward these admin writes to the active controller. Here the metadata lives
in etcd, whose transactions are linearizable compare-and-sets, so the broker that receives the
request writes it itself, and every broker (the controller among them) follows the result
through its watched view. Each write compares exactly the state it was decided on:

- a new topic: its key is absent and every chosen replica is still registered with the epoch
  its ISR entry names (the same compares the controller made when it created topics);
- new partitions, a topic's configs, a deleted topic: the topic key's mod revision as read;
- client quotas, a client-metrics subscription: each key at the mod revision read (a
  read-modify-write);
- ACL bindings: one key per binding, so creating one twice keeps one copy, and deleting one
  that is gone already is harmless.

Every write also compares the writer's ``Fence``: a broker's own registration (its broker
epoch), so a broker that left the cluster writes nothing; the controller uses its election
key. The controller keeps its own duty, leaders and ISRs as brokers come and go; a partition
created here starts with a leader and reaches the controller like any other partition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from brokerd.coordination import etcd as e
from brokerd.coordination.keys import Keys
from brokerd.coordination.leadership import initial_state
from brokerd.coordination.placement import AssignmentError, assign_replicas, check_assignment
from brokerd.coordination.records import TopicRecord
from brokerd.coordination.view import ClusterView

LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
#: A read-modify-write that lost a race to another broker reads again, this many times.
ATTEMPTS = 5
#: etcd refuses a transaction of more operations than its --max-txn-ops (128 by default).
TXN_OPS = 100


class TopicExistsError(Exception):
    pass


class UnknownTopicError(Exception):
    pass


class InvalidPartitionsError(ValueError):
    """A partition count a topic cannot take (Kafka's INVALID_PARTITIONS)."""


class NotRegisteredError(e.CoordinationError):
    """The writing broker is not (or no longer) registered: it may not change the metadata."""


@dataclass(frozen=True)
class Fence:
    """The key whose create revision must still be ``revision()`` for a write to apply, and the
    error a failed compare on it raises (``refused`` may also record that the fence is gone)."""

    key: bytes
    revision: Callable[[], int]
    refused: Callable[[], Exception]

    def compare(self) -> e.rpc.Compare:
        revision = self.revision()
        if not revision:
            raise self.refused()
        return e.created_at(self.key, revision)

    def holds(self, result: e.TxnResult) -> bool:
        """Whether the fence key (read back as the failure branch's first get) still holds."""
        entries = result.ranges[0]
        return bool(entries) and entries[0].create_revision == self.revision()


def acl_key(keys: Keys, row: Sequence[Any]) -> bytes:
    """One key per ACL binding (resource type, name, pattern type, principal, host, operation,
    permission): the same binding always lands on the same key."""
    digest = hashlib.sha256(json.dumps(list(row)).encode()).hexdigest()[:40]
    return keys.acls + digest.encode()


def quota_key(keys: Keys, entity: Iterable[tuple[str, str | None]]) -> bytes:
    digest = hashlib.sha256(json.dumps(sorted(entity, key=lambda p: p[0])).encode()).hexdigest()[:40]
    return keys.quotas + digest.encode()


class MetadataWriter:
    def __init__(self, view: ClusterView, fence: Fence, *, rng: random.Random | None = None) -> None:
        self.view = view
        self.etcd: e.Etcd = view.etcd
        self.keys: Keys = view.keys
        self.fence = fence
        self.rng = rng or random.Random()

    async def _commit(self, compare: list, ops: list, reads: Sequence[bytes] = ()) -> e.TxnResult:
        """Run a transaction under the fence; on failure the fence key and ``reads`` are read
        back (in that order) so that the caller can say why."""
        result = await self.etcd.txn(
            [self.fence.compare(), *compare], ops, [e.get(self.fence.key), *(e.get(k) for k in reads)]
        )
        if result.succeeded:
            await self.view.wait_for(result.revision)
        elif not self.fence.holds(result):
            raise self.fence.refused()
        return result

    def _registered(self, live: dict[int, int], assignment: list[list[int]]) -> list:
        """Compares that every replica named is still registered with the epoch its ISR entry names."""
        brokers = sorted({r for a in assignment for r in a})
        return [e.created_at(self.keys.broker(b), live[b]) for b in brokers]

    # --- topics ----------------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str] | None = None,
        *,
        followers_in_sync: bool = True,
        assignment: list[list[int]] | None = None,
    ) -> TopicRecord:
        """Create a topic; ``assignment`` (one replica list per partition, checked as Kafka
        checks a manual assignment) places its partitions, else they are placed across racks."""
        if not LEGAL_TOPIC.match(name):
            raise ValueError(
                f"topic name {name!r} is not legal: use 1 to 249 letters, digits, '.', '_' or '-'"
            )
        state = self.view.state
        live = state.live_epochs()
        if assignment is not None:
            check_assignment(assignment, set(live))
            assignment = [list(a) for a in assignment]
        else:
            racks = {node_id: reg.rack for node_id, reg in state.brokers.items()}
            assignment = assign_replicas(racks, partitions, replication_factor, rng=self.rng)
        topic = TopicRecord(name, str(uuid.uuid4()), partitions, replication_factor, dict(configs or {}))
        ops = [e.put(self.keys.topic(name), topic.to_bytes())]
        ops += [
            e.put(
                self.keys.partition(name, p),
                initial_state(topic.topic_id, replicas, live, followers_in_sync=followers_in_sync).to_bytes(),
            )
            for p, replicas in enumerate(assignment)
        ]
        # Every replica must still be registered with the epoch its ISR entry names.
        compare = [e.created_at(self.keys.topic(name), 0)]
        compare += self._registered(live, assignment)
        result = await self._commit(compare, ops, [self.keys.topic(name)])
        if not result.succeeded:
            if result.ranges[1]:
                raise TopicExistsError(f"topic {name!r} already exists")
            raise e.CoordinationError("the set of live brokers changed while placing replicas; try again")
        return topic

    async def create_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None = None, *,
        validate_only: bool = False,
    ) -> None:
        """Grow a topic to ``count`` partitions: the new ones on the brokers ``assignments`` names
        (checked as Kafka checks them), else placed as a new topic's are, across racks."""
        state = self.view.state
        current = await self.etcd.get(self.keys.topic(name))
        if current is None or state.topic_partitions(name) is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        topic = TopicRecord.from_bytes(current.value)
        if count < topic.partitions:
            raise InvalidPartitionsError(f"topic {name!r} has {topic.partitions} partitions, more than the "
                                         f"requested {count}; partitions cannot be removed")
        if count == topic.partitions:
            raise InvalidPartitionsError(f"topic {name!r} already has {count} partitions")
        adding = count - topic.partitions
        live = state.live_epochs()
        rf = len(state.partitions[(name, 0)].replicas)
        if assignments is not None:
            if len(assignments) != adding:
                raise AssignmentError(f"{adding} partition(s) are added but {len(assignments)} "
                                      "assignment(s) were given; give one per new partition")
            check_assignment(assignments, set(live), rf, first_index=topic.partitions)
            assignment = [list(a) for a in assignments]
        else:
            racks = {node_id: reg.rack for node_id, reg in state.brokers.items()}
            assignment = assign_replicas(racks, adding, rf, rng=self.rng)
        if validate_only:
            return
        grown = TopicRecord(topic.name, topic.topic_id, count, topic.replication_factor, dict(topic.configs))
        ops = [e.put(self.keys.topic(name), grown.to_bytes())]
        ops += [
            e.put(self.keys.partition(name, topic.partitions + i),
                  initial_state(topic.topic_id, replicas, live).to_bytes())
            for i, replicas in enumerate(assignment)
        ]
        compare = [e.modified_at(current.key, current.mod_revision)]
        compare += self._registered(live, assignment)
        result = await self._commit(compare, ops, [self.keys.topic(name)])
        if not result.succeeded:
            if not result.ranges[1]:
                raise UnknownTopicError(f"topic {name!r} does not exist")
            raise e.CoordinationError(
                f"topic {name!r} or its brokers changed while adding partitions; try again")

    async def delete_topic(self, name: str) -> None:
        current = await self.etcd.get(self.keys.topic(name))
        if current is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        result = await self._commit(
            [e.modified_at(current.key, current.mod_revision)],
            [e.delete(current.key), e.delete(self.keys.topic_partitions(name), prefix=True)],
            [self.keys.topic(name)],
        )
        if not result.succeeded:
            if not result.ranges[1]:
                raise UnknownTopicError(f"topic {name!r} does not exist")
            raise e.CoordinationError(f"topic {name!r} changed while being deleted; try again")

    async def alter_topic_configs(
        self, name: str, change: Callable[[dict[str, str]], dict[str, str]], *, validate_only: bool = False
    ) -> dict[str, str]:
        """Replace a topic's config overrides by ``change(current overrides)`` (which validates
        and may raise); returns the new overrides. Read, changed and written back under a compare
        of the topic's mod revision, again if another write came between."""
        for _attempt in range(ATTEMPTS):
            current = await self.etcd.get(self.keys.topic(name))
            if current is None:
                raise UnknownTopicError(f"Topic {name} does not exist")
            topic = TopicRecord.from_bytes(current.value)
            configs = change(dict(topic.configs))
            if validate_only or configs == topic.configs:
                return configs
            new = TopicRecord(topic.name, topic.topic_id, topic.partitions, topic.replication_factor, configs)
            result = await self._commit(
                [e.modified_at(current.key, current.mod_revision)], [e.put(current.key, new.to_bytes())]
            )
            if result.succeeded:
                return configs
        raise e.CoordinationError(f"topic {name!r} kept changing while its configs were altered; try again")

    # --- client-metrics subscriptions ----------------------------------------------------------
    async def alter_client_metrics(
        self, name: str, change: Callable[[dict[str, str]], dict[str, str]], *, validate_only: bool = False
    ) -> None:
        """Replace a client-metrics subscription's configs by ``change(current configs)`` (which
        validates and may raise; empty deletes it), under a compare of its key's mod revision,
        read again if another broker wrote between."""
        key = self.keys.client_metrics_resource(name)
        for _attempt in range(ATTEMPTS):
            current = await self.etcd.get(key)
            configs = change({} if current is None else json.loads(current.value))
            if validate_only:
                return
            op = e.put(key, json.dumps(configs, sort_keys=True).encode()) if configs else e.delete(key)
            if (await self._commit([e.modified_at(key, 0 if current is None else current.mod_revision)],
                                   [op])).succeeded:
                return
        raise e.CoordinationError(f"client-metrics subscription {name!r} kept changing; try again")

    # --- ACL bindings ----------------------------------------------------------------------------
    async def create_acls(self, rows: Sequence[Sequence[Any]]) -> None:
        """Store ACL bindings (already validated), each as its own key. Bindings etcd holds
        already are not written again (the control plane repeats its whole set on every
        reconciliation): the create takes effect at the read that found them."""
        revision, entries = await self.etcd.get_prefix(self.keys.acls)
        present = {entry.key for entry in entries}
        wanted = {acl_key(self.keys, row): row for row in rows}
        ops = [e.put(k, json.dumps(list(row)).encode()) for k, row in wanted.items() if k not in present]
        for start in range(0, len(ops), TXN_OPS):
            await self._commit([], ops[start : start + TXN_OPS])
        await self.view.wait_for(revision)  # this broker enforces what it answered is there

    async def delete_acls(self, matchers: Sequence[Callable[[tuple], bool]]) -> list[list[tuple]]:
        """Delete the bindings each matcher matches, as etcd holds them now (a linearizable read,
        so a binding created through another broker a moment ago is seen); returns them per
        matcher."""
        _revision, entries = await self.etcd.get_prefix(self.keys.acls)
        stored = {}
        for entry in entries:
            try:
                stored[entry.key] = tuple(json.loads(entry.value))
            except ValueError:
                continue
        matched = [[row for row in stored.values() if match(row)] for match in matchers]
        gone = sorted({k for k, row in stored.items() if any(row in m for m in matched)})
        ops = [e.delete(k) for k in gone]
        for start in range(0, len(ops), TXN_OPS):
            await self._commit([], ops[start : start + TXN_OPS])
        return matched

    # --- client quotas ---------------------------------------------------------------------------
    async def alter_quotas(
        self, plan: Callable[[dict[tuple, dict[str, float]]], dict[tuple, dict[str, float] | None]],
        entities: Iterable[tuple],
    ) -> None:
        """Client quotas of ``entities`` (tuples of (entity type, name or None)), read from etcd,
        changed by ``plan`` (entity -> new values, None or empty to remove) and written back
        under compares of each key's mod revision, again if another broker changed one between."""
        wanted = {entity: quota_key(self.keys, entity) for entity in entities}
        for _attempt in range(ATTEMPTS):
            seen: dict[tuple, dict[str, float]] = {}
            revisions: dict[bytes, int] = {}
            for entity, key in wanted.items():
                entry = await self.etcd.get(key)
                revisions[key] = 0 if entry is None else entry.mod_revision
                if entry is not None:
                    seen[entity] = {k: float(v) for k, v in json.loads(entry.value)["values"].items()}
            changes = plan(seen)
            if not changes:
                return
            compare, ops = [], []
            for entity, values in changes.items():
                key = wanted[entity]
                compare.append(e.modified_at(key, revisions[key]))
                if values:
                    doc = {"entity": [list(p) for p in entity], "values": values}
                    ops.append(e.put(key, json.dumps(doc, sort_keys=True).encode()))
                else:
                    ops.append(e.delete(key))
            if (await self._commit(compare, ops)).succeeded:
                return
            await asyncio.sleep(0)
        raise e.CoordinationError("client quotas kept changing while being altered; try again")

    # --- a cluster's first start on brokers that kept their own files ----------------------------
    async def adopt(self, acl_rows: Sequence[Sequence[Any]],
                    quotas: Sequence[tuple[tuple, dict[str, float]]]) -> bool:
        """Store the ACL bindings and dynamic quotas a broker kept in its own files before its
        cluster held them in etcd, once per cluster: only the first broker to get here writes
        (its marker key is created in the same transaction); False for every later one, whose
        files are older than what the cluster holds."""
        ops = [e.put(acl_key(self.keys, row), json.dumps(list(row)).encode()) for row in acl_rows]
        for entity, values in quotas:
            doc = {"entity": [list(p) for p in entity], "values": values}
            ops.append(e.put(quota_key(self.keys, entity), json.dumps(doc, sort_keys=True).encode()))
        return await self._once(b"adopted-local-metadata", ops)

    async def adopt_client_metrics(self, subscriptions: Mapping[str, Mapping[str, str]]) -> bool:
        """Store the client-metrics subscriptions a broker alone kept in its own file, once per
        cluster (as :meth:`adopt`, with a marker of its own: a cluster upgraded before these were
        kept in etcd adopts them on its next start). A subscription the cluster holds already
        stays as it is: it was written later."""
        _revision, entries = await self.etcd.get_prefix(self.keys.client_metrics)
        present = {entry.key for entry in entries}
        ops = [
            e.put(key, json.dumps(dict(configs), sort_keys=True).encode())
            for name, configs in sorted(subscriptions.items())
            if (key := self.keys.client_metrics_resource(name)) not in present
        ]
        return await self._once(b"adopted-client-metrics", ops)

    async def _once(self, marker_name: bytes, ops: list) -> bool:
        """Apply ``ops`` if this call creates the marker key (in the same transaction as the
        first ops); False, writing nothing, once the marker exists."""
        first, rest = ops[: TXN_OPS - 1], ops[TXN_OPS - 1 :]
        marker = self.keys.prefix + marker_name
        result = await self._commit([e.created_at(marker, 0)], [e.put(marker, b"1"), *first])
        if not result.succeeded:
            return False
        for start in range(0, len(rest), TXN_OPS):
            await self._commit([], rest[start : start + TXN_OPS])
        return True
