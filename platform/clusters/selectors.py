"""Reads for clusters, their brokers and hosts.

Health: a RUNNING cluster is *degraded* while one of its brokers sits on a host whose worker
stopped heart-beating (`conf.host_timeout()`): its brokerd may well still serve clients, but
nobody supervises it (no restart after a crash, no credentials sync), and that host gets no new
placements. It is healthy again as soon as the host's worker reports back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from sharedkit import coordination

from . import conf
from .models import Broker, Cluster, ClusterStatus, Host


def cluster_list(
    *, organization: Organization, include_deleted: bool = False, status: str | None = None
) -> QuerySet[Cluster]:
    qs = Cluster.objects.filter(organization=organization)
    if status:
        qs = qs.filter(status=status)
    elif not include_deleted:
        qs = qs.exclude(status=ClusterStatus.DELETED)
    return qs.order_by("created_at", "id")


def cluster_get(*, organization: Organization, public_id: str) -> Cluster | None:
    return Cluster.objects.filter(organization=organization, public_id=public_id).first()


# --- hosts and health -----------------------------------------------------------------------------
def _heartbeat_cutoff():
    return timezone.now() - timedelta(seconds=conf.host_timeout())


def live_hosts() -> QuerySet[Host]:
    """Hosts whose worker's heartbeat is fresh."""
    return Host.objects.filter(heartbeat_at__gte=_heartbeat_cutoff())


def hosts_with_room(*, exclude_cluster: Cluster | None = None) -> int:
    """Live hosts with room for one more broker (a broker with a port occupies its host), not
    counting those that already run a broker of `exclude_cluster` (one host per broker)."""
    hosts = live_hosts().annotate(load=Count("brokers", filter=Q(brokers__port__isnull=False)))
    if exclude_cluster is not None:
        # One subquery, so that both conditions hold for the same broker (an exclude() across
        # a multi-valued relation may match them on two different brokers of the host).
        running_one = Broker.objects.filter(host=OuterRef("pk"), cluster=exclude_cluster, port__isnull=False)
        hosts = hosts.exclude(Exists(running_one))
    return sum(1 for host in hosts if host.load < host.capacity)


def _stale_broker_q() -> Q:
    cutoff = _heartbeat_cutoff()
    return Q(host__isnull=False) & (Q(host__heartbeat_at__isnull=True) | Q(host__heartbeat_at__lt=cutoff))


def annotate_degraded(queryset: QuerySet[Cluster]) -> QuerySet[Cluster]:
    """Adds a boolean `degraded` to each cluster (one subquery, no per-row query)."""
    stale = Broker.objects.filter(
        _stale_broker_q(), cluster=OuterRef("pk"), cluster__status=ClusterStatus.RUNNING
    )
    return queryset.annotate(degraded=Exists(stale))


def is_degraded(cluster: Cluster) -> bool:
    if cluster.status != ClusterStatus.RUNNING:
        return False
    return Broker.objects.filter(_stale_broker_q(), cluster=cluster).exists()


def degraded_reason(cluster: Cluster, health: Health | None = None) -> str:
    """Why a RUNNING cluster is not fully healthy, in words for the tenant; "" when it is.

    A lost host's brokers first wait for it (it may come back), then are replaced on other hosts
    and copy their partitions from the surviving replicas; the replacement's own words say which
    step it is at."""
    if cluster.status != ClusterStatus.RUNNING:
        return ""
    replacement = cluster.replacement or {}
    if replacement.get("state") in ("waiting", "replacing", "blocked"):
        return replacement.get("reason", "")
    if getattr(cluster, "degraded", None) is False:  # annotate_degraded found no stale broker (lists)
        stale = []
    else:
        brokers = Broker.objects.filter(_stale_broker_q(), cluster=cluster)
        stale = list(brokers.select_related("host").order_by("node_id"))
    if stale:
        hosts = sorted({b.host.name for b in stale})
        nodes = ", ".join(str(b.node_id) for b in stale)
        return (
            f"Host {', '.join(hosts)} stopped reporting: broker{'s' if len(stale) > 1 else ''} {nodes} "
            "may still serve clients but nobody supervises them until the host is back."
        )
    if health is not None and health.state != "healthy":
        return health.summary
    return ""


# --- replicated clusters: brokers and partitions as etcd sees them ----------------------------------
@dataclass(frozen=True)
class BrokerView:
    node_id: int
    host: str | None
    rack: str | None
    address: str | None
    status: str  # "online" or "offline"
    partitions_led: int


@dataclass(frozen=True)
class Health:
    state: str  # "healthy", "degraded" or "unknown"
    brokers: int
    brokers_online: int
    partitions: int
    under_replicated_partitions: int
    offline_partitions: int
    under_min_isr_partitions: int
    summary: str


