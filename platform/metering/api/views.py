"""REST endpoints for usage, costs, credit, invoices and the spend cap (all scoped to the caller's org)."""

from __future__ import annotations

import datetime as dt

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.audit import Actor
from accounts.models import Role
from clusters import selectors as cluster_selectors
from controlplane.api.tenancy import OrganizationScopedMixin
from metering import conf, pricing, selectors, services
from metering.models import HourlyUsage, Invoice

from . import serializers as s


class UsageView(OrganizationScopedMixin, generics.GenericAPIView):
    """Usage rows per cluster, API key and topic, per hour or day (the billing record)."""

    serializer_class = s.UsageRowSerializer

    def get_base_queryset(self):
        return HourlyUsage.objects.none()  # unused: rows come from the selector

    @extend_schema(
        operation_id="usage_list",
        parameters=[s.UsageFilterSerializer],
        responses=s.UsageRowSerializer(many=True),  # paginated (found by tests/platform/test_schemathesis.py)
    )
    def get(self, request):
        filters = s.UsageFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        cluster = None
        if data.get("cluster"):
            cluster = cluster_selectors.cluster_get(organization=self.organization, public_id=data["cluster"])
            if cluster is None:
                raise Http404
        rows = selectors.usage_rows(
            organization=self.organization,
            start=data["start"],
            end=data["end"],
            group_by=data["group_by"],
            cluster=cluster,
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.UsageRowSerializer(page, many=True).data)


class CostsView(OrganizationScopedMixin, generics.GenericAPIView):
    """Costs with a line per billing dimension, grouped by cluster, API key, topic or day."""

    serializer_class = s.CostSerializer

    def get_base_queryset(self):
        return Invoice.objects.none()

    @extend_schema(
        operation_id="billing_costs_list",
        parameters=[s.CostFilterSerializer],
        responses=s.CostSerializer(many=True),  # paginated
    )
    def get(self, request):
        filters = s.CostFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        groups = selectors.cost_groups(organization=self.organization, **filters.validated_data)
        page = self.paginate_queryset(groups)
        return self.get_paginated_response(s.CostSerializer(page, many=True).data)


class CreditView(OrganizationScopedMixin, APIView):
    @extend_schema(operation_id="billing_credit_retrieve", responses=s.CreditSerializer)
    def get(self, request):
        summary = selectors.credit_summary(organization=self.organization, now=timezone.now())
        return Response(s.CreditSerializer(summary).data)


class SpendCapView(OrganizationScopedMixin, APIView):
    """The monthly spend cap. Reaching it throttles produce on every cluster of the organization."""

    def required_role(self, request):
        return Role.MEMBER if request.method in ("GET", "HEAD", "OPTIONS") else Role.OWNER

    def _body(self) -> dict:
        account = selectors.billing_account_get(organization=self.organization)
        now = timezone.now()
        return {
            "spend_cap": account.spend_cap if account else None,
            "currency": pricing.CURRENCY,
            "month_to_date_cost": selectors.cost_total(
                organization=self.organization,
                start=services.month_start(now),
                end=now + dt.timedelta(hours=1),
            ),
            "throttled": bool(account and account.throttled),
            "throttled_at": account.throttled_at if account else None,
            "producer_byte_rate_when_throttled": conf.spend_cap_producer_byte_rate(),
        }

    @extend_schema(operation_id="billing_spend_cap_retrieve", responses=s.SpendCapSerializer)
    def get(self, request):
        return Response(s.SpendCapSerializer(self._body()).data)

    @extend_schema(
        operation_id="billing_spend_cap_update", request=s.SpendCapSerializer, responses=s.SpendCapSerializer
    )
    def put(self, request):
        data = s.SpendCapSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.spend_cap_set(
            organization=self.organization,
            spend_cap=data.validated_data["spend_cap"],
            actor=Actor.from_request(request),
        )
        return Response(s.SpendCapSerializer(self._body()).data)


class InvoiceListView(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = s.InvoiceSerializer

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        return selectors.invoice_list(organization=self.organization)

    @extend_schema(operation_id="billing_invoices_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class InvoiceDetailView(OrganizationScopedMixin, generics.RetrieveAPIView):
    serializer_class = s.InvoiceDetailSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "id"

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        return selectors.invoice_list(organization=self.organization).prefetch_related("lines")

    @extend_schema(operation_id="billing_invoices_retrieve")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
