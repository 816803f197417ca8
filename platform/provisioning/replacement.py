"""Replacing the brokers of a lost host (control queue, from each reconciliation).

A host whose worker stopped heart-beating may come back (a restarted worker, a short network
cut), and its brokers' data is still there, so its brokers first wait (`conf.replace_after()`).
After that, each broker of a replicated cluster on it is placed on another live host with room,
keeping its node id, and started there from an empty data directory: it registers in etcd with a
new broker epoch (taking the node id over from any registration left behind, so the old process
can no longer change anything), advertises its new address in Metadata, and copies its partitions
from their surviving replicas until it is back in every ISR. `Cluster.replacement` and the audit
log say what happens, in words for the tenant. A single-broker cluster's data lives on its host
only, so its broker is never replaced: it waits for the host.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clusters import conf as cluster_conf
from clusters import selectors as cluster_selectors
from clusters import services as cluster_services
from clusters.models import Broker, Cluster, ClusterStatus
from sharedkit import coordination

from . import conf, placement, queues, services

logger = logging.getLogger(__name__)

ACTIVE = ("waiting", "replacing", "blocked")


def brokers_replace_lost(*, send_host=None) -> dict[str, list[str]]:
    """One pass: note brokers waiting for their host, replace those waited for long enough, and
    mark replacements done once their cluster is healthy again."""
    report: dict[str, list[str]] = {"waiting": [], "replaced": [], "blocked": [], "in_sync": []}
    now = timezone.now()
    gone_before = now - timedelta(seconds=cluster_conf.host_timeout())
    replace_before = now - timedelta(seconds=max(conf.replace_after(), cluster_conf.host_timeout()))
    stale = (
        Broker.objects.filter(cluster__status=ClusterStatus.RUNNING, host__isnull=False, port__isnull=False)
        .filter(Q(host__heartbeat_at__isnull=True) | Q(host__heartbeat_at__lt=gone_before))
        .select_related("host", "cluster")
        .order_by("cluster_id", "node_id")
    )
    by_cluster: dict[int, list[Broker]] = defaultdict(list)
    for broker in stale:
        by_cluster[broker.cluster_id].append(broker)
    for brokers in by_cluster.values():
        cluster = brokers[0].cluster
        due = [b for b in brokers if b.host.heartbeat_at is None or b.host.heartbeat_at < replace_before]
        serving = _still_serving(cluster, due) if cluster.plan_limits.replicated and due else []
        if not cluster.plan_limits.replicated or not due or serving is None:
            _note_waiting(cluster, brokers)
            report["waiting"].append(cluster.public_id)
            continue
        if serving:
            _note_waiting(cluster, brokers, serving=serving)
            report["waiting"].append(cluster.public_id)
        due = [b for b in due if b not in serving]
        for broker in due:
            outcome = _replace(broker, send_host=send_host)
            report[outcome].append(f"{cluster.public_id}/{broker.node_id}")
    for cluster in Cluster.objects.filter(status=ClusterStatus.RUNNING).exclude(replacement={}):
        if cluster.pk not in by_cluster and _settled(cluster):
            report["in_sync"].append(cluster.public_id)
    return report


def _hosts(brokers: list[Broker]) -> str:
    return ", ".join(sorted({b.host.name for b in brokers}))


def _nodes(brokers: list[Broker]) -> str:
    return ", ".join(str(b.node_id) for b in brokers)


def _still_serving(cluster: Cluster, brokers: list[Broker]) -> list[Broker] | None:
    """Those of `brokers` still registered in etcd from their lost host: their process runs and
    serves (only its supervision is gone), so replacing it would leave a second broker with its
    node id alive there. None when etcd does not answer (nothing is decided then)."""
    if not coordination.configured():
        return []  # no registrations to look at
    try:
        state = coordination.cluster_state(cluster.public_id)
    except (coordination.CoordinationError, coordination.NotConfigured):
        return None
    return [
        b for b in brokers if (reg := state.brokers.get(b.node_id)) is not None and reg.rack == b.host.name
    ]


def _note_waiting(cluster: Cluster, brokers: list[Broker], serving: list[Broker] | None = None) -> None:
    current = cluster.replacement or {}
    nodes = [b.node_id for b in brokers]
    if current.get("state") == "waiting" and current.get("brokers") == nodes and not serving:
        return
    if serving:
        reason = (
            f"Host {_hosts(serving)} stopped reporting, but broker {_nodes(serving)} still serves from it: "
            "it is started on another host once it stops."
        )
        if current.get("reason") != reason:
            cluster_services.cluster_replacement_progress(
                cluster_id=cluster.pk, state="waiting", brokers=nodes, reason=reason
            )
        return
    if cluster.plan_limits.replicated:
        reason = (
            f"Host {_hosts(brokers)} stopped reporting: broker {_nodes(brokers)} may still serve clients, "
            f"but if the host is not back within {conf.replace_after():.0f} s the broker is started on "
            "another host and copies its partitions from the other replicas."
        )
    else:
        reason = (
            f"Host {_hosts(brokers)} stopped reporting. The cluster's only broker keeps its data on that "
            "host, so it waits for the host to come back rather than start elsewhere without its data."
        )
    cluster_services.cluster_replacement_progress(
        cluster_id=cluster.pk, state="waiting", brokers=nodes, reason=reason
    )


def _replace(broker: Broker, *, send_host=None) -> str:
    """Place `broker` on another live host (same node id, empty data directory) and have that
    host start it; "blocked" when no host has room."""
    lost_host = broker.host.name
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=broker.cluster_id)
        broker = Broker.objects.select_related("host").get(pk=broker.pk)
        if cluster.status != ClusterStatus.RUNNING or broker.host.name != lost_host:
            return "waiting"  # moved meanwhile
        if placement.host_is_live(broker.host):
            return "waiting"  # its host came back
        try:
            host = placement.place_replacement(broker)
        except (placement.NoHostAvailable, placement.NoPortAvailable):
            host = None
        if host is not None:
            services.bootstrap_rewrite(cluster_id=cluster.pk)
    previous = cluster.replacement or {}
    if host is None:
        if previous.get("state") != "blocked" or broker.node_id not in previous.get("brokers", []):
            cluster_services.cluster_replacement_progress(
                cluster_id=cluster.pk,
                audit="cluster.broker.replacement_blocked",
                state="blocked",
                brokers=sorted({*previous.get("brokers", []), broker.node_id}),
                lost_host=lost_host,
                reason=(
                    f"Host {lost_host} stopped reporting and no other broker host has room for broker "
                    f"{broker.node_id} now: its partitions run with fewer replicas until the host is back "
                    "or the operators add a host; the broker is started elsewhere as soon as one has room."
                ),
            )
        logger.warning("cluster %s: no host has room to replace broker %s", cluster.public_id, broker.node_id)
        return "blocked"
    moves = {**previous.get("moves", {}), str(broker.node_id): {"from": lost_host, "to": host.name}}
    cluster_services.cluster_replacement_progress(
        cluster_id=cluster.pk,
        audit="cluster.broker.replace",
        state="replacing",
        brokers=sorted(int(n) for n in moves),
        moves=moves,
        lost_host=lost_host,
        started_at=timezone.now().isoformat(),
        reason=(
            f"Host {lost_host} stopped reporting, so broker {broker.node_id} was started again on host "
            f"{host.name} with an empty disk; it is copying its partitions from the other replicas and "
            "the cluster is fully replicated again once it is back in every in-sync replica set."
        ),
    )
    logger.warning(
        "cluster %s: broker %s of lost host %s replaced on host %s",
        cluster.public_id, broker.node_id, lost_host, host.name,
    )  # fmt: skip
    (send_host or queues.host_reconcile_send)(host.name)
    return "replaced"


def _settled(cluster: Cluster) -> bool:
    """A replacement is done once every broker is registered and every partition is in full ISR; a
    wait ends when the host came back (nothing was replaced)."""
    replacement = cluster.replacement or {}
    state = replacement.get("state")
    if state not in ACTIVE:
        return False
    if state in ("waiting", "blocked"):  # its host came back: nothing moved
        cluster_services.cluster_replacement_progress(
            cluster_id=cluster.pk, state="done", reason="", host_returned=True
        )
        return False
    health = cluster_selectors.cluster_health(cluster=cluster)
    if health is None or health.state != "healthy":
        return False
    started = replacement.get("started_at")
    seconds = None
    if started:
        seconds = round((timezone.now() - datetime.fromisoformat(started)).total_seconds(), 1)
    cluster_services.cluster_replacement_progress(
        cluster_id=cluster.pk,
        audit="cluster.broker.replaced",
        state="done",
        reason="",
        in_sync_seconds=seconds,
    )
    logger.info("cluster %s: replaced brokers %s are in sync", cluster.public_id, replacement.get("brokers"))
    return True
