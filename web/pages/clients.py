"""Clients: which Kafka clients are connected to a cluster and what they report (client telemetry).

Clients that support it (librdkafka 2.5+, the Java client 3.7+) push their own metrics when a
client-metrics subscription of the cluster matches them; the page lists them with their software,
request latency, throttling, queue and fetch times, and lets an admin manage the subscriptions.
Reads go through `monitoring.selectors` and writes through `monitoring.services`, as the REST API.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters.models import Cluster
from controlplane.errors import ServiceError
from monitoring import selectors as monitoring_selectors
from monitoring import services as monitoring_services

from ..portal import apply_service_error, can, portal_view


class SubscriptionForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="e.g. all-clients")
    metrics = forms.CharField(
        initial="*",
        help_text="Metric name prefixes, comma-separated (* for every metric), "
        "e.g. org.apache.kafka.producer.",
    )
    interval_ms = forms.IntegerField(
        label="Push interval (ms)", min_value=100, max_value=3_600_000, initial=60_000
    )
    match = forms.CharField(
        required=False,
        help_text="Optional: selector=regex pairs, comma-separated, e.g. client_id=billing-.* "
        "(empty: every client)",
    )


def _split(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@portal_view()
@require_http_methods(["GET", "POST"])
def client_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    can_admin = can(request, Role.ADMIN)
    form = SubscriptionForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not can_admin:
            return HttpResponse(status=403)
        if "delete" in request.POST:
            name = request.POST.get("delete", "")
            try:
                monitoring_services.client_metrics_subscription_delete(
                    cluster=cluster, name=name, actor=Actor.from_request(request)
                )
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Subscription {name} deleted.")
            return redirect("web:clients", cluster_id=cluster.public_id)
        if form.is_valid():
            data = form.cleaned_data
            try:
                monitoring_services.client_metrics_subscription_set(
                    cluster=cluster,
                    name=data["name"],
                    metrics=_split(data["metrics"]),
                    interval_ms=data["interval_ms"],
                    match=_split(data["match"]),
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
                status = exc.status_code
            else:
                messages.success(request, f"Subscription {data['name']} saved.")
                return redirect("web:clients", cluster_id=cluster.public_id)
        else:
            status = 400
    clients = monitoring_selectors.client_list(cluster=cluster)
    for c in clients:
        if c["last_push_ms"]:
            c["last_push"] = dt.datetime.fromtimestamp(c["last_push_ms"] / 1000, tz=dt.UTC)
    try:
        subscriptions = monitoring_selectors.client_metrics_subscription_list(cluster=cluster)
    except ServiceError:
        subscriptions = None  # the cluster did not answer: the page still lists the clients
    return render(
        request,
        "web/clients/list.html",
        {
            "cluster": cluster,
            "clients": clients,
            "subscriptions": subscriptions,
            "form": form,
            "can_admin": can_admin,
            "nav": "overview",
            "tab": "clients",
        },
        status=status,
    )
