"""Fast failure detection: a broker whose listeners are gone leaves the cluster at once,
without waiting for its etcd lease to expire.

The lease stays the authority on liveness: a broker that cannot refresh it for
``broker.session.timeout.ms`` leaves every ISR, whatever else happens. But a broker process
that died (killed, crashed) on a host that stays up is visible much sooner: the host's
kernel refuses connections to its listeners. So:

1. A follower whose connection to its leader is refused reports a suspicion: the key
   ``suspects/{leader}/{follower}`` naming the broker epoch it suspects, bound to the
   follower's own lease, written only while both registrations hold the epochs it names.
2. The active controller probes the suspect's listeners itself. Only when every one refuses
   (nothing listens there any more) does it fence the broker: one transaction, compared with
   the controller epoch and the suspect's broker epoch, deletes the registration; then the
   suspect's lease is revoked. The controller's rules then take the broker out of every ISR
   and move its leaderships (``leadership.reconcile``), as when a lease expires. A probe that
   connects, or times out (a host that is down, a network that drops packets), proves
   nothing: the lease decides then.
3. When the suspect is the controller itself, no other broker could act before its lease
   expired: every other broker probes it, and one whose probe is refused deletes the
   controller key together with the registration (compared with both create revisions);
   an election follows.

Fencing a live broker costs availability only, never safety: its lease is revoked, so it
registers again with a new epoch and must catch up before it rejoins an ISR (KIP-903);
meanwhile every write it would make compares its old epoch and fails. Leaders still come
from the ISR only (no unclean election unless the topic asks for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from brokerd.coordination import etcd as e
from brokerd.coordination.controller import Controller
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import BrokerRegistration, Endpoint, Suspicion
from brokerd.coordination.session import BrokerSession
from brokerd.coordination.tasks import cancel_and_wait
from brokerd.coordination.view import ClusterState, ClusterView

log = logging.getLogger("brokerd.coordination")

PROBE_TIMEOUT_S = 1.0


async def listener_gone(endpoint: Endpoint, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True only when a connection to the listener is refused: nothing listens there.

    A bare socket rather than a stream: whatever happens (a timeout racing the connect's
    completion included), the socket is closed here and no transport is left behind."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError):
        return False  # unresolvable or slow: no proof either way
    if not infos:
        return False
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False  # unreachable or slow: no proof either way
    finally:
        sock.close()
    return False


async def broker_gone(registration: BrokerRegistration, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Every advertised listener of the broker refuses connections."""
    if not registration.endpoints:
        return False
    answers = await asyncio.gather(*(listener_gone(ep, timeout) for ep in registration.endpoints))
    return all(answers)


