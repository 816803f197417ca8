"""Reads for API keys and the credentials a cluster's brokers must accept."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from clusters.models import Cluster

from .models import ApiKey


def api_key_list(*, cluster: Cluster) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True).select_related(
        "created_by", "cluster"
    )


def api_key_get(*, cluster: Cluster, key: str) -> ApiKey | None:
    return api_key_list(cluster=cluster).filter(key=key).first()


def cluster_credential_entries(*, cluster: Cluster) -> dict[str, dict[str, Any]]:
    """{username: verifier entry} for brokerd's credentials file: live keys plus the internal user."""
    users: dict[str, dict[str, Any]] = {
        key: verifier
        for key, verifier in ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True).values_list(
            "key", "verifier"
        )
    }
    if cluster.internal_verifier:
        users[cluster.internal_username] = cluster.internal_verifier
    return users
