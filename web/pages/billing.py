"""Usage and billing: charts of ingress, egress and storage; costs by cluster and by key; invoices,
credit and the spend cap (from metering's selectors and services)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..portal import portal_view


@portal_view()
def usage_page(request: HttpRequest) -> HttpResponse:
    return render(request, "web/billing/usage.html", {"nav": "usage"})
