"""REST endpoints for a cluster's transactions (served from the brokers through the Kafka protocol)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin
from transactions import selectors, services

from . import serializers as s


class TransactionViewSet(ClusterScopedMixin, viewsets.GenericViewSet):
    serializer_class = s.TransactionSerializer
    roles = {"list": Role.MEMBER, "abort": Role.ADMIN}

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        responses=s.TransactionSerializer(many=True),
        summary="List the cluster's open transactions, oldest first (long-running ones may be hanging)",
    )
    def list(self, request, cluster_id=None):
        rows = selectors.transaction_list(cluster=self.get_cluster())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.TransactionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        request=s.AbortSerializer,
        responses=s.AbortResultSerializer,
        summary="Abort a hanging transaction on one partition: only a producer with a transaction open "
        "there, at the epoch the partition knows (as kafka-transactions.sh abort)",
    )
    def abort(self, request, cluster_id=None):
        cluster = self.get_cluster()  # another tenant's cluster is a 404 before any input check
        data = s.AbortSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = services.transaction_abort(
            cluster=cluster, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.AbortResultSerializer(body).data)
