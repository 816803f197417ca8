"""Account and organization pages: password, organization settings (members, invitations), REST tokens,
the audit log, and accepting an invitation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.audit import Actor, client_ip
from accounts.models import Role
from controlplane.api.tenancy import SESSION_ORGANIZATION_KEY
from controlplane.errors import ServiceError

from ..portal import apply_service_error, can, forbidden, portal_view


# --- password ---------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            account_services.password_change(
                user=request.user,
                current_password=form.cleaned_data["old_password"],
                new_password=form.cleaned_data["new_password1"],
                actor=Actor.from_request(request),
            )
            update_session_auth_hash(request, request.user)  # stay logged in here; other sessions end
            messages.success(request, "Your password was changed.")
            return redirect("web:password")
        status = 400
    return render(request, "web/settings/password.html", {"form": form, "nav": "account"}, status=status)


# --- organization -------------------------------------------------------------------------------------
class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=100, label="Organization name")


class InviteForm(forms.Form):
    email = forms.EmailField(required=False, help_text="Optional: a note of who the link is for.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


@portal_view()
@require_http_methods(["GET", "POST"])
def organization_settings(request: HttpRequest) -> HttpResponse:
    org = request.organization
    role = request.membership.role
    org_form = OrganizationForm(initial={"name": org.name})
    invite_form = InviteForm()
    new_link = None
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        actor = Actor.from_request(request)
        try:
            if action == "rename":
                if not can(request, Role.OWNER):
                    return _owner_only(request)
                org_form = OrganizationForm(request.POST)
                if org_form.is_valid():
                    account_services.organization_update(
                        organization=org, name=org_form.cleaned_data["name"], actor=actor
                    )
                    messages.success(request, "Organization renamed.")
                    return redirect("web:settings")
                status = 400
            elif action == "invite":
                invite_form = InviteForm(request.POST)
                if invite_form.is_valid():
                    _, raw = account_services.invitation_create(
                        organization=org,
                        role=invite_form.cleaned_data["role"],
                        email=invite_form.cleaned_data["email"] or "",
                        inviter_role=role,
                        actor=actor,
                    )
                    new_link = request.build_absolute_uri(reverse("web:invite", kwargs={"token": raw}))
                    invite_form = InviteForm()
                else:
                    status = 400
            elif action in ("role", "remove"):
                if not can(request, Role.OWNER):
                    return _owner_only(request)
                membership = account_selectors.member_get(
                    organization=org, user_public_id=request.POST.get("user") or ""
                )
                if membership is None:
                    raise Http404("No such member.")
                if action == "role":
                    role_form = MemberRoleForm(request.POST)
                    if role_form.is_valid():
                        account_services.membership_update(
                            membership=membership, role=role_form.cleaned_data["role"], actor=actor
                        )
                        messages.success(
                            request, f"{membership.user.email} is now {role_form.cleaned_data['role']}."
                        )
                else:
                    account_services.membership_delete(membership=membership, actor=actor)
                    messages.success(request, f"{membership.user.email} was removed from {org.name}.")
                return redirect("web:settings")
            elif action == "revoke_invitation":
                invitation = account_selectors.invitation_get(
                    organization=org, invitation_id=request.POST.get("invitation")
                )
                if invitation is None:
                    raise Http404("No such invitation.")
                account_services.invitation_revoke(invitation=invitation, actor=actor)
                messages.success(request, "Invitation revoked; its link no longer works.")
                return redirect("web:settings")
            else:
                status = 400
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("web:settings")
    pending = account_selectors.invitation_list_open(organization=org)
    response = render(
        request,
        "web/settings/organization.html",
        {
            "org_form": org_form,
            "invite_form": invite_form,
            "new_link": new_link,
            "members": account_selectors.member_list(organization=org),
            "invitations": pending,
            "roles": Role.choices,
            "is_owner": can(request, Role.OWNER),
            "is_admin": can(request, Role.ADMIN),
            "nav": "settings",
        },
        status=status,
    )
    if new_link:
        response["Cache-Control"] = "no-store"
    return response


def _owner_only(request: HttpRequest) -> HttpResponse:
    return forbidden(request, Role.OWNER)


# --- REST tokens ------------------------------------------------------------------------------------------
class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the token is for, e.g. 'CI'.")


@portal_view(write=Role.MEMBER)
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    raw = None
    status = 200
    if request.method == "POST":
        actor = Actor.from_request(request)
        if request.POST.get("action") == "revoke":
            token = account_selectors.token_get(
                user=request.user,
                organization=request.organization,
                public_id=request.POST.get("token") or "",
            )
            if token is None:
                raise Http404("No such token.")
            account_services.token_revoke(token=token, actor=actor)
            messages.success(request, f"Token {token.prefix}… revoked.")
            return redirect("web:tokens")
        if form.is_valid():
            _, raw = account_services.token_create(
                user=request.user,
                organization=request.organization,
                name=form.cleaned_data["name"],
                actor=actor,
            )
            form = TokenForm()
        else:
            status = 400
    response = render(
        request,
        "web/settings/tokens.html",
        {
            "form": form,
            "raw": raw,
            "tokens": account_selectors.token_list(user=request.user, organization=request.organization),
            "api_base": request.build_absolute_uri("/api/v1/"),
            "nav": "settings",
        },
        status=201 if raw else status,
    )
    if raw:
        response["Cache-Control"] = "no-store"
    return response


# --- audit log -------------------------------------------------------------------------------------------
class AuditFilterForm(forms.Form):
    action = forms.CharField(
        required=False, help_text="e.g. cluster.create, or cluster. for all cluster events"
    )
    actor = forms.CharField(required=False, label="Who (email)")
    target = forms.CharField(required=False, label="Target id", help_text="e.g. a cluster id lkc-…")
    since = forms.DateField(
        required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="Until (UTC, inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )


@portal_view()
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    events = account_selectors.audit_event_list(organization=request.organization).none()
    if not form.is_bound or form.is_valid():
        data = form.cleaned_data if form.is_bound else {}
        since = datetime.combine(data["since"], time.min, tzinfo=UTC) if data.get("since") else None
        until = (
            datetime.combine(data["until"], time.min, tzinfo=UTC) + timedelta(days=1)
            if data.get("until")
            else None
        )
        events = account_selectors.audit_event_list(
            organization=request.organization,
            action=data.get("action") or None,
            actor=data.get("actor") or None,
            target_id=data.get("target") or None,
            since=since,
            until=until,
        )
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "web/settings/audit.html",
        {"form": form, "page": page, "query": query.urlencode(), "nav": "audit"},
    )


# --- invitations -------------------------------------------------------------------------------------------
class JoinForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = account_selectors.invitation_get_by_token(token=token)
    if invitation is None:
        return render(request, "web/settings/invite_invalid.html", status=404)
    form = JoinForm(request.POST or None) if not request.user.is_authenticated else None
    status = 200
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = account_services.invitation_accept(
                    invitation=invitation, user=request.user, actor=Actor.from_request(request)
                )
            elif form.is_valid():
                membership = account_services.invitation_accept_new_user(
                    invitation=invitation,
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password"],
                    ip=client_ip(request),
                )
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                membership = None
                status = 400
        except ServiceError as exc:
            if form is not None:
                apply_service_error(form, exc)
                status = 400
                membership = None
            else:
                messages.error(request, exc.message)
                return redirect("web:home")
        if membership is not None:
            request.session[SESSION_ORGANIZATION_KEY] = membership.organization_id
            messages.success(
                request, f"Welcome to {membership.organization.name}! You are {membership.role}."
            )
            return redirect("web:home")
    return render(
        request, "web/settings/invite.html", {"invitation": invitation, "form": form}, status=status
    )
