"""Service accounts (organization-wide owners of API keys) and a cluster's ACLs: the same services
as /api/v1/service-accounts and /api/v1/clusters/{id}/acls."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from acls import selectors as acl_selectors
from acls import services as acl_services
from acls.bindings import OPERATIONS, PERMISSIONS, RESOURCE_TYPES
from clusters.models import Cluster
from controlplane.errors import ServiceError
from iam import selectors as iam_selectors
from iam import services as iam_services

from ..portal import apply_service_error, can, portal_view


# --- service accounts -----------------------------------------------------------------------------
class ServiceAccountForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="What the application is, e.g. orders-service.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "w-m"}),
    )
    description = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"autocomplete": "off", "class": "w-l"})
    )


@portal_view()
@require_http_methods(["GET", "POST"])
def service_accounts(request: HttpRequest) -> HttpResponse:
    org = request.organization
    form = ServiceAccountForm(request.POST if request.POST.get("action") == "create" else None)
    status = 200
    if request.method == "POST":
        actor = Actor.from_request(request)
        if request.POST.get("action") == "delete":
            account = iam_selectors.service_account_get(
                organization=org, public_id=request.POST.get("account", "")
            )
            if account is None:
                raise Http404("No such service account.")
            iam_services.service_account_delete(account=account, actor=actor)
            messages.success(request, f"Service account {account.name} deleted; its API keys are revoked.")
            return redirect("web:service_accounts")
        if form.is_valid():
            try:
                account = iam_services.service_account_create(
                    organization=org,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    actor=actor,
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request,
                    f"Service account {account.name} ({account.public_id}) created. Issue it API keys on a "
                    "cluster's API keys page, and give it access on the cluster's ACLs page.",
                )
                return redirect("web:service_accounts")
        status = 400
    accounts = list(iam_selectors.service_account_list(organization=org))
    return render(
        request,
        "web/access/service_accounts.html",
        {
            "accounts": accounts,
            "form": form,
            "can_admin": can(request, Role.ADMIN),
            "nav": "service_accounts",
        },
        status=status,
    )


# --- ACLs -----------------------------------------------------------------------------------------
def _choices(names) -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ").title()) for name in names]


class AclForm(forms.Form):
    principal = forms.CharField(
        help_text="A service account (sa-…), an API key of this cluster, or User:* for every key.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "w-m", "list": "principals"}),
    )
    permission = forms.ChoiceField(choices=_choices(PERMISSIONS), initial="ALLOW")
    operation = forms.ChoiceField(choices=_choices(OPERATIONS), initial="READ")
    resource_type = forms.ChoiceField(choices=_choices(RESOURCE_TYPES), initial="TOPIC", label="Resource")
    pattern_type = forms.ChoiceField(
        choices=[("LITERAL", "Exactly this name"), ("PREFIXED", "Names starting with")],
        initial="LITERAL",
        label="Match",
    )
    resource_name = forms.CharField(
        label="Name",
        help_text="A topic or group name (or prefix); * for all; kafka-cluster for the cluster.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "w-m"}),
    )

    def data_for_service(self) -> dict[str, str]:
        return {**self.cleaned_data, "host": "*"}


@portal_view()
@require_http_methods(["GET", "POST"])
def cluster_acls(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    form = AclForm(request.POST if request.POST.get("action") == "create" else None)
    status = 200
    if request.method == "POST":
        actor = Actor.from_request(request)
        if request.POST.get("action") == "delete":
            acl_services.acl_delete(cluster=cluster, filters={"id": request.POST.get("acl", "")}, actor=actor)
            messages.success(request, "ACL deleted.")
            return redirect("web:acls", cluster_id=cluster.public_id)
        if form.is_valid():
            try:
                acl_services.acl_create(cluster=cluster, data=form.data_for_service(), actor=actor)
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "ACL created.")
                return redirect("web:acls", cluster_id=cluster.public_id)
        status = 400
    acls = acl_selectors.acl_list(cluster=cluster, filters={})
    acls.sort(key=lambda a: (a["principal"], a["resource_type"], a["resource_name"], a["operation"]))
    return render(
        request,
        "web/access/acls.html",
        {
            "cluster": cluster,
            "acls": acls,
            "form": form,
            "accounts": iam_selectors.service_account_list(organization=request.organization),
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "acls",
        },
        status=status,
    )
