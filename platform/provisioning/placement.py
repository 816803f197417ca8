"""Hosts and placement: which host runs a broker, on which ports.

- A host is *live* while its worker's heartbeat is fresh (`clusters.selectors.live_hosts`).
- A broker occupies a host's capacity while it holds a client-port lease.
- Ports come from the host's range; `PortLease(host, port)` is unique, so two brokers never
  get the same port on a host, whoever races whom (the loser retries with the next port).
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from clusters.models import Broker, BrokerStatus, Cluster, Host
from clusters.selectors import live_hosts

from . import conf
from .models import PortLease, PortPurpose

logger = logging.getLogger(__name__)


class NoHostAvailable(Exception):
    """No live host has room; transient (a host may come back or free up)."""


class NoPortAvailable(Exception):
    """The host's port range is exhausted."""


class PlacementRefused(Exception):
    """The plan's placement cannot be met (a Dedicated cluster needs a host per broker)."""


# --- hosts ----------------------------------------------------------------------------------
def host_register(*, name: str, address: str, port_min: int, port_max: int, capacity: int) -> Host:
    """Create or update a host and stamp its heartbeat (its worker calls this when it starts)."""
    host, _ = Host.objects.update_or_create(
        name=name,
        defaults={
            "address": address,
            "port_min": port_min,
            "port_max": port_max,
            "capacity": capacity,
            "heartbeat_at": timezone.now(),
        },
    )
    return host


def host_register_local() -> Host:
    port_min, port_max = conf.host_ports()
    return host_register(
        name=conf.host_name(),
        address=conf.host_address(),
        port_min=port_min,
        port_max=port_max,
        capacity=conf.host_capacity(),
    )


def host_heartbeat(name: str) -> bool:
    """Refresh a host's heartbeat; False if the host row is gone (the caller re-registers)."""
    return bool(Host.objects.filter(name=name).update(heartbeat_at=timezone.now()))


def host_is_live(host: Host) -> bool:
    return live_hosts().filter(pk=host.pk).exists()


# --- ports ----------------------------------------------------------------------------------
def _lease_one(broker: Broker, host: Host, purpose: str, exclude: set[int]) -> int:
    taken = set(PortLease.objects.filter(host=host).values_list("port", flat=True))
    for port in range(host.port_min, host.port_max + 1):
        if port in taken or port in exclude:
            continue
        try:
            with transaction.atomic():
                PortLease.objects.create(host=host, port=port, broker=broker, purpose=purpose)
        except IntegrityError:  # someone else took it a moment ago
            taken.add(port)
            continue
        return port
    raise NoPortAvailable(f"host {host.name} has no free port in {host.port_min}-{host.port_max}")


def lease_ports(broker: Broker, host: Host, *, exclude: set[int] | frozenset[int] = frozenset()) -> Broker:
    """Give `broker` a client and an admin port on `host` (keeping leases it has unless excluded)."""
    exclude = set(exclude)
    with transaction.atomic():
        leases = {lease.purpose: lease for lease in PortLease.objects.filter(broker=broker)}
        for purpose, lease in list(leases.items()):
            if lease.host_id != host.pk or lease.port in exclude:
                lease.delete()
                del leases[purpose]
        ports = {purpose: lease.port for purpose, lease in leases.items()}
        for purpose in (PortPurpose.CLIENT, PortPurpose.ADMIN):
            if purpose not in ports:
                ports[purpose] = _lease_one(broker, host, purpose, exclude)
        broker.host = host
        broker.port = ports[PortPurpose.CLIENT]
        broker.admin_port = ports[PortPurpose.ADMIN]
        broker.save(update_fields=["host", "port", "admin_port", "updated_at"])
    return broker


def release_ports(broker: Broker) -> None:
    with transaction.atomic():
        PortLease.objects.filter(broker=broker).delete()
        Broker.objects.filter(pk=broker.pk).update(port=None, admin_port=None, pid=None)
    broker.port = broker.admin_port = broker.pid = None


# --- placement --------------------------------------------------------------------------------
def _choose_host(exclude: set[int]) -> Host:
    candidates = (
        live_hosts()
        .exclude(pk__in=exclude)
        .annotate(load=Count("port_leases", filter=Q(port_leases__purpose=PortPurpose.CLIENT)))
        .order_by("load", "name")
    )
    for host in candidates:
        if host.load < host.capacity:
            return host
    raise NoHostAvailable(
        "No broker host has room for this cluster right now "
        f"({'no live host' if not live_hosts().exists() else 'all live hosts are full'})."
    )


