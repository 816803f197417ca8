"""The replica manager: this broker's local partition logs follow the cluster's topics in
etcd, and it answers which partitions this broker leads.

A broker holds a local log for every topic with a partition assigned to it, under the
topic's cluster-wide id, and no other: a topic deleted from etcd, recreated under a new
id, or no longer assigned here is removed locally (Kafka removes stray logs the same way).
A partition is led here only while etcd names this broker its leader and the leader's ISR
entry carries this broker's current epoch: a broker that lost its registration leads
nothing, whatever its logs say.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, NamedTuple

from brokerd.coordination.records import NO_LEADER, PartitionState
from brokerd.coordination.view import ClusterState
from brokerd.replication.membership import ClusterMembership
from brokerd.storage.epochs import EpochCacheError, LeaderEpochCache

log = logging.getLogger("brokerd.replication")

NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75


class ReplicaManager:
    def __init__(self, broker: Any, membership: ClusterMembership) -> None:
        self.broker = broker
        self.membership = membership
        self.node_id = membership.node_id
        self._epochs: dict[tuple[str, int], LeaderEpochCache] = {}

    def start(self) -> None:
        self.membership.view.listeners.append(self.sync)
        self.sync(self.membership.view.state)

    def sync(self, state: ClusterState) -> None:
        """Create and remove local logs so that they match the assignment in etcd."""
        if not self.membership.view.caught_up.is_set():
            return  # a partial read must not delete anything
        logs = self.broker.logs
        wanted: dict[str, uuid.UUID] = {}
        for name, topic in state.topics.items():
            partitions = state.topic_partitions(name)
            if partitions is None or not any(self.node_id in p.replicas for p in partitions):
                continue
            wanted[name] = uuid.UUID(topic.topic_id)
            local = logs.topics.get(name)
            if local is not None and local.id != wanted[name]:
                log.info("topic %s was recreated in the cluster; removing the old local log", name)
                self.broker.delete_topic(name)
                local = None
            if local is None:
                try:
                    self.broker.create_topic(name, topic.partitions, topic.configs, wanted[name])
                except OSError as exc:
                    log.error("cannot create the local log of %s: %s", name, exc)
        for name in list(logs.topics):
            if name not in wanted:
                log.info("topic %s is not assigned to broker %d; removing its local log", name, self.node_id)
                self.broker.delete_topic(name)
        self._epochs = {key: cache for key, cache in self._epochs.items() if key[0] in wanted}
        for (name, index), partition in state.partitions.items():
            if name in wanted and self.leads(name, index):
                # A leader taking over records where its epoch begins: its log end (Kafka's
                # becomeLeader), so OffsetForLeaderEpoch can tell followers where logs diverge.
                cache = self.epoch_cache(name, index)
                plog = logs.log(name, index)
                if cache is not None and plog is not None and cache.latest_epoch < partition.leader_epoch:
                    cache.assign(partition.leader_epoch, plog.next_offset)

    def epoch_cache(self, name: str, index: int) -> LeaderEpochCache | None:
        cache = self._epochs.get((name, index))
        plog = self.broker.logs.log(name, index)
        if cache is None and plog is not None:
            try:
                cache = self._epochs[(name, index)] = LeaderEpochCache(plog.dir)
            except EpochCacheError as exc:
                log.error("%s-%d: %s", name, index, exc)
                return None
        return cache

    def offset_for_leader_epoch(self, name: str, index: int, epoch: int, current_leader_epoch: int) -> tuple:
        """(error, epoch, end offset) for OffsetForLeaderEpoch, answered by the leader."""
        error = self.leader_error(name, index, current_leader_epoch)
        cache = self.epoch_cache(name, index) if not error else None
        plog = self.broker.logs.log(name, index)
        if error or cache is None or plog is None:
            return error or NOT_LEADER_OR_FOLLOWER, -1, -1
        found_epoch, end = cache.end_offset_for(epoch, plog.next_offset)
        return 0, found_epoch, end

    def partition(self, name: str, index: int) -> PartitionState | None:
        return self.membership.view.state.partitions.get((name, index))

    def leader_error(self, name: str, index: int, current_leader_epoch: int = -1) -> int:
        """The error a request for this partition gets here, as Kafka answers it: 0 when this
        broker leads it; FENCED_LEADER_EPOCH (74) for a client behind on the leader epoch,
        UNKNOWN_LEADER_EPOCH (75) for one ahead of this broker's metadata, else
        NOT_LEADER_OR_FOLLOWER (6). ``current_leader_epoch`` -1 skips the epoch check."""
        state = self.partition(name, index)
        if state is not None and current_leader_epoch >= 0:
            if current_leader_epoch < state.leader_epoch:
                return FENCED_LEADER_EPOCH
            if current_leader_epoch > state.leader_epoch:
                return UNKNOWN_LEADER_EPOCH
        return 0 if self.leads(name, index) else NOT_LEADER_OR_FOLLOWER

    def leads(self, name: str, index: int) -> bool:
        state = self.partition(name, index)
        session = self.membership.session
        if state is None or session is None or state.leader != self.node_id or state.leader == NO_LEADER:
            return False
        return any(m.broker_id == self.node_id and m.broker_epoch == session.epoch for m in state.isr)

    def default_replication_factor(self) -> int:
        """``default.replication.factor`` when set, else 3 once the cluster has 3 brokers (as
        the managed Kafka services do), else every broker."""
        config = self.broker.config
        if "default.replication.factor" in config.explicit:
            return config["default.replication.factor"]
        return min(3, max(1, len(self.membership.view.state.brokers)))

    def live_brokers(self) -> int:
        return len(self.membership.view.state.brokers)

    # --- what Metadata reports -------------------------------------------------------------------
    def topics(self) -> dict[str, tuple[uuid.UUID, list[PartitionRow]]]:
        """Every complete topic of the cluster: its id and its partitions' rows."""
        state = self.membership.view.state
        out = {}
        for name, topic in state.topics.items():
            partitions = state.topic_partitions(name)
            if partitions is not None:
                live = state.brokers
                out[name] = (uuid.UUID(topic.topic_id), [_row(i, p, live) for i, p in enumerate(partitions)])
        return out


class PartitionRow(NamedTuple):
    index: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...]  # replicas whose broker is not registered


def _row(index: int, state: PartitionState, live: dict) -> PartitionRow:
    offline = tuple(r for r in state.replicas if r not in live)
    return PartitionRow(index, state.leader, state.leader_epoch, state.replicas, state.isr_ids, offline)