class FailureDetector:
    """A broker's part in fast failure detection: reporting the leaders it cannot reach, and
    probing and fencing suspects when it is the controller (or the suspect is)."""

    def __init__(
        self,
        session: BrokerSession,
        view: ClusterView,
        controller: Controller,
        *,
        probe_timeout: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.session = session
        self.view = view
        self.controller = controller
        self.etcd: e.Etcd = session.etcd
        self.keys: Keys = session.keys
        self.probe_timeout = probe_timeout
        self._reported: dict[int, int] = {}  # suspect -> the broker epoch reported
        self._checked: dict[tuple[int, int], int] = {}  # (suspect, epoch) -> newest suspicion probed for
        self._tasks: set[asyncio.Task] = set()
        self.probes = 0  # suspects this broker probed
        self.fenced = 0  # and of those, the ones it fenced

    def start(self) -> None:
        self.view.listeners.append(self._on_change)
        self._on_change(self.view.state)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.view.listeners.remove(self._on_change)
        for task in list(self._tasks):
            await cancel_and_wait(task)
        self._tasks.clear()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the follower's side ----------------------------------------------------------------------
    def suspect(self, node_id: int) -> None:
        """A connection to broker ``node_id``'s listener was refused: report it once per epoch."""
        registration = self.view.state.brokers.get(node_id)
        if registration is None or node_id == self.session.node_id or not self.session.epoch:
            return
        if self._reported.get(node_id) == registration.epoch:
            return
        self._reported[node_id] = registration.epoch
        self._spawn(self._report(node_id, registration.epoch))

    async def _report(self, suspect: int, epoch: int) -> None:
        me = self.session.node_id
        keys = self.keys
        suspicion = Suspicion(suspect, me, epoch)
        try:
            result = await self.etcd.txn(
                [
                    e.created_at(keys.broker(me), self.session.epoch),
                    e.created_at(keys.broker(suspect), epoch),
                ],
                [e.put(keys.suspicion(suspect, me), suspicion.to_bytes(), self.session.lease_id)],
            )
        except e.CoordinationError as exc:
            log.warning("broker %d could not report broker %d: %s", me, suspect, exc)
            self._reported.pop(suspect, None)  # the next refused connection reports again
            return
        if result.succeeded:
            log.info("broker %d reports broker %d (epoch %d): its listener refuses connections",
                     me, suspect, epoch)  # fmt: skip

    # --- the prober's side ------------------------------------------------------------------------
    def _on_change(self, state: ClusterState) -> None:
        if not self.view.caught_up.is_set() or self.session.lost.is_set() or not self.session.epoch:
            return
        me = self.session.node_id
        stale = []
        for suspicion in list(state.suspicions.values()):
            registration = state.brokers.get(suspicion.suspect)
            if registration is None or registration.epoch != suspicion.broker_epoch:
                stale.append(suspicion)
                continue
            if suspicion.suspect == me:
                continue
            controller = state.controller
            if controller is None:
                continue
            holder = (controller.node_id, controller.broker_epoch)
            suspect_controls = holder == (suspicion.suspect, registration.epoch)
            if not (self.controller.active or suspect_controls):
                continue
            checked = (suspicion.suspect, registration.epoch)
            if self._checked.get(checked, -1) >= suspicion.mod_revision:
                continue
            self._checked[checked] = suspicion.mod_revision
            self._spawn(self._probe_and_fence(registration))
        if stale and self.controller.active:
            self._spawn(self._forget(stale))
        live = {(node_id, reg.epoch) for node_id, reg in state.brokers.items()}
        self._checked = {k: v for k, v in self._checked.items() if k in live}

    async def _forget(self, stale: list[Suspicion]) -> None:
        """Suspicions about an epoch no longer registered are answered already."""
        for suspicion in stale:
            key = self.keys.suspicion(suspicion.suspect, suspicion.reporter)
            with contextlib.suppress(e.CoordinationError):
                await self.etcd.txn([e.modified_at(key, suspicion.mod_revision)], [e.delete(key)])

    async def _probe_and_fence(self, registration: BrokerRegistration) -> None:
        suspect, epoch = registration.node_id, registration.epoch
        gone = await broker_gone(registration, self.probe_timeout)
        self.probes += 1
        if not gone:
            log.info("broker %d (epoch %d) was reported unreachable but its listeners accept "
                     "connections; its lease decides", suspect, epoch)  # fmt: skip
            return
        try:
            await self.fence(registration)
        except e.CoordinationError as exc:
            log.warning("fencing broker %d failed (%s); its lease decides", suspect, exc)

    async def fence(self, registration: BrokerRegistration) -> bool:
        """Remove a broker's registration of ``registration.epoch`` (and the controller key if
        that broker holds it); True when this call did."""
        suspect, epoch = registration.node_id, registration.epoch
        state = self.view.state
        controller = state.controller
        if controller is None:
            return False  # an election comes first; the new controller sees the suspicion
        keys = self.keys
        compare = [
            e.created_at(keys.controller, controller.epoch),
            e.created_at(keys.broker(suspect), epoch),
            e.created_at(keys.broker(self.session.node_id), self.session.epoch),
        ]
        ops = [e.delete(keys.broker(suspect)), e.delete(keys.suspicions_of(suspect), prefix=True)]
        if (controller.node_id, controller.broker_epoch) == (suspect, epoch):
            ops.append(e.delete(keys.controller))
        elif not (self.controller.active and controller.epoch == self.controller.epoch):
            return False
        result = await self.etcd.txn(compare, ops)
        if not result.succeeded:
            return False
        self.fenced += 1
        log.warning("broker %d fenced broker %d (epoch %d): none of its listeners accepts connections",
                    self.session.node_id, suspect, epoch)  # fmt: skip
        if registration.lease:
            # A broker fenced while alive learns it at its next heartbeat and registers again.
            with contextlib.suppress(e.CoordinationError):
                await self.etcd.revoke_lease(registration.lease)
        return True
