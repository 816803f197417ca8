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

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.partitions import alter_isr
from brokerd.coordination.records import NO_LEADER, IsrMember, PartitionState
from brokerd.coordination.tasks import cancel_and_wait
from brokerd.coordination.view import ClusterState
from brokerd.replication.autocreate import TopicAutoCreator
from brokerd.replication.client import LeaderAddress
from brokerd.replication.fetcher import LeaderFetcher, batches_of
from brokerd.replication.leader import Leadership
from brokerd.replication.membership import ClusterMembership
from brokerd.replication.quota import ReplicationQuota
from brokerd.storage.epochs import EpochCacheError, LeaderEpochCache

log = logging.getLogger("brokerd.replication")

NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
ISR_SHOWN_TIMEOUT_S = 10.0  # a committed ISR change reaches the watched view well within this


class ReplicaManager:
    def __init__(self, broker: Any, membership: ClusterMembership) -> None:
        self.broker = broker
        self.membership = membership
        self.node_id = membership.node_id
        self._epochs: dict[tuple[str, int], LeaderEpochCache] = {}
        self._led: dict[tuple[str, int], Leadership] = {}
        self._known_hw: dict[tuple[str, int], int] = {}  # a follower's high watermark, from its leader
        self._fetchers: dict[int, LeaderFetcher] = {}
        self._shrinker: asyncio.Task | None = None
        self.on_sync: list[Callable[[], None]] = []  # after each change of leaderships
        self._stopped = False
        self.lag_max = broker.config["replica.lag.time.max.ms"] / 1000
        self.session_s = broker.config["broker.session.timeout.ms"] / 1000
        self.auto_creator = TopicAutoCreator(self)
        # shared by the fetchers from every leader: the rate is the broker's, not per leader
        self.follower_quota = ReplicationQuota(
            lambda: broker.configs.get("follower.replication.throttled.rate")
        )

    def start(self) -> None:
        self.membership.view.listeners.append(self.sync)
        self.sync(self.membership.view.state)
        self._shrinker = asyncio.create_task(self._shrink_loop(), name="isr-shrink")

    async def stop(self) -> None:
        # no new fetchers or leaderships from metadata changes arriving while this stops
        self._stopped = True
        if self.sync in self.membership.view.listeners:
            self.membership.view.listeners.remove(self.sync)
        await self.auto_creator.stop()
        await cancel_and_wait(self._shrinker)
        for fetcher in list(self._fetchers.values()):
            await fetcher.stop()
        self._fetchers.clear()
        for leadership in self._led.values():
            leadership.abandon()
        self._led.clear()

    def sync(self, state: ClusterState) -> None:
        """Create and remove local logs so that they match the assignment in etcd."""
        if self._stopped or not self.membership.view.caught_up.is_set():
            return  # a partial read must not delete anything
        logs = self.broker.logs
        wanted: dict[str, uuid.UUID] = {}
        for name, topic in state.topics.items():
            partitions = state.topic_partitions(name)
            if partitions is None:
                local = logs.topics.get(name)
                if local is not None and str(local.id) == topic.topic_id:
                    # the topic is changing (CreatePartitions: a watch delivers a transaction's
                    # keys one by one): keep the local log until the change is complete
                    wanted[name] = local.id
                continue
            if not any(self.node_id in p.replicas for p in partitions):
                continue
            wanted[name] = uuid.UUID(topic.topic_id)
            local = logs.topics.get(name)
            if local is not None and local.id != wanted[name]:
                log.info("topic %s was recreated in the cluster; removing the old local log", name)
                self.broker.delete_topic(name)
                local = None
            try:
                if local is None:
                    self.broker.create_topic(name, topic.partitions, topic.configs, wanted[name])
                elif len(local.partitions) < topic.partitions:  # CreatePartitions grew the topic
                    logs.add_partitions(local, topic.partitions)
            except OSError as exc:
                log.error("cannot create the local log of %s: %s", name, exc)
        for name in list(logs.topics):
            if name not in wanted:
                log.info("topic %s is not assigned to broker %d; removing its local log", name, self.node_id)
                self.broker.delete_topic(name)
        self._epochs = {key: cache for key, cache in self._epochs.items() if key[0] in wanted}
        led = {}
        followed: set[int] = set()
        for (name, index), partition in state.partitions.items():
            if name not in wanted:
                continue
            plog = logs.log(name, index)
            if self.leads(name, index):
                # A leader taking over records where its epoch begins: its log end (Kafka's
                # becomeLeader), so OffsetForLeaderEpoch can tell followers where logs diverge.
                cache = self.epoch_cache(name, index)
                if cache is not None and plog is not None and cache.latest_epoch < partition.leader_epoch:
                    cache.assign(partition.leader_epoch, plog.next_offset)
                leadership = self._led.pop((name, index), None)
                if leadership is None or leadership.leader_epoch != partition.leader_epoch:
                    if leadership is not None:
                        leadership.abandon()
                    start = min(self._known_hw.get((name, index), 0), plog.next_offset if plog else 0)
                    leadership = Leadership(partition.leader_epoch, start)
                led[(name, index)] = leadership
                if plog is not None and leadership.advance(partition, self.node_id, plog.next_offset):
                    plog.wake_waiters()
            elif self.node_id in partition.replicas and partition.leader not in (NO_LEADER, self.node_id):
                followed.add(partition.leader)
        for leadership in self._led.values():
            leadership.abandon()  # led no more
        self._led = led
        for leader_id in list(self._fetchers):
            if leader_id not in followed:
                self._fetchers.pop(leader_id).cancel()
        for leader_id in followed:
            if leader_id not in self._fetchers:
                self._fetchers[leader_id] = LeaderFetcher(self, leader_id)
            self._fetchers[leader_id].wake.set()
        for callback in list(self.on_sync):
            callback()

    # --- the follower's side ----------------------------------------------------------------------
    def leader_address(self, leader_id: int) -> LeaderAddress | None:
        """Where followers fetch from: the leader's PLAINTEXT listener, else its SASL_PLAINTEXT one,
        else its SASL_SSL one (verified with ``inter.broker.tls.ca.file``), as ``inter.broker.user``."""
        registration = self.membership.view.state.brokers.get(leader_id)
        if registration is None:
            return None
        by_name = {e.name: e for e in registration.endpoints}
        if "PLAINTEXT" in by_name:
            return LeaderAddress(by_name["PLAINTEXT"].host, by_name["PLAINTEXT"].port, None, None)
        credentials = self._inter_broker_credentials()
        if credentials is None:
            return None  # nothing this broker can log in with: the follower stays out of the ISR
        if "SASL_PLAINTEXT" in by_name:
            endpoint = by_name["SASL_PLAINTEXT"]
            return LeaderAddress(endpoint.host, endpoint.port, credentials, None)
        ca_file = self.broker.config["inter.broker.tls.ca.file"]
        if "SASL_SSL" in by_name and ca_file:
            endpoint = by_name["SASL_SSL"]
            return LeaderAddress(endpoint.host, endpoint.port, credentials, str(ca_file))
        return None

    def _inter_broker_credentials(self) -> tuple[str, str] | None:
        config = self.broker.config
        user, path = config["inter.broker.user"], config["inter.broker.password.file"]
        if not user or not path:
            return None
        try:
            with open(path) as fh:
                return user, fh.read().strip()
        except OSError as exc:
            log.error("inter-broker password file %s: %s", path, exc.strerror)
            return None

    def leader_refused(self, leader_id: int) -> None:
        """A connection to the leader's listener was refused: tell the controller, which checks
        for itself and fences the leader if it is gone (``coordination.fencing``)."""
        detector = self.membership.detector
        if detector is not None:
            detector.suspect(leader_id)

    def leader_reachability_changed(self) -> None:
        self.broker.metadata_cache.clear()  # Metadata answers from what the fetchers see

    def unreachable_leaders(self) -> set[int]:
        """Leaders whose listener this broker lost as a follower (the connection broke or was
        refused) less than broker.session.timeout.ms ago, and has not fetched from since."""
        now = time.monotonic()
        return {
            leader_id for leader_id, fetcher in self._fetchers.items()
            if fetcher.unreachable_since is not None and now - fetcher.unreachable_since < self.session_s
        }  # fmt: skip

    def followed_from(self, leader_id: int) -> dict[tuple[str, int], PartitionState]:
        out = {}
        for key, state in self.membership.view.state.partitions.items():
            if state.leader == leader_id and self.node_id in state.replicas and self.broker.logs.log(*key):
                out[key] = state
        return out

    def follower_append(self, name: str, index: int, records: bytes, leader_hw: int,
                        leader_start: int = -1) -> None:
        """Append what the leader sent, with its offsets and leader epochs; move the log start up to
        the leader's (records the leader deleted with DeleteRecords stay deleted after a failover)."""
        plog = self.broker.logs.log(name, index)
        cache = self.epoch_cache(name, index)
        if plog is None or cache is None:
            return
        data, batches, count, epochs = batches_of(records, plog.next_offset)
        if batches:
            for epoch, base in epochs:
                if epoch > cache.latest_epoch:
                    cache.assign(epoch, base)
            plog.append(data, batches, count)
            # Idempotent producers' sequences, from the batch headers: a follower that takes
            # over keeps deduplicating and ordering their retries.
            self.broker.producers.appended(name, index, data, batches)
        self._known_hw[(name, index)] = min(leader_hw, plog.next_offset)
        if leader_start > plog.start_offset:
            self.broker.logs.delete_records(plog, min(leader_start, plog.next_offset))

    # --- the leader's side -------------------------------------------------------------------------
    def high_watermark(self, name: str, index: int) -> int | None:
        leadership = self._led.get((name, index))
        return leadership.high_watermark if leadership is not None else None

    def follower_fetched(self, name: str, index: int, replica_id: int, fetch_offset: int,
                         replica_epoch: int = -1) -> None:
        """A follower fetched from ``fetch_offset``: it holds everything below it.

        ``replica_epoch`` is the broker epoch the follower sent (Fetch v15, KIP-903; -1 when
        not sent). A fetch from an epoch other than the one last seen starts the follower's
        progress afresh (a restarted broker may have lost its unflushed tail), and the leader
        adds a follower back to the ISR only as the incarnation registered now: a fetch from
        a stale epoch never does."""
        leadership = self._led.get((name, index))
        state = self.partition(name, index)
        plog = self.broker.logs.log(name, index)
        if leadership is None or state is None or plog is None or replica_id not in state.replicas:
            return
        follower = leadership.follower(replica_id)
        if replica_epoch >= 0 and replica_epoch != follower.broker_epoch:
            follower.restart(replica_epoch)
        follower.log_end = fetch_offset
        if fetch_offset >= plog.next_offset:
            follower.caught_up_at = time.monotonic()
        if leadership.advance(state, self.node_id, plog.next_offset):
            plog.wake_waiters()
        cache = self.epoch_cache(name, index)
        epoch_start = cache.entries[-1][1] if cache is not None and cache.entries else 0
        registered = self.membership.view.state.brokers.get(replica_id)
        if (
            replica_id not in state.isr_ids
            and fetch_offset >= max(leadership.high_watermark, epoch_start)
            and registered is not None
            and not registered.shutting_down
            and replica_epoch in (-1, registered.epoch)
        ):
            joined = IsrMember(replica_id, registered.epoch)
            self._change_isr(name, index, leadership, state, (*state.isr, joined))

    def appended(self, name: str, index: int) -> None:
        leadership = self._led.get((name, index))
        state = self.partition(name, index)
        plog = self.broker.logs.log(name, index)
        if leadership is not None and state is not None and plog is not None:
            leadership.advance(state, self.node_id, plog.next_offset)

    def min_insync(self, name: str) -> int:
        """``min.insync.replicas``: the topic's, else 2 on a replicated topic (1 otherwise)."""
        topic = self.membership.view.state.topics.get(name)
        if topic is None:
            return 1
        configured = topic.configs.get("min.insync.replicas")
        if configured is not None:
            return int(configured)
        return 2 if topic.replication_factor > 1 else 1

    def isr_size(self, name: str, index: int) -> int:
        state = self.partition(name, index)
        return len(state.isr) if state is not None else 0

    def wait_committed(self, name: str, index: int, offset: int) -> asyncio.Future | None:
        """A future resolved with True once the high watermark reaches ``offset`` (False if this
        broker stops leading first); None when it does not lead the partition."""
        leadership = self._led.get((name, index))
        return leadership.wait_for(offset) if leadership is not None else None

    def _change_isr(self, name, index, leadership: Leadership, seen: PartitionState, isr) -> None:
        """Write a new ISR through etcd; act on it only once committed (the view shows it)."""
        if leadership.isr_change is not None and not leadership.isr_change.done():
            return
        session = self.membership.session
        joining = {m.broker_id for m in isr} - set(seen.isr_ids)
        leadership.joining |= joining  # counted from now on: etcd may commit it at any moment

        async def change() -> None:
            try:
                committed = await alter_isr(session, name, index, seen, tuple(isr))
                if committed is not None:
                    log.info("%s-%d: ISR %s -> %s", name, index, list(seen.isr_ids), list(committed.isr_ids))
                    # until the view shows the new ISR, the high watermark still needs the joiners
                    shown = committed.partition_epoch
                    def in_view(state: ClusterState) -> bool:
                        now = state.partitions.get((name, index))
                        return now is None or now.partition_epoch >= shown

                    await self.membership.view.wait_until(in_view, ISR_SHOWN_TIMEOUT_S)
            except CoordinationError as exc:
                log.warning("%s-%d: ISR change failed: %s", name, index, exc)
            except TimeoutError:
                log.warning("%s-%d: the committed ISR change is not in the metadata view yet", name, index)
            finally:
                leadership.joining -= joining

        leadership.isr_change = asyncio.ensure_future(change())

    async def _shrink_loop(self) -> None:
        """Remove from the ISR a follower that has not caught up for replica.lag.time.max.ms."""
        while True:
            await asyncio.sleep(min(1.0, self.lag_max / 2))
            now = time.monotonic()
            for (name, index), leadership in list(self._led.items()):
                state = self.partition(name, index)
                if state is None:
                    continue
                lagging = {
                    m.broker_id for m in state.isr
                    if m.broker_id != self.node_id
                    and now - leadership.follower(m.broker_id).caught_up_at > self.lag_max
                }  # fmt: skip
                if lagging:
                    kept = tuple(m for m in state.isr if m.broker_id not in lagging)
                    self._change_isr(name, index, leadership, state, kept)

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

    def auto_create(self, name: str) -> None:
        """Have the controller create ``name`` (auto.create.topics.enable); see autocreate.py."""
        self.auto_creator.request(name)

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
    def topics(self, *, for_clients: bool = False) -> dict[str, tuple[uuid.UUID, list[PartitionRow]]]:
        """Every complete topic of the cluster: its id and its partitions' rows.

        ``for_clients`` (Metadata): a partition whose leader this broker, as its
        follower, has just lost (``unreachable_leaders``) shows no leader, so that clients
        keep asking (LEADER_NOT_AVAILABLE) until the controller has moved it, instead of
        retrying a dead broker with growing back-off."""
        state = self.membership.view.state
        lost = self.unreachable_leaders() if for_clients else set()
        out = {}
        for name, topic in state.topics.items():
            partitions = state.topic_partitions(name)
            if partitions is not None:
                live = state.brokers
                rows = [_row(i, p, live, lost) for i, p in enumerate(partitions)]
                out[name] = (uuid.UUID(topic.topic_id), rows)
        return out


class PartitionRow(NamedTuple):
    index: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...]  # replicas whose broker is not registered


def _row(index: int, state: PartitionState, live: dict, lost: set[int]) -> PartitionRow:
    offline = tuple(r for r in state.replicas if r not in live)
    leader = NO_LEADER if state.leader in lost else state.leader
    return PartitionRow(index, leader, state.leader_epoch, state.replicas, state.isr_ids, offline)
