"""Reads for clusters."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Organization

from .models import Cluster, ClusterStatus


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
