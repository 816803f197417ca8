"""Tenant scoping and roles, in one place.

Every tenant-owned endpoint inherits `OrganizationScopedMixin`: it resolves the caller's
organization and role once per request, checks the role each action needs (403 naming it),
and filters every queryset by organization, so another tenant's object is a 404.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework import exceptions, permissions

from accounts import selectors as account_selectors
from accounts.models import ApiToken, Membership, Organization, Role, role_at_least

SESSION_ORGANIZATION_KEY = "kastle_organization_id"


def request_membership(request: Any) -> Membership | None:
    """The caller's membership: the token's organization, or the session's chosen one."""
    cached = getattr(request, "_kastle_membership", False)
    if cached is not False:
        return cached
    membership: Membership | None = None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiToken) and hasattr(auth, "membership_role"):
            # The authentication query already fetched the role: no second query per request.
            if auth.membership_role is not None:
                membership = Membership(user=user, organization=auth.organization, role=auth.membership_role)
        elif isinstance(auth, ApiToken):
            membership = account_selectors.membership_get(user=user, organization_id=auth.organization_id)
        else:
            session = getattr(request, "session", None)
            org_id = session.get(SESSION_ORGANIZATION_KEY) if session is not None else None
            if org_id is not None:
                membership = account_selectors.membership_get(user=user, organization_id=org_id)
            if membership is None:
                membership = account_selectors.membership_default(user=user)
    request._kastle_membership = membership
    return membership


class RoleRequired(exceptions.PermissionDenied):
    default_code = "missing_role"

    def __init__(self, required: str, actual: str | None) -> None:
        if actual is None:
            message = (
                f"This action requires the {required} role in an organization; you are not a member of one."
            )
        else:
            message = f"This action requires the {required} role; your role is {actual}."
        super().__init__(message, code="missing_role")
        self.details = {"required_role": required, "your_role": actual}


class HasOrganizationRole(permissions.BasePermission):
    """The caller is a member of an organization with at least the role the action requires."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # -> 401 from the authentication classes
        required = view.required_role(request)
        if required is None:
            return True
        membership = request_membership(request)
        if membership is None or not role_at_least(membership.role, required):
            raise RoleRequired(required, membership.role if membership else None)
        return True


class OrganizationScopedMixin:
    """Base for every tenant-owned viewset.

    - `organization_field`: the lookup from the model to its Organization.
    - `roles`: minimum role per action; unlisted actions need `member` for safe methods and
      `admin` for writes.
    - Subclasses implement `get_base_queryset()`; `get_queryset()` scopes it.
    """

    permission_classes: ClassVar[list] = [permissions.IsAuthenticated, HasOrganizationRole]
    organization_field: ClassVar[str] = "organization"
    roles: ClassVar[dict[str, str]] = {}

    def required_role(self, request) -> str | None:
        action = getattr(self, "action", None)
        if action in self.roles:
            return self.roles[action]
        if request.method in permissions.SAFE_METHODS:
            return Role.MEMBER
        return Role.ADMIN

    @property
    def membership(self) -> Membership:
        membership = request_membership(self.request)
        if membership is None:  # only reachable for views without HasOrganizationRole
            raise RoleRequired(Role.MEMBER, None)
        return membership

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    def scope(self, queryset: QuerySet) -> QuerySet:
        return queryset.filter(**{self.organization_field: self.organization})

    def get_base_queryset(self) -> QuerySet:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request user
            return self.get_base_queryset().none()
        return self.scope(self.get_base_queryset())

    def get_object(self) -> Model:
        queryset = self.get_queryset()
        lookup_url_kwarg = self.lookup_url_kwarg or self.lookup_field
        obj = queryset.filter(**{self.lookup_field: self.kwargs[lookup_url_kwarg]}).first()
        if obj is None:
            raise Http404
        self.check_object_permissions(self.request, obj)
        return obj
