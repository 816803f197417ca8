"""The control plane's view of etcd, where replicated clusters keep their metadata.

Brokers of a replicated cluster (Standard, Dedicated) form one cluster through etcd
(`brokerd/coordination`, docs/replication.md). The control plane uses the same client layer,
as etcd's root user:

- at provisioning, each cluster gets its own etcd user and role, granted its own key prefix
  only (`brokerd.coordination.access`); its brokers get that user's password in a file, never
  the root password;
- on delete, the prefix's keys, the user and the role are removed;
- health reads the cluster's broker registrations and partition state from its prefix.

Settings (Django settings or environment):
  KASTLE_ETCD_URL                 etcd endpoints, `http://HOST:PORT[,http://HOST:PORT...]`
                                  (`manage.py up` starts an embedded one when unset)
  KASTLE_ETCD_ROOT_PASSWORD(_FILE) etcd's root password when authentication is on (production);
                                  without it the control plane talks to etcd unauthenticated and
                                  brokers get no etcd credentials
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac

from brokerd.coordination import access
from brokerd.coordination.etcd import CoordinationError, CoordinationUnavailable, Etcd, delete
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import BrokerRegistration, PartitionState, TopicRecord
from sharedkit.envconf import setting

__all__ = ["CoordinationError", "CoordinationUnavailable"]

T = TypeVar("T")
#: Every cluster's prefix lies under this one.
ROOT_PREFIX = "/kastle/clusters/"
_ENDPOINT = re.compile(r"^(?:https?://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]+):(?P<port>\d{1,5})/?$")


class NotConfigured(Exception):
    """No etcd is configured: replicated clusters cannot be provisioned here."""


def endpoints() -> list[tuple[str, int]]:
    raw = setting("KASTLE_ETCD_URL", "")
    if not raw:
        raise NotConfigured(
            "This platform has no etcd (KASTLE_ETCD_URL is not set), which clusters of several "
            "brokers need; the operators must configure it."
        )
    found = []
    for item in raw.split(","):
        match = _ENDPOINT.match(item.strip())
        if not match or not 0 < int(match["port"]) < 65536:
            raise ImproperlyConfigured(
                f"KASTLE_ETCD_URL must look like http://127.0.0.1:2379[,http://HOST:PORT], not {raw!r}"
            )
        found.append((match["host"].strip("[]"), int(match["port"])))
    return found


def configured() -> bool:
    return bool(setting("KASTLE_ETCD_URL", ""))


def root_password() -> str | None:
    password = setting("KASTLE_ETCD_ROOT_PASSWORD", "")
    if password:
        return password
    path = setting("KASTLE_ETCD_ROOT_PASSWORD_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise ImproperlyConfigured(
                f"KASTLE_ETCD_ROOT_PASSWORD_FILE {path!r} cannot be read: {exc}"
            ) from exc
    return None


def auth_enabled() -> bool:
    return root_password() is not None


# --- a cluster's place in etcd -------------------------------------------------------------------
def cluster_prefix(public_id: str) -> str:
    return f"{ROOT_PREFIX}{public_id}/"


def cluster_user(public_id: str) -> str:
    return f"kastle-{public_id}"


def cluster_password(public_id: str) -> str:
    """The cluster's etcd password: derived from SECRET_KEY and the public id, never stored."""
    return salted_hmac("kastle.clusters.etcd-credential", public_id, algorithm="sha256").hexdigest()


def cluster_url(public_id: str) -> str:
    """The brokers' --coordination URL."""
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in endpoints())
    return f"etcd://{hosts}{cluster_prefix(public_id).rstrip('/')}"


def _run(work: Callable[[Etcd], Awaitable[T]]) -> T:
    async def main() -> T:
        password = root_password()
        etcd = Etcd(endpoints(), user="root" if password else None, password=password, timeout=5.0)
        try:
            return await work(etcd)
        finally:
            await etcd.close()

    return asyncio.run(main())


def cluster_access_grant(public_id: str) -> bool:
    """Create the cluster's etcd user and role (its prefix only); False if they exist already.

    Without authentication (no root password) there is nothing to create.
    """
    if not auth_enabled():
        _run(lambda etcd: etcd.get(b"/"))  # still fail early when etcd is unreachable
        return False
    user = cluster_user(public_id)

    async def work(etcd: Etcd) -> bool:
        if await access.cluster_access_exists(etcd, user=user):
            return False
        await access.revoke_cluster_access(etcd, user=user, missing_ok=True)  # a half-made grant
        await access.grant_cluster_access(
            etcd, prefix=cluster_prefix(public_id), user=user, password=cluster_password(public_id)
        )
        return True

    return _guarded(lambda: _run(work))


def cluster_remove(public_id: str) -> None:
    """Delete the cluster's keys, then its user and role (each step tolerates a repeat)."""
    prefix = cluster_prefix(public_id).encode()

    async def work(etcd: Etcd) -> None:
        await etcd.txn([], [delete(prefix, prefix=True)])
        if auth_enabled():
            await access.revoke_cluster_access(etcd, user=cluster_user(public_id), missing_ok=True)

    _guarded(lambda: _run(work))


def cluster_keys(public_id: str) -> int:
    """How many keys the cluster has in etcd (operators, tests)."""

    async def work(etcd: Etcd) -> int:
        _, entries = await etcd.get_prefix(cluster_prefix(public_id).encode())
        return len(entries)

    return _guarded(lambda: _run(work))


def _guarded(call: Callable[[], T]) -> T:
    """gRPC errors of the auth calls as CoordinationError (the caller decides if it retries)."""
    try:
        return call()
    except grpc.aio.AioRpcError as exc:
        raise CoordinationError(f"etcd: {exc.details()}") from exc


# --- health --------------------------------------------------------------------------------------
@dataclass
class ClusterState:
    """What etcd says about a cluster now: live brokers, topics and their partitions."""

    brokers: dict[int, BrokerRegistration] = field(default_factory=dict)
    controller: int | None = None
    topics: dict[str, TopicRecord] = field(default_factory=dict)
    partitions: dict[tuple[str, int], PartitionState] = field(default_factory=dict)

    def live_isr(self, state: PartitionState) -> tuple[int, ...]:
        """ISR members still registered with the epoch they joined with (the controller's rule)."""
        return tuple(
            m.broker_id
            for m in state.isr
            if m.broker_id in self.brokers and self.brokers[m.broker_id].epoch == m.broker_epoch
        )

    def led_by(self, node_id: int) -> int:
        return sum(1 for p in self.partitions.values() if p.leader == node_id and node_id in self.brokers)


def cluster_state(public_id: str) -> ClusterState:
    keys = Keys(cluster_prefix(public_id))

    async def work(etcd: Etcd) -> ClusterState:
        _, entries = await etcd.get_prefix(keys.prefix)
        state = ClusterState()
        for entry in entries:
            if entry.key.startswith(keys.brokers):
                reg = BrokerRegistration.from_bytes(entry.value, epoch=entry.create_revision)
                state.brokers[reg.node_id] = reg
            elif entry.key == keys.controller:
                state.controller = int(json.loads(entry.value)["node_id"])
            elif entry.key.startswith(keys.topics):
                record = TopicRecord.from_bytes(entry.value)
                state.topics[record.name] = record
            elif entry.key.startswith(keys.partitions):
                name, index = keys.partition_of(entry.key)
                state.partitions[(name, index)] = PartitionState.from_bytes(
                    entry.value, mod_revision=entry.mod_revision
                )
        return state

    return _guarded(lambda: _run(work))
