"""Cluster health as the control plane sees it: is a host serving the cluster still reporting?

A RUNNING cluster is *degraded* while one of its brokers sits on a host whose worker stopped
heart-beating (`conf.host_timeout()`): its brokerd may well still serve clients, but nobody
supervises it (no restart after a crash, no credentials sync), and that host gets no new
placements. It is healthy again as soon as the host's worker reports back.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from clusters.models import Broker, Cluster, ClusterStatus

from . import conf


def _stale_broker_q() -> Q:
    cutoff = timezone.now() - timedelta(seconds=conf.host_timeout())
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
