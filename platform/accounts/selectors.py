"""Reads for accounts."""

from __future__ import annotations

from datetime import datetime

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from .models import ApiToken, AuditEvent, Invitation, Membership, Organization, User
from .tokens import token_digest


def token_get_active(raw: str) -> ApiToken | None:
    """The live token for a raw bearer string, with its user, organization and the user's role
    there (`membership_role`, None if no longer a member) in one query; or None."""
    role = Membership.objects.filter(user_id=OuterRef("user_id"), organization_id=OuterRef("organization_id"))
    return (
        ApiToken.objects.select_related("user", "organization")
        .annotate(membership_role=Subquery(role.values("role")[:1]))
        .filter(digest=token_digest(raw), revoked_at__isnull=True)
        .first()
    )


def token_list(*, user: User, organization: Organization) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, organization=organization, revoked_at__isnull=True)


def token_get(*, user: User, organization: Organization, public_id: str) -> ApiToken | None:
    """One of the user's tokens in the organization (revoked ones included), by its public id."""
    return ApiToken.objects.filter(user=user, organization=organization, public_id=public_id).first()


def membership_get(*, user: User, organization_id: int) -> Membership | None:
    return (
        Membership.objects.select_related("organization")
        .filter(user=user, organization_id=organization_id)
        .first()
    )


def membership_default(*, user: User) -> Membership | None:
    return (
        Membership.objects.select_related("organization")
        .filter(user=user)
        .order_by("created_at", "id")
        .first()
    )


def member_list(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by("id")


def member_get(*, organization: Organization, user_public_id: str) -> Membership | None:
    return member_list(organization=organization).filter(user__public_id=user_public_id).first()


def organizations_for_user(*, user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user).order_by("id")


def audit_event_list(
    *,
    organization: Organization,
    action: str | None = None,
    actor: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.filter(organization=organization)
    if action:
        qs = qs.filter(action__startswith=action) if action.endswith(".") else qs.filter(action=action)
    if actor:
        qs = qs.filter(actor_label__iexact=actor)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs.select_related("actor").order_by("-created_at", "-id")


# --- invitations ---------------------------------------------------------------------------------
def invitation_list_open(*, organization: Organization) -> QuerySet[Invitation]:
    """The organization's invitations that can still be accepted (`Invitation.is_open`), newest first."""
    return Invitation.objects.filter(
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).select_related("created_by")


def invitation_get(*, organization: Organization, invitation_id: object) -> Invitation | None:
    if not str(invitation_id).isdigit():
        return None
    return Invitation.objects.filter(organization=organization, pk=int(str(invitation_id))).first()


def invitation_get_by_token(*, token: str) -> Invitation | None:
    """The open invitation a link's token names, else None (unknown, used, revoked or expired)."""
    invitation = Invitation.objects.select_related("organization").filter(digest=token_digest(token)).first()
    return invitation if invitation is not None and invitation.is_open else None
