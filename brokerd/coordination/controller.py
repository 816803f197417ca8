"""The active controller: one broker per cluster, elected through etcd.

Election: the first broker to create ``{prefix}controller`` (bound to its own lease) is
the controller, and the key's create revision is its controller epoch. Every write the
controller makes compares that create revision, so a controller that lost the key (its
lease expired, or it was taken over) cannot change anything afterwards, whatever it
still believes: fencing comes from the compare, never from holding a lease.

Duties: keep every partition's leader and ISR right as brokers come and go (see
``leadership.reconcile``). Topics are created and deleted by whichever broker receives the
request (``metadata.MetadataWriter``); the controller's own topic methods make the same writes
under its fence. Each partition write also
compares the partition's mod revision, which moves with its partition epoch, so it never
overwrites a leader's ISR change it has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

from brokerd.coordination import etcd as e
from brokerd.coordination import reassignment
from brokerd.coordination.elections import PREFERRED, ElectionRefusal, elect, imbalanced_leaderships
from brokerd.coordination.keys import Keys
from brokerd.coordination.leadership import reconcile
from brokerd.coordination.metadata import (
    Fence,
    MetadataWriter,
    TopicExistsError,
    UnknownTopicError,
)
from brokerd.coordination.placement import AssignmentError, check_assignment
from brokerd.coordination.records import ControllerRecord, PartitionState, TopicRecord
from brokerd.coordination.session import BrokerSession
from brokerd.coordination.tasks import cancel_and_wait
from brokerd.coordination.view import ClusterState, ClusterView

log = logging.getLogger("brokerd.coordination")

class NotControllerError(Exception):
    """This broker is not the active controller (Kafka's NOT_CONTROLLER)."""


class NoReassignmentError(Exception):
    """Cancelling a reassignment that is not in progress (NO_REASSIGNMENT_IN_PROGRESS)."""


@dataclass(frozen=True)
class LeaderRebalance:
    """Kafka's automatic preferred-leader rebalance: auto.leader.rebalance.enable,
    leader.imbalance.check.interval.seconds and leader.imbalance.per.broker.percentage."""

    enabled: bool = True
    interval_s: float = 300.0
    percentage: int = 10


class Controller:
    def __init__(
        self,
        session: BrokerSession,
        view: ClusterView,
        *,
        rng: random.Random | None = None,
        rebalance: LeaderRebalance | None = None,
    ) -> None:
        self.session = session
        self.view = view
        self.etcd: e.Etcd = session.etcd
        self.keys: Keys = session.keys
        self.epoch = 0  # the controller epoch while active, else 0
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.rebalance = rebalance or LeaderRebalance(enabled=False)
        self._rebalancer: asyncio.Task | None = None
        fence = Fence(self.keys.controller, lambda: self.epoch, self._deposed)
        self.writes = MetadataWriter(view, fence, rng=self.rng)

    @property
    def active(self) -> bool:
        current = self.view.state.controller
        return self.epoch != 0 and current is not None and current.epoch == self.epoch

    def start(self) -> None:
        self.view.listeners.append(self._on_change)
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name=f"controller-{self.session.node_id}")
        if self.rebalance.enabled:
            self._rebalancer = asyncio.create_task(
                self._rebalance_loop(), name=f"leader-rebalance-{self.session.node_id}"
            )

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.view.listeners.remove(self._on_change)
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._rebalancer)
        self._task = self._rebalancer = None
        self.epoch = 0

    def _on_change(self, _state: ClusterState) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.view.caught_up.is_set() or self.session.lost.is_set() or not self.session.epoch:
                continue
            try:
                await self.step()
            except e.CoordinationError as exc:
                log.warning("controller step failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def step(self) -> None:
        """One round: campaign when there is no controller, reconcile partitions when we are it."""
        state = self.view.state
        if state.controller is None:
            await self.campaign()
            return
        if state.controller.epoch != self.epoch:
            if self.epoch:
                log.info("broker %d is no longer the controller (epoch %d)", self.session.node_id, self.epoch)
            self.epoch = 0
            return
        await self.reconcile_all(state)
        await self.create_internal_topics(state)

    async def campaign(self) -> bool:
        record = ControllerRecord(self.session.node_id, self.session.epoch)
        result = await self.etcd.txn(
            [
                e.created_at(self.keys.controller, 0),
                e.created_at(self.keys.broker(self.session.node_id), self.session.epoch),
            ],
            [e.put(self.keys.controller, record.to_bytes(), self.session.lease_id)],
        )
        if result.succeeded:
            self.epoch = result.revision
            log.info("broker %d is the controller, epoch %d", self.session.node_id, self.epoch)
            await self.view.wait_for(result.revision)
            self._wake.set()
        return result.succeeded

    def _fence(self) -> e.rpc.Compare:
        if not self.epoch:
            raise NotControllerError(f"broker {self.session.node_id} is not the controller")
        return e.created_at(self.keys.controller, self.epoch)

    async def reconcile_all(self, state: ClusterState) -> int:
        """Bring every partition in line with the live brokers; return how many changed."""
        live = state.live_epochs()
        shutting_down = {node_id for node_id, reg in state.brokers.items() if reg.shutting_down}
        changed = 0
        for (name, index), partition in list(state.partitions.items()):
            topic = state.topics.get(name)
            if topic is None or topic.topic_id != partition.topic_id:
                continue
            unclean = topic.configs.get("unclean.leader.election.enable", "false").lower() == "true"
            wanted = reconcile(partition, live, unclean=unclean, shutting_down=shutting_down) or (
                reassignment.complete(partition)
            )
            if wanted is None:
                continue
            if await self.write_partition(name, index, partition, wanted):
                changed += 1
                log.info(
                    "%s-%d: leader %d -> %d (leader epoch %d), isr %s -> %s",
                    name,
                    index,
                    partition.leader,
                    wanted.leader,
                    wanted.leader_epoch,
                    list(partition.isr_ids),
                    list(wanted.isr_ids),
                )
        return changed

    async def write_partition(
        self, name: str, index: int, seen: PartitionState, wanted: PartitionState
    ) -> bool:
        key = self.keys.partition(name, index)
        result = await self.etcd.txn(
            [self._fence(), e.modified_at(key, seen.mod_revision)], [e.put(key, wanted.to_bytes())]
        )
        return result.succeeded

    async def _rebalance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rebalance.interval_s)
            if not self.active:
                continue
            try:
                moved = await self.rebalance_leaders()
            except (e.CoordinationError, NotControllerError, UnknownTopicError, TimeoutError) as exc:
                log.warning("preferred-leader rebalance stopped early (%s)", exc)
                continue
            if moved:
                log.info("preferred-leader rebalance moved %d leaderships", moved)

    async def rebalance_leaders(self) -> int:
        """Give their preferred replicas back the partitions of every broker whose share of
        led-elsewhere partitions exceeds leader.imbalance.per.broker.percentage."""
        state = self.view.state
        partitions = {
            key: p for key, p in state.partitions.items()
            if key[0] in state.topics and state.topics[key[0]].topic_id == p.topic_id
        }
        moved = 0
        for name, index in imbalanced_leaderships(partitions, state.live_epochs(), self.rebalance.percentage):
            if await self.elect_leader(name, index, PREFERRED) is None:
                moved += 1
        return moved

    async def alter_reassignment(self, name: str, index: int, target: list[int] | None) -> None:
        """Move a partition to the ``target`` replicas (None cancels the move in progress); the
        controller completes it once the new replicas are in sync (``reassignment.complete``)."""
        self._fence()
        state = self.view.state
        partition = state.partitions.get((name, index))
        topic = state.topics.get(name)
        if partition is None or topic is None or topic.topic_id != partition.topic_id:
            raise UnknownTopicError(f"partition {name}-{index} does not exist")
        if target is None:
            if not partition.adding and not partition.removing:
                raise NoReassignmentError(f"no reassignment of {name}-{index} is in progress")
            wanted = reassignment.cancel(partition)
        else:
            check_assignment([list(target)], set(state.live_epochs()), first_index=index)
            wanted = reassignment.start(partition, list(target))
            if wanted is None:
                return
        key = self.keys.partition(name, index)
        result = await self.etcd.txn(
            [self._fence(), e.modified_at(key, partition.mod_revision)], [e.put(key, wanted.to_bytes())],
            [e.get(self.keys.controller)],
        )
        if not result.succeeded:
            controller = result.ranges[0]
            if not controller or controller[0].create_revision != self.epoch:
                self.epoch = 0
                raise NotControllerError(f"broker {self.session.node_id} is no longer the controller")
            raise e.CoordinationError(f"partition {name}-{index} changed meanwhile; try again")
        log.info("%s-%d: reassignment to %s (adding %s, removing %s)", name, index, list(wanted.replicas),
                 list(wanted.adding), list(wanted.removing))
        await self.view.wait_for(result.revision)

    async def elect_leader(self, name: str, index: int, election_type: int) -> ElectionRefusal | None:
        """Elect a partition's leader as an operator asked (see ``elections.elect``); None when
        the new leader is written, else why not. Raises UnknownTopicError for an unknown
        partition, NotControllerError when this broker is not (or no longer) the controller."""
        self._fence()
        for _attempt in range(5):  # a leader's ISR change may land between the read and the write
            state = self.view.state
            partition = state.partitions.get((name, index))
            topic = state.topics.get(name)
            if partition is None or topic is None or topic.topic_id != partition.topic_id:
                raise UnknownTopicError(f"partition {name}-{index} does not exist")
            wanted = elect(partition, state.live_epochs(), election_type)
            if isinstance(wanted, ElectionRefusal):
                return wanted
            result = await self.etcd.txn(
                [self._fence(), e.modified_at(self.keys.partition(name, index), partition.mod_revision)],
                [e.put(self.keys.partition(name, index), wanted.to_bytes())],
                [e.get(self.keys.controller)],
            )
            if result.succeeded:
                log.info("%s-%d: leader %d -> %d by election (leader epoch %d)", name, index,
                         partition.leader, wanted.leader, wanted.leader_epoch)
                await self.view.wait_for(result.revision)
                return None
            controller = result.ranges[0]
            if not controller or controller[0].create_revision != self.epoch:
                self.epoch = 0
                raise NotControllerError(f"broker {self.session.node_id} is no longer the controller")
            await self.view.wait_for(result.revision)
        raise e.CoordinationError(f"partition {name}-{index} kept changing during the election; try again")

    # --- topics (the same writes any broker makes, under the controller's fence) -----------------
    async def create_internal_topics(self, state: ClusterState) -> None:
        """Create the internal topics brokers asked for (``{prefix}internal/{name}``: the first
        FindCoordinator for it), with the replication factor asked for, at most the live
        brokers (``offsets.topic.replication.factor`` 3 on a cluster of 3 or more)."""
        for name, request in list(state.internal_requests.items()):
            if name not in state.topics:
                replication = max(1, min(int(request.get("replication_factor", 3)), len(state.brokers)))
                try:
                    configs = dict(request.get("configs") or {})
                    if "min.insync.replicas" in configs:  # never more than the replicas it got
                        least = min(int(configs["min.insync.replicas"]), replication)
                        configs["min.insync.replicas"] = str(least)
                    await self.create_topic(name, int(request["partitions"]), replication, configs)
                except TopicExistsError:
                    pass
                except (ValueError, KeyError, TypeError, AssignmentError) as exc:
                    log.error("cannot create internal topic %s as asked (%s): %s", name, request, exc)
                    continue
                else:
                    log.info("created internal topic %s: %s partitions, replication factor %d",
                             name, request["partitions"], replication)  # fmt: skip
            await self.etcd.txn([self._fence()], [e.delete(self.keys.internal_request(name))])

    async def create_topic(self, name: str, partitions: int, replication_factor: int,
                           configs: dict[str, str] | None = None, **options) -> TopicRecord:
        return await self.writes.create_topic(name, partitions, replication_factor, configs, **options)

    async def create_partitions(self, name: str, count: int, assignments: list[list[int]] | None = None,
                                *, validate_only: bool = False) -> None:
        await self.writes.create_partitions(name, count, assignments, validate_only=validate_only)

    async def delete_topic(self, name: str) -> None:
        await self.writes.delete_topic(name)

    def _deposed(self) -> NotControllerError:
        was, self.epoch = self.epoch, 0
        if was:
            return NotControllerError(f"broker {self.session.node_id} is no longer the controller")
        return NotControllerError(f"broker {self.session.node_id} is not the controller")
