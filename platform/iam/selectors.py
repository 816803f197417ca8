"""Reads for API keys and the credentials a cluster's brokers must accept."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from clusters.models import Cluster

from .models import ApiKey, ServiceAccount


def api_key_list(*, cluster: Cluster) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True).select_related(
        "created_by", "cluster", "service_account"
    )


def service_account_list(*, organization) -> QuerySet[ServiceAccount]:
    return ServiceAccount.objects.filter(organization=organization)


def service_account_get(*, organization, public_id: str) -> ServiceAccount | None:
    return service_account_list(organization=organization).filter(public_id=public_id).first()


def api_key_get(*, cluster: Cluster, key: str) -> ApiKey | None:
    return api_key_list(cluster=cluster).filter(key=key).first()


def cluster_credential_entries(*, cluster: Cluster) -> dict[str, dict[str, Any]]:
    """{username: verifier entry} for brokerd's credentials file: live keys plus the internal user.

    A key with an expiry carries it as ``expires_at`` (unix seconds): brokerd refuses it from then
    on and closes its connections; once expired it is left out of the file altogether.
    """
    users: dict[str, dict[str, Any]] = {}
    rows = (
        ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .values_list("key", "verifier", "expires_at")
    )
    for key, verifier, expires_at in rows:
        users[key] = verifier if expires_at is None else {**verifier, "expires_at": expires_at.timestamp()}
    if cluster.internal_verifier:
        users[cluster.internal_username] = cluster.internal_verifier
    return users
