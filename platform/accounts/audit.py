"""The audit log: every write through REST or the portal records who, what, where from, and when.

Services take an `actor` (who and from which address) and call `audit_record` inside their
transaction, so an event exists exactly when its write was committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models

from .models import AuditEvent, Organization, User


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does a write: a user from an address, or the system (tasks, reconcilers)."""

    user: User | None = None
    ip: str | None = None

    @property
    def label(self) -> str:
        return self.user.email if self.user is not None else "system"

    @classmethod
    def from_request(cls, request: Any) -> Actor:
        user = getattr(request, "user", None)
        return cls(user=user if user is not None and user.is_authenticated else None, ip=client_ip(request))


SYSTEM = Actor()


def client_ip(request: Any) -> str | None:
    meta = getattr(request, "META", {})
    if settings.KASTLE_TRUST_X_FORWARDED_FOR:
        forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return meta.get("REMOTE_ADDR") or None


def audit_record(
    *,
    organization: Organization | None = None,
    organization_id: int | None = None,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    if target is not None:
        target_type = target_type or target._meta.model_name or ""
        target_id = target_id or str(
            getattr(target, "public_id", None) or getattr(target, "key", None) or target.pk
        )
        target_label = target_label or str(getattr(target, "name", "") or "")[:200]
    if organization is not None:
        organization_id = organization.pk
    return AuditEvent.objects.create(
        organization_id=organization_id,
        actor=actor.user,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        source_ip=actor.ip,
        details=details or {},
    )
