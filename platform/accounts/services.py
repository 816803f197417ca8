"""Writes for accounts: sign-up, tokens, organizations, memberships, invitations."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.errors import Conflict, Forbidden, ValidationFailed

from .audit import Actor, audit_record
from .models import ApiToken, Invitation, Membership, Organization, Role, User, UserManager, role_at_least
from .signals import organization_created
from .tokens import generate_token, token_digest


@dataclass(frozen=True)
class SignupResult:
    user: User
    organization: Organization
    membership: Membership
    token: ApiToken | None  # None when the caller relies on a session (the portal)
    raw_token: str | None


def _check_new_user(email: str, password: str) -> str:
    email = UserManager.normalize_email(email)
    errors: dict[str, list[str]] = {}
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        errors["email"] = list(exc.messages)
    if "email" not in errors and User.objects.filter(email=email).exists():
        errors["email"] = ["A user with this email address already exists."]
    try:
        validate_password(password, user=User(email=email))
    except DjangoValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ValidationFailed("The sign-up details are invalid.", details=errors)
    return email


def organization_signup(
    *,
    email: str,
    password: str,
    organization_name: str,
    source_ip: str | None = None,
    issue_token: bool = True,
) -> SignupResult:
    """Create an organization, its owner and the trial credit, plus a first REST token unless
    `issue_token` is False (the portal logs the owner in with a session: a token whose secret the
    user never sees would only be a credential nobody holds)."""
    organization_name = organization_name.strip()
    if not organization_name:
        raise ValidationFailed(
            "The sign-up details are invalid.", details={"organization": ["This field is required."]}
        )
    email = _check_new_user(email, password)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password)
            organization = Organization.objects.create(name=organization_name)
            membership = Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
            actor = Actor(user=user, ip=source_ip)
            audit_record(
                organization=organization,
                actor=actor,
                action="organization.signup",
                target=organization,
                details={"email": email},
            )
            token, raw = (
                token_create(user=user, organization=organization, name="sign-up", actor=actor)
                if issue_token
                else (None, None)
            )
            # Metering grants the trial credit, in this transaction.
            organization_created.send(sender=Organization, organization=organization)
    except IntegrityError as exc:  # two sign-ups with one email at once
        raise ValidationFailed(
            "The sign-up details are invalid.",
            details={"email": ["A user with this email address already exists."]},
        ) from exc
    return SignupResult(
        user=user, organization=organization, membership=membership, token=token, raw_token=raw
    )


def user_authenticate(*, email: str, password: str, request=None) -> User | None:
    return authenticate(request, email=UserManager.normalize_email(email), password=password)


def token_create(
    *, user: User, organization: Organization, name: str = "", actor: Actor
) -> tuple[ApiToken, str]:
    """Issue a REST token; returns (token, raw). Only the digest is stored."""
    raw = generate_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, organization=organization, name=name, digest=token_digest(raw), prefix=raw[:8]
        )
        audit_record(
            organization=organization, actor=actor, action="token.create", target=token, target_label=name
        )
    return token, raw


def token_revoke(*, token: ApiToken, actor: Actor) -> ApiToken:
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        token.refresh_from_db()
        if updated:
            audit_record(
                organization=token.organization,
                actor=actor,
                action="token.revoke",
                target=token,
                target_label=token.name,
            )
    return token


def token_touch(*, token: ApiToken, min_interval_s: int = 60) -> None:
    """Record use, at most once a minute per token (no write per request)."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= min_interval_s:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def organization_update(*, organization: Organization, name: str, actor: Actor) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationFailed(
            "The organization is invalid.", details={"name": ["This field may not be blank."]}
        )
    with transaction.atomic():
        old = organization.name
        organization.name = name
        organization.save(update_fields=["name", "updated_at"])
        audit_record(
            organization=organization,
            actor=actor,
            action="organization.update",
            target=organization,
            details={"name": {"from": old, "to": name}},
        )
    return organization


def _other_owners(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


def membership_update(*, membership: Membership, role: str, actor: Actor) -> Membership:
    role = Role(role)
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update()
            .select_related("user", "organization")
            .get(pk=membership.pk)
        )
        if membership.role == Role.OWNER and role != Role.OWNER and not _other_owners(membership):
            raise Conflict("An organization needs at least one owner.", code="last_owner")
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            organization=membership.organization,
            actor=actor,
            action="member.update",
            target=membership.user,
            target_type="user",
            target_label=membership.user.email,
            details={"role": {"from": old, "to": role}},
        )
    return membership


def membership_delete(*, membership: Membership, actor: Actor) -> None:
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update()
            .select_related("user", "organization")
            .get(pk=membership.pk)
        )
        if membership.role == Role.OWNER and not _other_owners(membership):
            raise Conflict("An organization needs at least one owner.", code="last_owner")
        ApiToken.objects.filter(
            user=membership.user, organization=membership.organization, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        membership.delete()
        audit_record(
            organization=membership.organization,
            actor=actor,
            action="member.remove",
            target=membership.user,
            target_type="user",
            target_label=membership.user.email,
        )


def password_change(*, user: User, current_password: str, new_password: str, actor: Actor) -> None:
    """Change a password: the current one is checked, the new one passes Django's validators.

    Every session and REST token of the user stays valid except that other sessions are ended by
    Django's session hash (the caller re-authenticates its own session with update_session_auth_hash).
    """
    if not user.check_password(current_password):
        raise ValidationFailed(
            "The password change is invalid.", details={"current_password": ["This is not your password."]}
        )
    try:
        validate_password(new_password, user=user)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "The password change is invalid.", details={"new_password": list(exc.messages)}
        ) from exc
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        for org_id in user.memberships.values_list("organization_id", flat=True):
            audit_record(
                organization_id=org_id,
                actor=actor,
                action="user.password_change",
                target=user,
                target_type="user",
                target_label=user.email,
            )


# --- invitations ---------------------------------------------------------------------------------
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
    email = _check_new_user(email, password)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password)
            return invitation_accept(invitation=invitation, user=user, actor=Actor(user=user, ip=ip))
    except IntegrityError as exc:
        raise ValidationFailed(
            "The sign-up details are invalid.",
            details={"email": ["A user with this email address already exists."]},
        ) from exc
