"""The portal's tenant wall and error words, in one place (the portal twin of controlplane.api.tenancy).

Every portal page is wrapped in `portal_view`:
- login required; the caller's organization comes from `request_membership` (the same resolver
  the REST API uses), and is put on `request.membership` / `request.organization`;
- a `cluster_id` URL argument is resolved inside that organization only (another tenant's
  cluster is a 404, never a 403 that leaks its existence) and passed on as `cluster`;
- reads need the `member` role and writes (POST) `admin`, as in the REST API, unless the view
  says otherwise; a missing role is a 403 page that names it;
- a service's refusal that the view did not handle (cluster not running, brokers not answering)
  becomes a page in words, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Role, role_at_least
from clusters import selectors as cluster_selectors
from controlplane.api.tenancy import request_membership
from controlplane.errors import ServiceError


def portal_view(
    *, read: str = Role.MEMBER, write: str = Role.ADMIN
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = request_membership(request)
            if membership is None:
                return render(request, "web/no_organization.html", status=403)
            request.membership = membership
            request.organization = membership.organization
            required = read if request.method in ("GET", "HEAD") else write
            if not role_at_least(membership.role, required):
                return forbidden(request, required)
            if "cluster_id" in kwargs:
                cluster = cluster_selectors.cluster_get(
                    organization=membership.organization, public_id=kwargs.pop("cluster_id")
                )
                if cluster is None:
                    raise Http404("No such cluster in your organization.")
                kwargs["cluster"] = cluster
            try:
                return view(request, *args, **kwargs)
            except ServiceError as exc:
                return service_error_page(request, exc, cluster=kwargs.get("cluster"))

        return wrapper

    return decorate


def can(request: HttpRequest, role: str) -> bool:
    membership = getattr(request, "membership", None) or request_membership(request)
    return membership is not None and role_at_least(membership.role, role)


def forbidden(request: HttpRequest, required: str) -> HttpResponse:
    membership = getattr(request, "membership", None)
    return render(
        request,
        "web/forbidden.html",
        {"required": required, "role": membership.role if membership else None},
        status=403,
    )


def service_error_page(request: HttpRequest, exc: ServiceError, *, cluster=None) -> HttpResponse:
    return render(
        request,
        "web/service_error.html",
        {"message": friendly(exc), "cluster": cluster},
        status=exc.status_code,
    )


def friendly(exc: ServiceError) -> str:
    """A service error in a tenant's words."""
    code = getattr(exc, "code", "")
    if code == "cluster_not_running":
        status = (exc.details or {}).get("status", "")
        if status == "PROVISIONING":
            return "This cluster is still starting. Its topics and messages are available once it is running."
        state = str(status).lower() or "not running"
        return f"This cluster is {state}; its topics and messages are not available."
    if code == "cluster_unavailable":
        return "The cluster did not answer in time. Please try again in a few seconds."
    return exc.message


def apply_service_error(form: Form, exc: ServiceError) -> None:
    """Put a service's error messages beside the form's fields (unknown fields: at the top)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    placed = False
    for field, errors in details.items():
        if isinstance(errors, dict):  # nested, e.g. {"configs": {"retention.ms": [...]}}
            for sub, sub_errors in errors.items():
                target = sub if sub in form.fields else (field if field in form.fields else None)
                for error in _as_list(sub_errors):
                    form.add_error(target, error if target == sub else f"{sub}: {error}")
                placed = True
            continue
        if not isinstance(errors, list):
            continue
        target = field if field in form.fields else None
        for error in _as_list(errors):
            form.add_error(target, str(error))
            placed = True
    if not placed:
        form.add_error(None, friendly(exc))


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]
