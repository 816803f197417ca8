"""A broker's membership of a cluster: the subsystem ``Broker.start()`` builds when
``coordination`` is set.

It registers the broker (its advertised listeners and rack) on an etcd lease, keeps a
watched view of the cluster's metadata, runs the broker's controller candidacy and its part
in fast failure detection (``coordination.fencing``). The
broker is ``ready`` (``/healthz`` 200) only while it is registered with its current epoch
and its view has caught up with etcd. A broker whose lease expired (etcd unreachable for
longer than the session timeout) registers again with a new epoch as soon as it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from brokerd.coordination.controller import Controller, LeaderRebalance
from brokerd.coordination.etcd import CoordinationDenied, CoordinationError, Etcd, created_at, put
from brokerd.coordination.fencing import FailureDetector
from brokerd.coordination.keys import Keys
from brokerd.coordination.metadata import Fence, MetadataWriter, NotRegisteredError
from brokerd.coordination.producer_ids import ClusterProducerIds
from brokerd.coordination.records import BrokerRegistration, Endpoint
from brokerd.coordination.session import BrokerSession
from brokerd.coordination.tasks import cancel_and_wait
from brokerd.coordination.url import CoordinationUrl
from brokerd.coordination.view import ClusterState, ClusterView

log = logging.getLogger("brokerd.replication")

NO_CONTROLLER = -1
# How long Metadata keeps listing a broker whose registration went (fenced, expired or left):
# clients learn its partitions' new leaders first and see it leave afterwards. librdkafka,
# told both at once, drops the broker's thread while the partitions move and produces again
# only after its next once-a-second metadata scan.
DEPARTED_GRACE_S = 5.0


class MembershipError(Exception):
    """The broker cannot join its cluster; the message is one line for the operator."""


@dataclass(frozen=True)
class BrokerAddress:
    node_id: int
    host: str
    port: int
    rack: str | None


class ClusterMembership:
    def __init__(
        self,
        url: CoordinationUrl,
        *,
        node_id: int,
        rack: str | None,
        user: str | None = None,
        password_file: str | None = None,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int | None = None,
        leader_rebalance: LeaderRebalance | None = None,
    ) -> None:
        password = None
        if password_file:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                raise MembershipError(f"coordination password file {password_file}: {exc.strerror}") from None
        self.url = url
        self.node_id = node_id
        self.rack = rack
        self.etcd = Etcd(url.endpoints, user=user or None, password=password)
        self.keys = Keys(url.prefix)
        self.view = ClusterView(self.etcd, self.keys)
        self.ttl = max(2, round(session_timeout_ms / 1000))
        self.heartbeat_s = heartbeat_interval_ms / 1000 if heartbeat_interval_ms else None
        self.leader_rebalance = leader_rebalance
        self.session: BrokerSession | None = None
        self.controller: Controller | None = None
        self.detector: FailureDetector | None = None
        self.producer_ids: ClusterProducerIds | None = None
        # Admin writes this broker makes itself (topics, configs, ACLs, quotas): any registered
        # broker may, under a compare of its own registration
        fence = Fence(self.keys.broker(node_id), self._epoch, self._unregistered)
        self.writes = MetadataWriter(self.view, fence)
        self.on_change: list[Callable[[], None]] = []
        self._registered: dict[int, BrokerRegistration] = {}
        self._departed: dict[int, tuple[BrokerRegistration, float]] = {}  # node id -> (last, when)
        self._rejoin: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self, endpoints: Sequence[Endpoint], timeout: float = 30.0) -> None:
        """Catch up with the cluster's metadata, register, and start the controller candidacy."""
        deadline = time.monotonic() + timeout
        self.view.listeners.append(self._changed)
        self.view.start()
        registration = BrokerRegistration(self.node_id, self.rack, tuple(endpoints), "")
        self.session = BrokerSession(
            self.etcd, self.keys, registration, ttl=self.ttl, heartbeat_s=self.heartbeat_s
        )
        while True:
            try:
                if isinstance(self.view.last_error, CoordinationDenied):
                    raise self.view.last_error
                if self.view.caught_up.is_set():
                    await self.session.register()
                    break
                error: Exception | None = self.view.last_error
            except CoordinationDenied as exc:
                raise MembershipError(
                    f"etcd refused this broker ({exc}); check --coordination-user and its password file"
                ) from None
            except CoordinationError as exc:
                error = exc
            if time.monotonic() >= deadline:
                raise MembershipError(
                    f"cannot reach etcd at {self.url} within {timeout:g} s ({error or 'no answer'}); "
                    "check --coordination and that etcd runs"
                )
            await asyncio.sleep(0.1)
        self.controller = Controller(self.session, self.view, rebalance=self.leader_rebalance)
        self.controller.start()
        self.detector = FailureDetector(self.session, self.view, self.controller)
        self.detector.start()
        self._rejoin = asyncio.create_task(self._rejoin_loop(), name="cluster-rejoin")
        log.info(
            "joined cluster %s as broker %d (epoch %d, rack %s)",
            self.url, self.node_id, self.session.epoch, self.rack or "none",
        )

    async def start_producer_ids(self, *, floor: int) -> ClusterProducerIds:
        """Producer ids from the cluster's counter, none below ``floor`` (the ids this broker's
        data dir reserved on its own)."""
        assert self.session is not None
        self.producer_ids = ClusterProducerIds(self.session, floor=floor)
        await self.producer_ids.start()
        return self.producer_ids

    async def _rejoin_loop(self) -> None:
        assert self.session is not None
        while True:
            await self.session.lost.wait()
            try:
                await self.session.register()
            except CoordinationError as exc:
                log.warning("broker %d could not register again yet: %s", self.node_id, exc)
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Leave the cluster now: the lease is revoked so that leaderships move at once."""
        await cancel_and_wait(self._rejoin)
        if self.producer_ids is not None:
            await self.producer_ids.stop()
        if self.detector is not None:
            await self.detector.stop()
        if self.controller is not None:
            await self.controller.stop()
        if self.session is not None:
            await self.session.close()
        await self.view.stop()
        with contextlib.suppress(Exception):
            await self.etcd.close()

    def _epoch(self) -> int:
        session = self.session
        return 0 if session is None or session.lost.is_set() else session.epoch

    def _unregistered(self) -> NotRegisteredError:
        return NotRegisteredError(f"broker {self.node_id} is not registered in the cluster right now")
    async def controlled_shutdown(self, timeout: float) -> bool:
        """Kafka's controlled shutdown: mark this broker's registration as shutting down, then
        wait (at most ``timeout`` seconds) until the controller has moved every leadership it
        can to another live in-sync replica and taken this broker out of the ISRs where others
        remain. True when that happened in time."""
        session = self.session
        if session is None or not await session.announce_shutdown():
            return False
        node_id = self.node_id

        def moved(state: ClusterState) -> bool:
            if state.controller is None:
                return True  # nobody to move them: stop now, as an uncontrolled stop would
            for partition in state.partitions.values():
                if partition.leader != node_id and all(m.broker_id != node_id for m in partition.isr):
                    continue
                for member in partition.isr:
                    other = state.brokers.get(member.broker_id)
                    if (
                        member.broker_id != node_id
                        and other is not None
                        and other.epoch == member.broker_epoch
                        and not other.shutting_down
                    ):
                        return False  # another in-sync replica could take over: not done yet
            return True

        try:
            await self.view.wait_until(moved, timeout)
        except TimeoutError:
            return False
        return True

    async def request_internal_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """Ask the controller to create internal topic ``name`` (any broker may; the controller
        acts on the first request and removes it)."""
        key = self.keys.internal_request(name)
        request = {"partitions": partitions, "replication_factor": replication_factor, "configs": configs}
        value = json.dumps(request, sort_keys=True).encode()
        await self.etcd.txn([created_at(key, 0)], [put(key, value)])

    def _changed(self, state: ClusterState) -> None:
        now = time.monotonic()
        for node_id, registration in self._registered.items():
            if node_id not in state.brokers:
                self._departed[node_id] = (registration, now)
                asyncio.get_running_loop().call_later(DEPARTED_GRACE_S + 0.01, self._notify)
        for node_id in state.brokers:
            self._departed.pop(node_id, None)
        self._registered = dict(state.brokers)
        self._notify()

    def _notify(self) -> None:
        for callback in list(self.on_change):
            callback()

    # --- answers ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        session = self.session
        if session is None or not session.epoch or session.lost.is_set() or not self.view.caught_up.is_set():
            return False
        mine = self.view.state.brokers.get(self.node_id)
        return mine is not None and mine.epoch == session.epoch

    @property
    def cluster_id(self) -> str | None:
        return self.view.state.cluster_id

    def controller_id(self) -> int:
        record = self.view.state.controller
        return record.node_id if record is not None else NO_CONTROLLER

    def brokers(self, listener_name: str, *, departed: bool = False) -> list[BrokerAddress]:
        """Every registered broker's address on the listener a client came in through, with
        ``departed`` those that left less than DEPARTED_GRACE_S ago too (for Metadata)."""
        out = []
        registrations = dict(self.view.state.brokers)
        if departed:
            now = time.monotonic()
            for node_id, (registration, when) in self._departed.items():
                if now - when < DEPARTED_GRACE_S and node_id not in registrations:
                    registrations[node_id] = registration
        for node_id, registration in sorted(registrations.items()):
            for endpoint in registration.endpoints:
                if endpoint.name == listener_name:
                    out.append(BrokerAddress(node_id, endpoint.host, endpoint.port, registration.rack))
                    break
        return out