def _etcd_state(cluster: Cluster) -> coordination.ClusterState | None:
    """The cluster's state in etcd; None when it is not replicated or etcd does not answer."""
    if not cluster.plan_limits.replicated or not coordination.configured():
        return None
    try:
        return coordination.cluster_state(cluster.public_id)
    except (coordination.CoordinationError, coordination.NotConfigured):
        return None


def cluster_brokers(*, cluster: Cluster) -> list[BrokerView]:
    """Each broker of the cluster: where it runs and whether it serves (registered in etcd)."""
    state = _etcd_state(cluster)
    live = set(live_hosts().values_list("pk", flat=True))
    views = []
    for broker in cluster.brokers.select_related("host").order_by("node_id"):
        if state is not None:
            online = broker.node_id in state.brokers
            registered = state.brokers.get(broker.node_id)
            rack = registered.rack if registered else (broker.host.name if broker.host else None)
            led = state.led_by(broker.node_id)
        else:
            online = broker.status == "RUNNING" and broker.host_id in live
            rack = broker.host.name if broker.host else None
            led = 0
        views.append(
            BrokerView(
                node_id=broker.node_id,
                host=broker.host.name if broker.host else None,
                rack=rack,
                address=f"{broker.host.address}:{broker.port}" if broker.host and broker.port else None,
                status="online" if online else "offline",
                partitions_led=led,
            )
        )
    return views


def cluster_partitions(*, cluster: Cluster, topic: str) -> list[dict] | None:
    """A topic's partitions as etcd holds them (leader, replicas, ISR); None when not replicated."""
    state = _etcd_state(cluster)
    if state is None:
        return None
    rows = []
    for (name, index), part in sorted(state.partitions.items()):
        if name != topic:
            continue
        leader = part.leader if part.leader in state.brokers else -1
        rows.append(
            {
                "partition": index,
                "leader": leader,
                "replicas": list(part.replicas),
                "isr": list(state.live_isr(part)),
            }
        )
    return rows


def cluster_health(*, cluster: Cluster) -> Health | None:
    """Counts of partitions in trouble, and a sentence saying what they mean. None unless RUNNING."""
    if cluster.status != ClusterStatus.RUNNING:
        return None
    count = cluster.brokers.count()
    if not cluster.plan_limits.replicated:
        online = sum(b.status == "online" for b in cluster_brokers(cluster=cluster))
        healthy = online == count
        return Health(
            state="healthy" if healthy else "degraded",
            brokers=count,
            brokers_online=online,
            partitions=0,
            under_replicated_partitions=0,
            offline_partitions=0,
            under_min_isr_partitions=0,
            summary="The broker is up." if healthy else "The broker is not responding.",
        )
    state = _etcd_state(cluster)
    if state is None:
        return Health(
            "unknown", count, 0, 0, 0, 0, 0, "The cluster's metadata store (etcd) is not answering."
        )
    default_min_isr = cluster.plan_limits.min_insync_replicas
    under, offline, under_min = 0, 0, 0
    for (name, _), part in state.partitions.items():
        isr = state.live_isr(part)
        topic = state.topics.get(name)
        min_isr = int((topic.configs if topic else {}).get("min.insync.replicas", default_min_isr))
        if part.leader not in state.brokers:
            offline += 1
        if len(isr) < len(part.replicas):
            under += 1
        if len(isr) < min_isr:
            under_min += 1
    online = sum(1 for b in cluster.brokers.all() if b.node_id in state.brokers)
    words = [f"{online} of {count} brokers are up."]
    if offline:
        words.append(f"{_n(offline)} no leader: clients can neither write nor read {_them(offline)}.")
    if under_min:
        words.append(
            f"{_n(under_min)} fewer in-sync replicas than min.insync.replicas: writes with acks=all "
            f"to {_them(under_min)} are refused."
        )
    if under:
        words.append(f"{_n(under)} fewer in-sync replicas than replicas (under-replicated).")
    if not (offline or under_min or under) and online == count:
        words.append("Every partition has all its replicas in sync.")
    degraded = bool(offline or under_min or under) or online < count
    return Health(
        state="degraded" if degraded else "healthy",
        brokers=count,
        brokers_online=online,
        partitions=len(state.partitions),
        under_replicated_partitions=under,
        offline_partitions=offline,
        under_min_isr_partitions=under_min,
        summary=" ".join(words),
    )


def _n(count: int) -> str:
    return f"{count} partition has" if count == 1 else f"{count} partitions have"


def _them(count: int) -> str:
    return "it" if count == 1 else "them"


def schema_registry_url(cluster: Cluster, request=None) -> str | None:
    """The cluster's Schema Registry URL (absolute when a request gives the host), None unless RUNNING.

    The registry is served by the platform's web server under /schema-registry/<cluster id>."""
    if cluster.status != ClusterStatus.RUNNING:
        return None
    path = reverse("schemaregistry:root", kwargs={"cluster_id": cluster.public_id}).rstrip("/")
    return request.build_absolute_uri(path) if request is not None else path
