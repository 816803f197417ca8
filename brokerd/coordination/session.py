"""A broker's registration: one key bound to a lease, whose create revision is the broker
epoch.

A restarted broker takes its node id over at once: it deletes the registration (and the
controller key) its previous process left behind, whose lease may still run for a few
seconds after a ``kill -9``, and registers anew, so it gets a new, larger epoch. Every
write a broker makes compares its registration's create revision with its epoch, so the
previous process, were it still alive, can no longer change anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace

from brokerd.coordination import etcd as e
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import BrokerRegistration, ControllerRecord
from brokerd.coordination.tasks import cancel_and_wait

log = logging.getLogger("brokerd.coordination")


class BrokerSession:
    def __init__(
        self,
        etcd: e.Etcd,
        keys: Keys,
        registration: BrokerRegistration,
        *,
        ttl: int = 6,
        heartbeat_s: float | None = None,
    ) -> None:
        if ttl < 2:
            raise ValueError("the broker session TTL must be at least 2 seconds (etcd's minimum)")
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else ttl / 3
        if not 0 < self.heartbeat_s < ttl:
            raise ValueError("the heartbeat interval must be positive and shorter than the session TTL")
        self.etcd = etcd
        self.keys = keys
        self.registration = registration
        self.ttl = ttl
        self.lease_id = 0
        self.epoch = 0
        self.lost = asyncio.Event()  # set when the lease expired: the epoch is void
        self.on_lost: list[Callable[[], None]] = []
        self._keepalive: asyncio.Task | None = None

    @property
    def node_id(self) -> int:
        return self.registration.node_id

    async def register(self) -> int:
        """Register (again) and return the new broker epoch."""
        await self._stop_keepalive()
        key = self.keys.broker(self.node_id)
        await self._ensure_cluster_id()
        lease_id = await self.etcd.grant_lease(self.ttl)
        registration = replace(self.registration, incarnation=uuid.uuid4().hex, epoch=0)
        while True:
            current = await self.etcd.get(key)
            if current is not None:
                await self._take_over(current)
                continue
            result = await self.etcd.txn(
                [e.created_at(key, 0)], [e.put(key, registration.to_bytes(), lease_id)]
            )
            if result.succeeded:
                break
        self.lease_id = lease_id
        self.epoch = result.revision
        self.registration = replace(registration, epoch=self.epoch)
        self.lost.clear()
        self._keepalive = asyncio.create_task(self._keep_alive(), name=f"broker-{self.node_id}-lease")
        log.info("registered broker %d with epoch %d", self.node_id, self.epoch)
        return self.epoch

    async def _ensure_cluster_id(self) -> None:
        await self.etcd.txn(
            [e.created_at(self.keys.cluster, 0)], [e.put(self.keys.cluster, uuid.uuid4().hex.encode())]
        )

    async def _take_over(self, current: e.Entry) -> None:
        """Remove a registration of this node id left by an earlier process, and the
        controller key if that process held it."""
        compare = [e.modified_at(current.key, current.mod_revision)]
        ops = [e.delete(current.key)]
        controller = await self.etcd.get(self.keys.controller)
        if controller is not None:
            record = ControllerRecord.from_bytes(controller.value, epoch=controller.create_revision)
            if record.node_id == self.node_id and record.broker_epoch == current.create_revision:
                compare.append(e.modified_at(controller.key, controller.mod_revision))
                ops.append(e.delete(controller.key))
        result = await self.etcd.txn(compare, ops)
        if result.succeeded:
            log.info(
                "took over node id %d from an earlier process (epoch %d)",
                self.node_id,
                current.create_revision,
            )

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                ttl = await self.etcd.keepalive(self.lease_id)
            except e.CoordinationError as exc:
                log.warning("broker %d could not refresh its lease: %s", self.node_id, exc)
                continue
            if ttl <= 0:
                log.error(
                    "broker %d lost its registration (lease expired, epoch %d void)", self.node_id, self.epoch
                )
                self.lost.set()
                for callback in list(self.on_lost):
                    callback()
                return

    async def _stop_keepalive(self) -> None:
        await cancel_and_wait(self._keepalive)
        self._keepalive = None

    async def announce_shutdown(self) -> bool:
        """Mark this broker's registration as shutting down (same key, same lease, same epoch);
        False when the registration is not this process's any more."""
        if not self.epoch or self.lost.is_set():
            return False
        key = self.keys.broker(self.node_id)
        self.registration = replace(self.registration, shutting_down=True)
        result = await self.etcd.txn(
            [e.created_at(key, self.epoch)], [e.put(key, self.registration.to_bytes(), self.lease_id)]
        )
        return result.succeeded

    async def close(self) -> None:
        """Leave the cluster now (a clean stop): revoking the lease deletes the
        registration, so the controller moves this broker's leaderships without waiting."""
        await self._stop_keepalive()
        if self.lease_id:
            with contextlib.suppress(e.CoordinationError):
                await self.etcd.revoke_lease(self.lease_id)
            self.lease_id = 0
