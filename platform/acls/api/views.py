"""REST endpoints for a cluster's ACLs (served from the brokers through the Kafka protocol)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from acls import selectors, services
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin

from . import serializers as s

ACL_PARAM = OpenApiParameter("acl_id", str, OpenApiParameter.PATH, description="The binding's id (acl-…)")
FILTERS = ["resource_type", "resource_name", "pattern_type", "principal", "host", "operation", "permission"]
FILTER_PARAMS = [
    OpenApiParameter("resource_type", str, description="TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID"),
    OpenApiParameter("resource_name", str, description="Exact resource name (or prefix)"),
    OpenApiParameter(
        "pattern_type", str, description="LITERAL, PREFIXED, or MATCH (every binding applying to the name)"
    ),
    OpenApiParameter("principal", str, description=s.PRINCIPAL_HELP),
    OpenApiParameter("host", str),
    OpenApiParameter("operation", str),
    OpenApiParameter("permission", str, description="ALLOW or DENY"),
]


class AclViewSet(ClusterScopedMixin, viewsets.GenericViewSet):
    serializer_class = s.AclSerializer
    roles = {"list": Role.MEMBER}

    def _filters(self, request) -> dict:
        return {name: request.query_params.get(name) for name in FILTERS}

    @extend_schema(parameters=[CLUSTER_PARAM, *FILTER_PARAMS], responses=s.AclSerializer(many=True))
    def list(self, request, cluster_id=None):
        rows = selectors.acl_list(cluster=self.get_cluster(), filters=self._filters(request))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.AclSerializer(page, many=True).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        request=s.AclCreateSerializer,
        responses={201: s.AclSerializer(many=True)},
        summary="Create an ACL (for a service account: on each of its keys, and for keys issued later)",
    )
    def create(self, request, cluster_id=None):
        cluster = self.get_cluster()
        data = request.data if isinstance(request.data, dict) else {}
        rows = services.acl_create(cluster=cluster, data=dict(data), actor=Actor.from_request(request))
        return Response(s.AclSerializer(rows, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[CLUSTER_PARAM, *FILTER_PARAMS],
        responses=s.AclDeleteResultSerializer,
        summary="Delete the ACLs matching a filter (at least one field)",
        operation_id="clusters_acls_delete_matching",
    )
    def delete_matching(self, request, cluster_id=None):
        rows = services.acl_delete(
            cluster=self.get_cluster(), filters=self._filters(request), actor=Actor.from_request(request)
        )
        return Response(s.AclDeleteResultSerializer({"deleted": rows}).data)

    @extend_schema(parameters=[CLUSTER_PARAM, ACL_PARAM], responses={204: None})
    def destroy(self, request, cluster_id=None, acl_id=None):
        services.acl_delete(
            cluster=self.get_cluster(), filters={"id": acl_id}, actor=Actor.from_request(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
