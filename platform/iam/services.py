"""Writes for API keys. The secret exists only in the create call's return value."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.audit import SYSTEM, Actor, audit_record
from brokerd.credentials import make_user_entry
from clusters.models import Cluster, ClusterStatus
from controlplane.errors import Conflict, LimitExceeded, ValidationFailed
from controlplane.ids import new_api_key, new_api_secret

from .models import ApiKey


def _sync_credentials_on_commit(cluster_id: int) -> None:
    """After commit, the cluster's hosts rewrite its credentials file (provisioning)."""
    from provisioning.services import credentials_changed

    transaction.on_commit(lambda: credentials_changed(cluster_id))


def api_key_create(*, cluster: Cluster, description: str = "", actor: Actor = SYSTEM) -> tuple[ApiKey, str]:
    """Issue a key for a cluster; returns (key, secret). Only SCRAM verifiers of the secret are kept."""
    description = (description or "").strip()
    if len(description) > 200:
        raise ValidationFailed(
            "The API key is invalid.", details={"description": ["Use at most 200 characters."]}
        )
    secret = new_api_secret()
    verifier = make_user_entry(secret)  # PBKDF2 outside the transaction and its row lock
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.status in (ClusterStatus.DELETING, ClusterStatus.DELETED):
            raise Conflict(
                f"Cluster {locked.public_id} is {locked.status}; it takes no new API keys.",
                code="invalid_state",
                details={"status": locked.status},
            )
        limit = locked.plan_limits.max_api_keys
        active = ApiKey.objects.filter(cluster=locked, revoked_at__isnull=True).count()
        if active >= limit:
            raise LimitExceeded(
                f"The {locked.plan} plan allows {limit} API keys per cluster; revoke one first.",
                details={"limit": limit, "plan": locked.plan},
            )
        # 16 of 36 symbols (82 bits): a collision is all but impossible, and the unique index holds anyway.
        api_key = ApiKey.objects.create(
            cluster=locked,
            key=new_api_key(),
            description=description,
            verifier=verifier,
            created_by=actor.user,
        )
        audit_record(
            organization_id=locked.organization_id,
            actor=actor,
            action="api_key.create",
            target=api_key,
            target_type="api_key",
            target_id=api_key.key,
            target_label=description,
            details={"cluster": locked.public_id},
        )
        _sync_credentials_on_commit(locked.pk)
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey, actor: Actor = SYSTEM) -> ApiKey:
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        api_key.refresh_from_db()
        if updated:
            audit_record(
                organization_id=api_key.cluster.organization_id,
                actor=actor,
                action="api_key.revoke",
                target=api_key,
                target_type="api_key",
                target_id=api_key.key,
                target_label=api_key.description,
                details={"cluster": api_key.cluster.public_id},
            )
            _sync_credentials_on_commit(api_key.cluster_id)
    return api_key
