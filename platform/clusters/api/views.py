"""REST endpoints for clusters (plans, with their prices, are metering.api.plans)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from clusters import selectors, services
from clusters.models import Cluster, ClusterStatus
from controlplane.api.tenancy import OrganizationScopedMixin

from . import serializers as s


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
                raise ValidationError({"status": [f"Choose one of: {', '.join(ClusterStatus.values)}."]})
            qs = selectors.cluster_list(organization=self.organization, status=wanted)
        return selectors.annotate_degraded(qs)  # the `degraded` field without a query per cluster

    def retrieve(self, request, id=None):
        cluster = self.get_object()
        return Response(s.ClusterSerializer(cluster, context={"with_health": True, "request": request}).data)

    @extend_schema(
        methods=["GET"],
        responses=s.BrokerSerializer(many=True),
        summary="The cluster's brokers and their state",
    )
    @extend_schema(
        methods=["POST"],
        request=s.ClusterScaleSerializer,
        responses={202: s.ClusterSerializer},
        summary="Grow a Dedicated cluster to more brokers",
        description="The new brokers start on hosts of their own and register; topics created from then on "
        "spread over every broker, and the existing partitions' replicas move over to balance, a few "
        "partitions at a time so that clients keep most of the bandwidth. The progress is the cluster's "
        "`scale` field. 400 unless the plan is Dedicated and the count is more than now and within the "
        "plan (shrinking is not supported yet); 409 unless the cluster is RUNNING, nothing else is under "
        "way, and enough broker hosts have room (one per broker).",
    )
    @action(detail=True, methods=["get", "post"])
    def brokers(self, request, id=None):
        cluster = self.get_object()  # another tenant's cluster is a 404 before any input check
        if request.method == "POST":
            data = s.ClusterScaleSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            cluster = services.cluster_scale(
                cluster=cluster,
                count=data.validated_data["count"],
                actor=Actor.from_request(request),
            )
            body = s.ClusterSerializer(cluster, context={"request": request}).data
            return Response(body, status=status.HTTP_202_ACCEPTED)
        views = selectors.cluster_brokers(cluster=cluster)
        page = self.paginate_queryset(views)
        return self.get_paginated_response(s.BrokerSerializer(page, many=True).data)

    @extend_schema(request=s.ClusterCreateSerializer, responses={202: s.ClusterSerializer})
    def create(self, request):
        data = s.ClusterCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cluster = services.cluster_create(
            organization=self.organization, actor=Actor.from_request(request), **data.validated_data
        )
        body = s.ClusterSerializer(cluster, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.ClusterUpdateSerializer, responses=s.ClusterSerializer)
    def partial_update(self, request, id=None):
        cluster = self.get_object()
        data = s.ClusterUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cluster = services.cluster_update(
            cluster=cluster, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ClusterSerializer(cluster, context={"request": request}).data)

    @extend_schema(request=None, responses={202: s.ClusterSerializer})
    def destroy(self, request, id=None):
        cluster = services.cluster_delete(cluster=self.get_object(), actor=Actor.from_request(request))
        body = s.ClusterSerializer(cluster, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None, responses={202: s.ClusterSerializer}, summary="Provision a FAILED cluster again"
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, id=None):
        cluster = services.cluster_retry(cluster=self.get_object(), actor=Actor.from_request(request))
        body = s.ClusterSerializer(cluster, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: s.ClusterSerializer},
        summary="Restart the cluster's brokers one at a time",
        description="A rolling restart: each broker stops cleanly (its partitions' leadership moves to "
        "the others), starts again on the same address, and the next one waits until every partition "
        "is back in full ISR, so clients with acks=all see only retriable errors. The progress is the "
        "cluster's `restart` field. 409 unless the cluster is RUNNING and no restart or growth is "
        "under way.",
    )
    @action(detail=True, methods=["post"])
    def restart(self, request, id=None):
        cluster = services.cluster_restart(cluster=self.get_object(), actor=Actor.from_request(request))
        body = s.ClusterSerializer(cluster, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)
