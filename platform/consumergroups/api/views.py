"""REST endpoints for a cluster's consumer groups (served from the brokers through the Kafka protocol)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from consumergroups import selectors, services
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin

from . import serializers as s

GROUP_PARAM = OpenApiParameter("group_id", str, OpenApiParameter.PATH, description="The consumer group's id")


class ConsumerGroupViewSet(ClusterScopedMixin, viewsets.GenericViewSet):
    serializer_class = s.ConsumerGroupSerializer
    lookup_field = "group_id"
    lookup_url_kwarg = "group_id"
    lookup_value_regex = "[^/]+"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "reset_offsets": Role.ADMIN, "destroy": Role.ADMIN}

    @extend_schema(parameters=[CLUSTER_PARAM], responses=s.ConsumerGroupSummarySerializer(many=True))
    def list(self, request, cluster_id=None):
        groups = selectors.group_list(cluster=self.get_cluster())
        page = self.paginate_queryset(groups)
        return self.get_paginated_response(s.ConsumerGroupSummarySerializer(page, many=True).data)

    @extend_schema(parameters=[CLUSTER_PARAM, GROUP_PARAM], responses=s.ConsumerGroupSerializer)
    def retrieve(self, request, cluster_id=None, group_id=None):
        body = selectors.group_get(cluster=self.get_cluster(), group_id=group_id)
        return Response(s.ConsumerGroupSerializer(body).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM, GROUP_PARAM],
        request=s.ResetOffsetsSerializer,
        responses=s.ResetOffsetsResultSerializer,
        summary="Reset a group's committed offsets (only while it has no members)",
    )
    def reset_offsets(self, request, cluster_id=None, group_id=None):
        cluster = self.get_cluster()
        data = s.ResetOffsetsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = services.group_offsets_reset(
            cluster=cluster, group_id=group_id, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ResetOffsetsResultSerializer(body).data)

    @extend_schema(parameters=[CLUSTER_PARAM, GROUP_PARAM], responses={204: None})
    def destroy(self, request, cluster_id=None, group_id=None):
        services.group_delete(
            cluster=self.get_cluster(), group_id=group_id, actor=Actor.from_request(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
