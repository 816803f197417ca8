"""Clusters: the list (live status badges), the create wizard, the overview, and delete."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters import names as cluster_names
from clusters import selectors as cluster_selectors
from clusters import services as cluster_services
from clusters.models import Cluster, ClusterStatus
from clusters.plans import PLANS
from controlplane.errors import ServiceError
from iam import selectors as key_selectors
from pki import services as pki_services

from .. import clientconfig, pricing, usage
from ..portal import apply_service_error, can, portal_view

TRANSITIONAL = {ClusterStatus.PROVISIONING, ClusterStatus.DELETING}


def _plan_cards() -> list[dict]:
    prices = pricing.plan_prices()
    return [{"plan": plan, "price": prices.get(plan.name)} for plan in PLANS.values()]


@portal_view()
def cluster_list(request: HttpRequest) -> HttpResponse:
    clusters = list(cluster_selectors.cluster_list(organization=request.organization))
    # The banner after a delete is drawn from the cluster's state, like its row, so the two agree.
    deleted = next((c for c in clusters if c.public_id == request.GET.get("deleted")), None)
    if deleted is None and request.GET.get("deleted"):
        deleted = cluster_selectors.cluster_get(
            organization=request.organization, public_id=request.GET["deleted"]
        )
    return render(
        request,
        "web/clusters/list.html",
        {
            "clusters": clusters,
            "deleted": deleted,
            "can_create": can(request, Role.ADMIN),
            "nav": "clusters",
        },
    )


@portal_view()
def cluster_row(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    """htmx: one row of the list, polled while the cluster is provisioning or being deleted."""
    response = render(request, "web/clusters/_row.html", {"cluster": cluster})
    if cluster.status not in TRANSITIONAL:
        response["HX-Trigger"] = "cluster-settled"  # the delete banner refreshes with the row
    return response


@portal_view()
def cluster_deleted_notice(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    """htmx: the list's banner after a delete, refreshed when the cluster's row settles."""
    return render(request, "web/clusters/_deleted_notice.html", {"deleted": cluster})


class ClusterCreateForm(forms.Form):
    name = forms.CharField(
        max_length=cluster_names.MAX_LENGTH,
        label="Cluster name",
        help_text="Letters, digits, dots, dashes; unique in your organization.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    plan = forms.ChoiceField(
        choices=[(p.name, p.display_name) for p in PLANS.values()],
        widget=forms.RadioSelect,
        initial="basic",
        error_messages={"required": "Pick a plan.", "invalid_choice": "Pick one of the plans shown."},
    )
    security_protocol = forms.ChoiceField(
        label="Client connections",
        choices=[
            ("SASL_SSL", "Encrypted (TLS) with API-key login — recommended"),
            ("SASL_PLAINTEXT", "Unencrypted with API-key login — only on a trusted network"),
        ],
        initial="SASL_SSL",
        widget=forms.RadioSelect,
        help_text="Fixed for the cluster's life.",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        problem = cluster_names.name_problem(name)
        if problem:
            raise forms.ValidationError(problem)
        return name


@portal_view(read=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def cluster_create(request: HttpRequest) -> HttpResponse:
    form = ClusterCreateForm(request.POST or None, initial={"plan": request.GET.get("plan", "basic")})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                cluster = cluster_services.cluster_create(
                    organization=request.organization,
                    name=form.cleaned_data["name"],
                    plan=form.cleaned_data["plan"],
                    security_protocol=form.cleaned_data["security_protocol"],
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request, f"Cluster {cluster.name} is being created. This usually takes a few seconds."
                )
                return redirect("web:cluster", cluster_id=cluster.public_id)
        status = 400
    return render(
        request,
        "web/clusters/create.html",
        {"form": form, "plans": _plan_cards(), "nav": "clusters"},
        status=status,
    )


@portal_view()
def cluster_detail(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    # A deleted cluster's port is soon given to another cluster: no address, keys or client snippets.
    gone = cluster.status in (ClusterStatus.DELETING, ClusterStatus.DELETED)
    keys = [] if gone else list(key_selectors.api_key_list(cluster=cluster))
    chosen = request.GET.get("key") or (keys[0].key if keys else None)
    if chosen and not any(k.key == chosen for k in keys):
        chosen = keys[0].key if keys else None
    window = request.GET.get("window", "hour")
    if window not in ("hour", "day"):
        window = "hour"
    registry_url = cluster_selectors.schema_registry_url(cluster, request)
    return render(
        request,
        "web/clusters/detail.html",
        {
            "cluster": cluster,
            "plan": cluster.plan_limits,
            "keys": keys,
            "chosen_key": chosen,
            "snippets": [] if gone else clientconfig.snippets(cluster, chosen, registry_url=registry_url),
            "schema_registry_url": registry_url,
            "gone": gone,
            "health": None if gone else cluster_selectors.cluster_health(cluster=cluster),
            "brokers": [] if gone else cluster_selectors.cluster_brokers(cluster=cluster),
            "charts": usage.cluster_charts(cluster, window=window),
            "window": window,
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "overview",
        },
    )


@portal_view()
def cluster_ca(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    """The CA bundle clients verify the brokers with (the same file as GET /api/v1/clusters/{id}/ca.pem)."""
    gone = cluster.status in (ClusterStatus.DELETING, ClusterStatus.DELETED)
    bundle = cluster.ca_bundle() if cluster.security_protocol == pki_services.SASL_SSL and not gone else None
    if bundle is None:
        raise Http404("This cluster has no TLS certificate (yet).")
    response = HttpResponse(bundle, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{pki_services.CA_FILENAME}"'
    return response


@portal_view()
def cluster_status(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    """htmx: the overview's status badge; asks the page to reload once the status settles."""
    response = render(request, "web/clusters/_status.html", {"cluster": cluster})
    was = request.GET.get("was")
    if was and was != cluster.status:
        response["HX-Refresh"] = "true"
    return response


class ConfirmNameForm(forms.Form):
    confirm = forms.CharField(
        label="Type the name to confirm", widget=forms.TextInput(attrs={"autocomplete": "off"})
    )

    def __init__(self, *args, expected: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value != self.expected:
            raise forms.ValidationError(f"Type {self.expected} exactly to confirm.")
        return value


@portal_view(read=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def cluster_delete(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    form = ConfirmNameForm(request.POST or None, expected=cluster.name)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                cluster_services.cluster_delete(cluster=cluster, actor=Actor.from_request(request))
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                return redirect(reverse("web:home") + "?" + urlencode({"deleted": cluster.public_id}))
        status = 400
    return render(
        request,
        "web/clusters/delete.html",
        {"cluster": cluster, "form": form, "nav": "overview", "tab": "settings"},
        status=status,
    )


@portal_view()
@require_http_methods(["POST"])
def cluster_retry(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    cluster_services.cluster_retry(cluster=cluster, actor=Actor.from_request(request))
    messages.success(request, f"Cluster {cluster.name} is being created again.")
    return redirect("web:cluster", cluster_id=cluster.public_id)
