"""Invitations by link: create (the link is shown once), revoke, accept (as a signed-in or a new user)."""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.audit import Actor, audit_record
from accounts.models import Membership, Organization, Role, User, role_at_least
from accounts.tokens import token_digest
from controlplane.errors import Conflict, Forbidden, ValidationFailed

from .models import Invitation

INVALID_LINK = "This invitation link is not valid any more. Ask for a new one."


def invitation_create(
    *, organization: Organization, role: str, email: str = "", inviter_role: str, actor: Actor
) -> tuple[Invitation, str]:
    """A new invitation; returns (invitation, raw token). Nobody can invite above their own role."""
    role = Role(role)
    if not role_at_least(inviter_role, role):
        raise Forbidden(f"You can invite people as {inviter_role} or below.", details={"role": [role]})
    raw = secrets.token_urlsafe(24)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            organization=organization,
            role=role,
            email=email.strip().lower(),
            digest=token_digest(raw),
            created_by=actor.user,
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="invitation.create",
            target_type="invitation",
            target_id=str(invitation.pk),
            target_label=invitation.email,
            details={"role": role},
        )
    return invitation, raw


def invitation_get(raw: str) -> Invitation | None:
    invitation = Invitation.objects.select_related("organization").filter(digest=token_digest(raw)).first()
    return invitation if invitation is not None and invitation.is_open else None


def invitation_revoke(*, invitation: Invitation, actor: Actor) -> None:
    with transaction.atomic():
        if Invitation.objects.filter(
            pk=invitation.pk, revoked_at__isnull=True, accepted_at__isnull=True
        ).update(revoked_at=timezone.now()):
            audit_record(
                organization=invitation.organization,
                actor=actor,
                action="invitation.revoke",
                target_type="invitation",
                target_id=str(invitation.pk),
                target_label=invitation.email,
            )


def invitation_accept(*, invitation: Invitation, user: User, actor: Actor) -> Membership:
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.is_open:
            raise Conflict(INVALID_LINK, code="invitation_closed")
        if Membership.objects.filter(organization=locked.organization, user=user).exists():
            raise Conflict(f"You are already a member of {locked.organization.name}.", code="already_member")
        membership = Membership.objects.create(organization=locked.organization, user=user, role=locked.role)
        locked.accepted_at = timezone.now()
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            organization=locked.organization,
            actor=actor,
            action="member.join",
            target=user,
            target_type="user",
            target_label=user.email,
            details={"role": locked.role, "invitation": locked.pk},
        )
    return membership


def invitation_accept_new_user(
    *, invitation: Invitation, email: str, password: str, ip: str | None
) -> Membership:
    """Create the account (the same checks as sign-up) and join the inviting organization."""
    email = account_services._check_new_user(email, password)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password)
            return invitation_accept(invitation=invitation, user=user, actor=Actor(user=user, ip=ip))
    except IntegrityError as exc:
        raise ValidationFailed(
            "The sign-up details are invalid.",
            details={"email": ["A user with this email address already exists."]},
        ) from exc
