"""GET /api/v1/plans (+ /{name}): each plan's limits (clusters.plans) with today's prices (metering).

It lives in metering because it joins the two: metering depends on clusters, never the reverse.
"""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from clusters.plans import PLANS
from controlplane.api.pagination import Pagination
from metering.selectors import current_prices


class PlanPricesSerializer(serializers.Serializer):
    """The plan's price book entry in effect today (metering.models.PriceBook; docs/billing.md)."""

    currency = serializers.CharField()
    effective_from = serializers.DateField()
    base_per_hour = serializers.DecimalField(
        max_digits=16, decimal_places=8, help_text="USD per cluster-hour"
    )
    per_gb_in = serializers.DecimalField(max_digits=16, decimal_places=8, help_text="USD per GB produced")
    per_gb_out = serializers.DecimalField(max_digits=16, decimal_places=8, help_text="USD per GB fetched")
    per_gb_month_stored = serializers.DecimalField(
        max_digits=16, decimal_places=8, help_text="USD per GB-month stored"
    )
    per_partition_hour = serializers.DecimalField(
        max_digits=16, decimal_places=8, help_text="USD per partition-hour"
    )


class PlanSerializer(serializers.Serializer):
    name = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    brokers = serializers.IntegerField(
        help_text="Brokers a cluster of this plan runs (Dedicated: the default)"
    )
    brokers_min = serializers.IntegerField(help_text="Fewest brokers a cluster may choose")
    brokers_max = serializers.IntegerField(help_text="Most brokers a cluster may choose")
    replication_factor = serializers.IntegerField(help_text="Replicas of a topic created without one")
    min_insync_replicas = serializers.IntegerField(
        help_text="In-sync replicas an acks=all write needs (min.insync.replicas)"
    )
    max_partitions = serializers.IntegerField()
    ingress_mbps = serializers.IntegerField(help_text="Produce throughput limit, MB/s")
    egress_mbps = serializers.IntegerField(help_text="Fetch throughput limit, MB/s")
    max_retention_ms = serializers.IntegerField(
        help_text="Longest retention.ms a topic may set; -1 is unlimited"
    )
    max_api_keys = serializers.IntegerField()
    max_connections = serializers.IntegerField()
    max_message_bytes = serializers.IntegerField()
    max_schemas = serializers.IntegerField(
        help_text="Live schema versions the cluster's Schema Registry may hold, all subjects together."
    )
    prices = PlanPricesSerializer()


class PlanViewSet(viewsets.ViewSet):
    """Cluster plans and their limits. Public: the portal shows them before sign-in."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    lookup_field = "name"
    pagination_class = Pagination  # the schema documents the list as paginated (it is)

    @extend_schema(responses=PlanSerializer(many=True))
    def list(self, request):
        paginator = self.paginator
        prices = _prices()
        plans = [{**plan.as_dict(), "prices": prices[plan.name]} for plan in PLANS.values()]
        page = paginator.paginate_queryset(plans, request, view=self)
        return paginator.get_paginated_response(PlanSerializer(page, many=True).data)

    @extend_schema(
        responses=PlanSerializer, parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)]
    )
    def retrieve(self, request, name=None):
        plan = PLANS.get(name or "")
        if plan is None:
            raise NotFound(f"No plan named {name!r}.")
        return Response(PlanSerializer({**plan.as_dict(), "prices": _prices()[plan.name]}).data)

    @property
    def paginator(self):
        if not hasattr(self, "_paginator"):
            self._paginator = Pagination()
        return self._paginator


def _prices() -> dict:
    """Today's price book per plan (metering owns prices; plans.py owns limits)."""
    return {name: asdict(prices) for name, prices in current_prices().items()}
