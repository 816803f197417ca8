"""Writes for API keys. The secret exists only in the create call's return value."""

from __future__ import annotations

import datetime as dt
import logging
import re

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import SYSTEM, Actor, audit_record
from brokerd.credentials import make_user_entry
from clusters.models import Cluster, ClusterStatus
from controlplane.errors import Conflict, LimitExceeded, ValidationFailed
from controlplane.ids import new_api_key, new_api_secret

from .models import ApiKey, ScopeAccess, ServiceAccount
from .signals import api_keys_changed


def _sync_credentials_on_commit(cluster_id: int) -> None:
    """After commit, the brokers get the ACLs of the cluster's live keys and its hosts rewrite its
    credentials file (`provisioning.receivers`, in that order)."""
    api_keys_changed.send(sender=ApiKey, cluster_id=cluster_id)


SCOPE_PREFIX_RE = re.compile(r"^[a-zA-Z0-9._-]+$")


def validate_scope(scope: object) -> dict[str, str] | None:
    """{topic_prefix, access} or None (full access); 400 naming `scope.<field>`."""
    if scope is None:
        return None
    invalid = "The API key is invalid."
    if not isinstance(scope, dict):
        raise ValidationFailed(invalid, details={"scope": ["Expected {topic_prefix, access} or null."]})
    prefix, access = scope.get("topic_prefix"), scope.get("access")
    if not isinstance(prefix, str) or not prefix:
        raise ValidationFailed(invalid, details={"scope": {"topic_prefix": ["This field is required."]}})
    if len(prefix) > 249 or not SCOPE_PREFIX_RE.match(prefix):
        raise ValidationFailed(
            invalid,
            details={"scope": {"topic_prefix": ["Use at most 249 ASCII letters, digits, '.', '_' and '-'."]}},
        )
    if access not in ScopeAccess.values:
        raise ValidationFailed(
            invalid, details={"scope": {"access": [f"Expected one of: {', '.join(ScopeAccess.values)}."]}}
        )
    return {"topic_prefix": prefix, "access": access}


#: Shortest lifetime a new key may have (it must outlive its own propagation to the brokers).
MIN_LIFETIME = dt.timedelta(seconds=10)
MAX_OVERLAP_SECONDS = 30 * 24 * 3600


def _check_expiry(expires_at: dt.datetime | None) -> dt.datetime | None:
    if expires_at is None:
        return None
    if timezone.is_naive(expires_at):
        raise ValidationFailed(
            "The API key is invalid.",
            details={"expires_at": ["Give a time zone, e.g. 2030-01-01T00:00:00Z."]},
        )
    if expires_at < timezone.now() + MIN_LIFETIME:
        raise ValidationFailed(
            "The API key is invalid.",
            details={"expires_at": [f"Must be at least {MIN_LIFETIME.seconds} seconds in the future."]},
        )
    return expires_at


