"""Reads for API keys and the credentials a cluster's brokers must accept."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import selectors as account_selectors
from accounts.audit import Actor
from clusters.models import Cluster
from controlplane.errors import ValidationFailed

from .models import ApiKey, ServiceAccount


def api_key_list(*, cluster: Cluster) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True).select_related(
        "created_by", "cluster", "service_account"
    )


def api_key_list_live(*, cluster: Cluster, service_account: ServiceAccount | None = None) -> QuerySet[ApiKey]:
    """The cluster's keys that may log in now: not revoked, not expired (optionally one account's)."""
    keys = (
        ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .select_related("service_account")
    )
    return keys if service_account is None else keys.filter(service_account=service_account)


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
    rows = api_key_list_live(cluster=cluster).values_list("key", "verifier", "expires_at")
    for key, verifier, expires_at in rows:
        users[key] = verifier if expires_at is None else {**verifier, "expires_at": expires_at.timestamp()}
    if cluster.internal_verifier:
        users[cluster.internal_username] = cluster.internal_verifier
    return users


def key_owner_resolve(
    *, organization, owner: dict[str, str] | None, actor: Actor
) -> tuple[Actor, ServiceAccount | None]:
    """Who a new key belongs to: (the actor it is issued as, its service account or None).

    `owner` is None (the caller), {"type": "user", "id": <a member's id>} (issued as that member's)
    or {"type": "service_account", "id": "sa-…"}; an unknown one is a 400 naming `owner.id`.
    """
    if owner is None:
        return actor, None
    if owner["type"] == "service_account":
        account = service_account_get(organization=organization, public_id=owner["id"])
        if account is None:
            raise ValidationFailed(
                "The API key is invalid.", details={"owner": {"id": ["No such service account."]}}
            )
        return actor, account
    if actor.user is not None and owner["id"] == actor.user.public_id:
        return actor, None
    members = account_selectors.member_list(organization=organization)
    member = members.filter(user__public_id=owner["id"]).first()
    if member is None:
        raise ValidationFailed("The API key is invalid.", details={"owner": {"id": ["No such member."]}})
    return Actor(user=member.user, ip=actor.ip), None
