"""REST endpoints for a cluster's API keys."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin
from controlplane.api.tenancy import OrganizationScopedMixin
from iam import selectors, services
from iam.models import ApiKey, ServiceAccount

from . import serializers as s


@extend_schema_view(
    list=extend_schema(parameters=[CLUSTER_PARAM]),
    retrieve=extend_schema(parameters=[CLUSTER_PARAM]),
)
class ApiKeyViewSet(
    ClusterScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = s.ApiKeySerializer
    organization_field = "cluster__organization"
    lookup_field = "key"
    lookup_url_kwarg = "key"
    lookup_value_regex = "[^/]+"
    roles = {"create": Role.ADMIN, "destroy": Role.ADMIN, "rotate": Role.ADMIN}

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.all()
        return selectors.api_key_list(cluster=self.get_cluster())

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        request=s.ApiKeyCreateSerializer,
        responses={201: s.ApiKeyCreatedSerializer},
    )
    def create(self, request, cluster_id=None):
        cluster = self.get_cluster()
        data = s.ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor, account = selectors.key_owner_resolve(
            organization=self.organization,
            owner=data.validated_data.get("owner"),
            actor=Actor.from_request(request),
        )
        api_key, secret = services.api_key_create(
            cluster=cluster,
            description=data.validated_data["description"],
            expires_at=data.validated_data["expires_at"],
            actor=actor,
            service_account=account,
            scope=data.validated_data.get("scope"),
        )
        return Response(
            s.ApiKeyCreatedSerializer(_created_body(api_key, secret)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        request=s.ApiKeyRotateSerializer,
        responses={201: s.ApiKeyRotatedSerializer},
        summary="Issue a new key with the same owner and access; the old key expires after the overlap",
    )
    def rotate(self, request, cluster_id=None, key=None):
        old = self.get_object()
        data = s.ApiKeyRotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        new_key, secret = services.api_key_rotate(
            api_key=old,
            overlap_seconds=data.validated_data["overlap_seconds"],
            actor=Actor.from_request(request),
        )
        old.refresh_from_db()
        body = _created_body(new_key, secret) | {
            "rotated_from": old.key,
            "rotated_from_expires_at": old.expires_at,
        }
        return Response(s.ApiKeyRotatedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[CLUSTER_PARAM], responses={204: None})
    def destroy(self, request, cluster_id=None, key=None):
        services.api_key_revoke(api_key=self.get_object(), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _created_body(api_key: ApiKey, secret: str) -> dict:
    return {
        "key": api_key.key,
        "secret": secret,
        "description": api_key.description,
        "cluster": api_key.cluster.public_id,
        "created_at": api_key.created_at,
        "expires_at": api_key.expires_at,
        "owner": s.owner_of(api_key),
        "scope": api_key.scope,
    }


SA_PARAM = OpenApiParameter(
    "sa_id", str, OpenApiParameter.PATH, description="The service account's id (sa-…)"
)


@extend_schema_view(retrieve=extend_schema(parameters=[SA_PARAM]))
class ServiceAccountViewSet(
    OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Service accounts: organization-wide owners of API keys (admins write, members read)."""

    serializer_class = s.ServiceAccountSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "sa_id"
    roles = {"create": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN}

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ServiceAccount.objects.none()
        return selectors.service_account_list(organization=self.organization).prefetch_related("api_keys")

    @extend_schema(request=s.ServiceAccountWriteSerializer, responses={201: s.ServiceAccountSerializer})
    def create(self, request):
        data = s.ServiceAccountWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.service_account_create(
            organization=self.organization, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ServiceAccountSerializer(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[SA_PARAM], request=s.ServiceAccountUpdateSerializer, responses=s.ServiceAccountSerializer
    )
    def partial_update(self, request, sa_id=None):
        account = self.get_object()
        data = s.ServiceAccountUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.service_account_update(
            account=account, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ServiceAccountSerializer(account).data)

    @extend_schema(parameters=[SA_PARAM], responses={204: None})
    def destroy(self, request, sa_id=None):
        services.service_account_delete(account=self.get_object(), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
