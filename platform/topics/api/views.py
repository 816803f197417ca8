"""REST endpoints for a cluster's topics (served from the brokers through the Kafka protocol)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin
from topics import selectors, services

from . import serializers as s

NAME_PARAM = OpenApiParameter("name", str, OpenApiParameter.PATH, description="The topic's name")


class TopicViewSet(ClusterScopedMixin, viewsets.GenericViewSet):
    serializer_class = s.TopicSerializer
    lookup_field = "name"
    lookup_url_kwarg = "name"
    lookup_value_regex = "[^/]+"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER}

    @extend_schema(parameters=[CLUSTER_PARAM], responses=s.TopicSummarySerializer(many=True))
    def list(self, request, cluster_id=None):
        topics = selectors.topic_list(cluster=self.get_cluster())
        page = self.paginate_queryset(topics)
        return self.get_paginated_response(s.TopicSummarySerializer(page, many=True).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM], request=s.TopicCreateSerializer, responses={201: s.TopicSerializer}
    )
    def create(self, request, cluster_id=None):
        cluster = self.get_cluster()
        data = s.TopicCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        topic = services.topic_create(
            cluster=cluster, actor=Actor.from_request(request), **data.validated_data
        )
        body = selectors.topic_get(cluster=cluster, name=topic["name"])
        return Response(s.TopicSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[CLUSTER_PARAM, NAME_PARAM], responses=s.TopicSerializer)
    def retrieve(self, request, cluster_id=None, name=None):
        return Response(s.TopicSerializer(selectors.topic_get(cluster=self.get_cluster(), name=name)).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM, NAME_PARAM], request=s.TopicUpdateSerializer, responses=s.TopicSerializer
    )
    def partial_update(self, request, cluster_id=None, name=None):
        cluster = self.get_cluster()
        data = s.TopicUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.topic_update(
            cluster=cluster, name=name, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.TopicSerializer(selectors.topic_get(cluster=cluster, name=name)).data)

    @extend_schema(parameters=[CLUSTER_PARAM, NAME_PARAM], responses={204: None})
    def destroy(self, request, cluster_id=None, name=None):
        services.topic_delete(cluster=self.get_cluster(), name=name, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
