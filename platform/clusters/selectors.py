"""Reads for clusters, their brokers and hosts.

Health: a RUNNING cluster is *degraded* while one of its brokers sits on a host whose worker
stopped heart-beating (`conf.host_timeout()`): its brokerd may well still serve clients, but
nobody supervises it (no restart after a crash, no credentials sync), and that host gets no new
placements. It is healthy again as soon as the host's worker reports back.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.models import Organization

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
