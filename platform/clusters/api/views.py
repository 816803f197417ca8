"""REST endpoints for plans and clusters."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from clusters import selectors, services
from clusters.models import Cluster, ClusterStatus
from clusters.plans import PLANS
from controlplane.api.pagination import Pagination
from controlplane.api.tenancy import OrganizationScopedMixin

from . import serializers as s


class PlanViewSet(viewsets.ViewSet):
    """Cluster plans and their limits. Public: the portal shows them before sign-in."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    lookup_field = "name"
    pagination_class = Pagination  # the schema documents the list as paginated (it is)

    @extend_schema(responses=s.PlanSerializer(many=True))
    def list(self, request):
        paginator = self.paginator
        prices = _prices()
        plans = [{**plan.as_dict(), "prices": prices[plan.name]} for plan in PLANS.values()]
        page = paginator.paginate_queryset(plans, request, view=self)
        return paginator.get_paginated_response(s.PlanSerializer(page, many=True).data)

    @extend_schema(
        responses=s.PlanSerializer, parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)]
    )
    def retrieve(self, request, name=None):
        plan = PLANS.get(name or "")
        if plan is None:
            raise NotFound(f"No plan named {name!r}.")
        return Response(s.PlanSerializer({**plan.as_dict(), "prices": _prices()[plan.name]}).data)

    @property
    def paginator(self):
        from controlplane.api.pagination import Pagination

        if not hasattr(self, "_paginator"):
            self._paginator = Pagination()
        return self._paginator


def _prices() -> dict:
    """Today's price book per plan (metering owns prices; plans.py owns limits)."""
    from dataclasses import asdict

    from metering.selectors import current_prices

    return {name: asdict(prices) for name, prices in current_prices().items()}


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                enum=[c.value for c in ClusterStatus],
                required=False,
                description="Only clusters in this status (DELETED ones are hidden otherwise)",
            ),
        ]
    ),
)
class ClusterViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = s.ClusterSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    roles = {"create": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN, "retry": Role.ADMIN}

    def get_base_queryset(self):
        return Cluster.objects.all()

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action == "list":
            wanted = self.request.query_params.get("status") or None
            if wanted is not None and wanted not in ClusterStatus.values:
                from rest_framework.exceptions import ValidationError

                raise ValidationError({"status": [f"Choose one of: {', '.join(ClusterStatus.values)}."]})
            qs = selectors.cluster_list(organization=self.organization, status=wanted)
        from provisioning.health import annotate_degraded

        return annotate_degraded(qs)  # the `degraded` field without a query per cluster

    @extend_schema(request=s.ClusterCreateSerializer, responses={202: s.ClusterSerializer})
    def create(self, request):
        data = s.ClusterCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cluster = services.cluster_create(
            organization=self.organization, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ClusterSerializer(cluster).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.ClusterUpdateSerializer, responses=s.ClusterSerializer)
    def partial_update(self, request, id=None):
        cluster = self.get_object()
        data = s.ClusterUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cluster = services.cluster_update(
            cluster=cluster, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ClusterSerializer(cluster).data)

    @extend_schema(request=None, responses={202: s.ClusterSerializer})
    def destroy(self, request, id=None):
        cluster = services.cluster_delete(cluster=self.get_object(), actor=Actor.from_request(request))
        return Response(s.ClusterSerializer(cluster).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None, responses={202: s.ClusterSerializer}, summary="Provision a FAILED cluster again"
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, id=None):
        cluster = services.cluster_retry(cluster=self.get_object(), actor=Actor.from_request(request))
        return Response(s.ClusterSerializer(cluster).data, status=status.HTTP_202_ACCEPTED)