def _lock_host_with_room(prefer_not: set[int]) -> Host:
    """A live host with room, row-locked so concurrent placements see each other's leases.

    Brokers of one cluster go to different hosts when there are enough (anti-affinity).
    """
    for _ in range(10):
        try:
            host = _choose_host(exclude=prefer_not)
        except NoHostAvailable:
            host = _choose_host(exclude=set())
        locked = Host.objects.select_for_update().get(pk=host.pk)
        load = PortLease.objects.filter(host=locked, purpose=PortPurpose.CLIENT).count()
        if load < locked.capacity:
            return locked
    raise NoHostAvailable("No broker host has room for this cluster right now (all live hosts are full).")


def _hosts_with_room() -> set[int]:
    return {
        host.pk
        for host in live_hosts().annotate(
            load=Count("port_leases", filter=Q(port_leases__purpose=PortPurpose.CLIENT))
        )
        if host.load < host.capacity
    }


def place_cluster(cluster: Cluster) -> list[Broker]:
    """Brokers of `cluster` placed on live hosts with ports (idempotent: kept where they are).

    Brokers of one cluster go to distinct hosts (anti-affinity; the host is the broker's rack)
    while live hosts with room remain. When they run out, a Standard cluster shares hosts and
    says so in `placement_warning`; a Dedicated cluster is refused (`PlacementRefused`).
    A broker that never ran and whose host is no longer live moves to another host.
    """
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        plan = cluster.plan_limits
        count = max(1, cluster.broker_count)
        brokers: dict[int, Broker] = {}
        unplaced: list[Broker] = []
        used_hosts: set[int] = set()
        for node_id in range(1, count + 1):
            broker, _ = Broker.objects.get_or_create(cluster=cluster, node_id=node_id)
            has_lease = PortLease.objects.filter(broker=broker).exists()
            if broker.host_id and has_lease:
                if broker.status in (BrokerStatus.PENDING,) and not host_is_live(broker.host):
                    release_ports(broker)
                else:
                    brokers[node_id] = broker
                    used_hosts.add(broker.host_id)
                    continue
            brokers[node_id] = broker
            unplaced.append(broker)
        if unplaced and count > 1:
            distinct = len(used_hosts | _hosts_with_room())
            if distinct < count and plan.brokers_chosen:
                raise PlacementRefused(
                    f"A {plan.display_name} cluster of {count} brokers needs {count} broker hosts with room, "
                    f"one per broker, and only {distinct} {'is' if distinct == 1 else 'are'} available now. "
                    "Choose fewer brokers, or try again once the operators add hosts."
                )
        for broker in unplaced:
            host = _lock_host_with_room(prefer_not=used_hosts)
            lease_ports(broker, host)
            broker.status = BrokerStatus.PENDING
            broker.save(update_fields=["status", "updated_at"])
            used_hosts.add(host.pk)
        placement_warning_update(cluster, count=count, hosts=len(used_hosts))
        return [brokers[n] for n in sorted(brokers)]


def placement_warning_update(cluster: Cluster, *, count: int, hosts: int) -> None:
    """Say so on the cluster when its `count` brokers share `hosts` hosts (or stop saying it)."""
    warning = ""
    if hosts < count:
        warning = (
            f"The cluster's {count} brokers share {hosts} host{'s' if hosts > 1 else ''} because only "
            f"{hosts} broker host{'s' if hosts > 1 else ''} had room: losing one host stops several "
            "brokers at once, so the cluster tolerates fewer failures than its plan promises."
        )
    if warning != cluster.placement_warning:
        Cluster.objects.filter(pk=cluster.pk).update(placement_warning=warning)
        cluster.placement_warning = warning


def place_replacement(broker: Broker) -> Host:
    """Move `broker` (its host lost) to another live host with room, preferring one without a broker
    of its cluster; call in a transaction with the cluster row locked. Raises NoHostAvailable."""
    others = set(
        Broker.objects.filter(cluster_id=broker.cluster_id, port__isnull=False)
        .exclude(pk=broker.pk)
        .values_list("host_id", flat=True)
    )
    host = _lock_host_with_room(prefer_not=others)
    lease_ports(broker, host)  # drops its leases on the lost host
    Broker.objects.filter(pk=broker.pk).update(status=BrokerStatus.PENDING, pid=None)
    broker.status, broker.pid = BrokerStatus.PENDING, None
    cluster = Cluster.objects.get(pk=broker.cluster_id)
    placement_warning_update(cluster, count=cluster.broker_count, hosts=len(others | {host.pk}))
    return host
