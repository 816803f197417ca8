"""Usage and billing: charts of ingress, egress and storage; costs by cluster and by API key; invoices,
remaining credit and the spend cap. Reads are metering's selectors, the cap is metering's service
(the same functions as /api/v1/usage and /api/v1/billing/...)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from controlplane.errors import ServiceError
from metering import selectors as metering_selectors
from metering import services as metering_services

from .. import usage
from ..charts import human_bytes
from ..portal import apply_service_error, can, forbidden, portal_view


class SpendCapForm(forms.Form):
    spend_cap = forms.DecimalField(
        required=False,
        min_value=Decimal("0"),
        max_digits=12,
        decimal_places=2,
        label="Monthly spend cap (USD)",
        help_text="Empty: no cap. When this month's cost reaches it, producing is slowed on all clusters.",
    )


@portal_view(write=Role.OWNER)
@require_http_methods(["GET", "POST"])
def usage_page(request: HttpRequest) -> HttpResponse:
    org = request.organization
    account = metering_selectors.billing_account_get(organization=org)
    form = SpendCapForm(request.POST or None, initial={"spend_cap": account.spend_cap if account else None})
    status = 200
    if request.method == "POST":
        if not can(request, Role.OWNER):
            return forbidden(request, Role.OWNER)
        if form.is_valid():
            try:
                metering_services.spend_cap_set(
                    organization=org,
                    spend_cap=form.cleaned_data["spend_cap"],
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                cap = form.cleaned_data["spend_cap"]
                messages.success(
                    request, f"Spend cap set to ${cap}." if cap is not None else "Spend cap removed."
                )
                return redirect("web:usage")
        status = 400
    days = 30 if request.GET.get("days") == "30" else 7
    now = timezone.now()
    today = now.astimezone(dt.UTC).date()
    month_start = today.replace(day=1)
    tomorrow = today + dt.timedelta(days=1)
    by_cluster = metering_selectors.cost_groups(
        organization=org, start_date=month_start, end_date=tomorrow, group_by="cluster"
    )
    by_key = metering_selectors.cost_groups(
        organization=org, start_date=month_start, end_date=tomorrow, group_by="api_key"
    )
    charts = usage.organization_charts(org, days=days)
    for row in charts["table"]:
        row["in_h"], row["out_h"], row["stored_h"] = (
            human_bytes(row["bytes_in"]),
            human_bytes(row["bytes_out"]),
            human_bytes(row["stored"]),
        )
    return render(
        request,
        "web/billing/usage.html",
        {
            "charts": charts,
            "days": days,
            "month_start": month_start,
            "by_cluster": by_cluster,
            "by_key": by_key,
            "month_total": sum((g["amount"] for g in by_cluster), Decimal("0")),
            "credit": metering_selectors.credit_summary(organization=org, now=now),
            "invoices": metering_selectors.invoice_list(organization=org).prefetch_related("lines"),
            "account": account,
            "form": form,
            "is_owner": can(request, Role.OWNER),
            "nav": "usage",
        },
        status=status,
    )