def api_key_create(
    *,
    cluster: Cluster,
    description: str = "",
    expires_at: dt.datetime | None = None,
    actor: Actor = SYSTEM,
    rotated_from: ApiKey | None = None,
    service_account: ServiceAccount | None = None,
    scope: dict[str, str] | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key for a cluster; returns (key, secret). Only SCRAM verifiers of the secret are kept.

    `expires_at` (optional, in the future): the brokers refuse the key from then on.
    `service_account` (of the cluster's organization): the key's owner instead of the actor.
    `scope` ({topic_prefix, access}): the key's ACLs; None gives it full access to the cluster.
    """
    scope = validate_scope(scope)
    if service_account is not None and service_account.organization_id != cluster.organization_id:
        raise ValidationFailed("The API key is invalid.", details={"owner": ["No such service account."]})
    description = (description or "").strip()
    if len(description) > 200:
        raise ValidationFailed(
            "The API key is invalid.", details={"description": ["Use at most 200 characters."]}
        )
    expires_at = _check_expiry(expires_at)
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
        active = (
            ApiKey.objects.filter(cluster=locked, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .count()
        )
        if active >= limit and rotated_from is None:  # a rotation's old key is on its way out
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
            created_by=rotated_from.created_by if rotated_from is not None else actor.user,
            expires_at=expires_at,
            rotated_from=rotated_from,
            service_account=service_account,
            scope_topic_prefix=scope["topic_prefix"] if scope else "",
            scope_access=scope["access"] if scope else "",
        )
        details = {"cluster": locked.public_id}
        if expires_at is not None:
            details["expires_at"] = expires_at.isoformat()
        if service_account is not None:
            details["service_account"] = service_account.public_id
        if scope is not None:
            details["scope"] = scope
        audit_record(
            organization_id=locked.organization_id,
            actor=actor,
            action="api_key.create",
            target=api_key,
            target_type="api_key",
            target_id=api_key.key,
            target_label=description,
            details=details,
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


def api_key_rotate(
    *, api_key: ApiKey, overlap_seconds: int = 3600, actor: Actor = SYSTEM
) -> tuple[ApiKey, str]:
    """A new key with the same owner, description and access; the old key expires after the overlap.

    One SCRAM username cannot hold two secrets, so rotation always means a new key: clients move
    to it during `overlap_seconds`, then the brokers refuse the old one (and close its connections).
    The old key's expiry only ever moves earlier. Returns (new key, secret).
    """
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise ValidationFailed(
            "The rotation is invalid.",
            details={"overlap_seconds": [f"Must be between 0 and {MAX_OVERLAP_SECONDS}."]},
        )
    if not api_key.is_active:
        raise Conflict(
            f"API key {api_key.key} is {'revoked' if api_key.revoked_at else 'expired'}; only a live key "
            "can be rotated.",
            code="invalid_state",
        )
    old_expiry = timezone.now() + dt.timedelta(seconds=overlap_seconds)
    with transaction.atomic():
        new_key, secret = api_key_create(
            cluster=api_key.cluster,
            description=api_key.description,
            expires_at=None,
            actor=actor,
            rotated_from=api_key,
            service_account=api_key.service_account,
            scope=api_key.scope,
        )
        ApiKey.objects.filter(pk=api_key.pk).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=old_expiry)
        ).update(expires_at=old_expiry)
        api_key.refresh_from_db()
        audit_record(
            organization_id=api_key.cluster.organization_id,
            actor=actor,
            action="api_key.rotate",
            target=api_key,
            target_type="api_key",
            target_id=api_key.key,
            target_label=api_key.description,
            details={
                "cluster": api_key.cluster.public_id,
                "new_key": new_key.key,
                "old_key_expires_at": api_key.expires_at.isoformat(),
            },
        )
        _sync_credentials_on_commit(api_key.cluster_id)
    return new_key, secret


def api_keys_revoke_all(*, cluster: Cluster) -> int:
    """A DELETED cluster's keys: revoked all at once (its brokers are gone; nothing to push)."""
    return ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- service accounts -----------------------------------------------------------------------------
SA_INVALID = "The service account is invalid."
SA_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def _sa_fields(name: object, description: object, *, partial: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if name is not None or not partial:
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed(SA_INVALID, details={"name": ["This field is required."]})
        name = name.strip()
        if not SA_NAME_RE.match(name):
            raise ValidationFailed(
                SA_INVALID,
                details={"name": ["Use 1-64 letters, digits, spaces, '.', '_' and '-'."]},
            )
        out["name"] = name
    if description is not None:
        if not isinstance(description, str) or len(description.strip()) > 200:
            raise ValidationFailed(SA_INVALID, details={"description": ["Use at most 200 characters."]})
        out["description"] = description.strip()
    return out


def _sa_name_taken(organization_id: int, name: str, exclude: int | None = None) -> None:
    rows = ServiceAccount.objects.filter(organization_id=organization_id, name__iexact=name)
    if exclude is not None:
        rows = rows.exclude(pk=exclude)
    if rows.exists():
        raise ValidationFailed(
            SA_INVALID, details={"name": [f"A service account named {name!r} already exists."]}
        )


def _sa_audit(account: ServiceAccount, actor: Actor, action: str, details: dict | None = None) -> None:
    audit_record(
        organization_id=account.organization_id,
        actor=actor,
        action=action,
        target=account,
        target_type="service_account",
        target_id=account.public_id,
        target_label=account.name,
        details=details or {},
    )


def service_account_create(
    *, organization, name: object, description: object = "", actor: Actor = SYSTEM
) -> ServiceAccount:
    fields = _sa_fields(name, description or "", partial=False)
    with transaction.atomic():
        _sa_name_taken(organization.pk, fields["name"])
        account = ServiceAccount.objects.create(organization=organization, created_by=actor.user, **fields)
        _sa_audit(account, actor, "service_account.create", {"name": account.name})
    return account


def service_account_update(
    *, account: ServiceAccount, name: object = None, description: object = None, actor: Actor = SYSTEM
) -> ServiceAccount:
    fields = _sa_fields(name, description, partial=True)
    with transaction.atomic():
        if "name" in fields:
            _sa_name_taken(account.organization_id, fields["name"], exclude=account.pk)
        changed = {
            k: {"from": getattr(account, k), "to": v} for k, v in fields.items() if getattr(account, k) != v
        }
        for key, value in fields.items():
            setattr(account, key, value)
        account.save()
        if changed:
            _sa_audit(account, actor, "service_account.update", changed)
    return account


def service_account_delete(*, account: ServiceAccount, actor: Actor = SYSTEM) -> None:
    """Delete the account: its live keys are revoked (their ACLs go with them) and its bindings dropped."""
    with transaction.atomic():
        for api_key in ApiKey.objects.filter(service_account=account, revoked_at__isnull=True).select_related(
            "cluster"
        ):
            api_key_revoke(api_key=api_key, actor=actor)
        _sa_audit(account, actor, "service_account.delete", {"name": account.name})
        account.delete()


# --- last used: brokerd's per-principal last-seen gauge, from the metrics scrape -------------------
_LAST_SEEN = re.compile(
    r'^kastle_principal_last_seen_timestamp_seconds\{principal="([^"\\]*)"\}\s+([0-9.eE+-]+)\s*$', re.M
)
logger = logging.getLogger(__name__)


def last_seen_from_metrics(text: str) -> dict[str, float]:
    """{principal: unix seconds} from a broker's /metrics text."""
    out: dict[str, float] = {}
    for principal, value in _LAST_SEEN.findall(text or ""):
        try:
            out[principal] = float(value)
        except ValueError:
            continue
    return out


def api_keys_mark_used(*, cluster_id: int, seen: dict[str, float], min_step_s: float = 1.0) -> int:
    """Move each key's last_used_at forward to what the brokers saw (never backwards); returns rows."""
    updated = 0
    for principal, ts in seen.items():
        if not ts or principal == "ANONYMOUS":
            continue
        when = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
        updated += (
            ApiKey.objects.filter(cluster_id=cluster_id, key=principal)
            .filter(
                Q(last_used_at__isnull=True)
                | Q(last_used_at__lt=when - dt.timedelta(seconds=min_step_s))
            )
            .update(last_used_at=when)
        )
    return updated


def api_keys_mark_used_from_metrics(*, cluster_id: int, text: str) -> int:
    """The metering scrape's hook: last_used_at from one broker's /metrics. Never raises."""
    try:
        return api_keys_mark_used(cluster_id=cluster_id, seen=last_seen_from_metrics(text))
    except Exception:
        logger.exception("could not record API key last use for cluster %s", cluster_id)
        return 0
