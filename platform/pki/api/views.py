"""GET /api/v1/clusters/{id}/ca.pem: the CA bundle a tenant's clients verify the brokers with."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView

from clusters import selectors as cluster_selectors
from clusters.models import Cluster
from controlplane.api.tenancy import OrganizationScopedMixin
from controlplane.errors import Conflict
from pki import services

CLUSTER_PARAM = OpenApiParameter("id", str, OpenApiParameter.PATH, description="The cluster's id (lkc-…)")


class ClusterCaView(OrganizationScopedMixin, GenericAPIView):
    def get_base_queryset(self):
        return Cluster.objects.all()

    @extend_schema(
        operation_id="clusters_ca_pem",
        summary="The cluster's CA bundle (PEM) for verifying its brokers over SASL_SSL",
        parameters=[CLUSTER_PARAM],
        responses={(200, "application/x-pem-file"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request, id: str):
        cluster = cluster_selectors.cluster_get(organization=self.organization, public_id=id)
        if cluster is None:
            raise Http404
        if cluster.security_protocol != services.SASL_SSL:
            raise Conflict(
                f"Cluster {cluster.public_id} listens with {cluster.security_protocol}; "
                "it has no TLS certificate.",
                code="tls_disabled",
                details={"security_protocol": cluster.security_protocol},
            )
        bundle = services.ca_bundle(cluster)
        if bundle is None:
            raise Conflict(
                f"Cluster {cluster.public_id} is {cluster.status}; its certificate is issued while it is "
                "provisioned.",
                code="certificate_not_issued",
                details={"status": cluster.status},
            )
        response = HttpResponse(bundle, content_type="application/x-pem-file")
        response["Content-Disposition"] = f'attachment; filename="{services.CA_FILENAME}"'
        response["Cache-Control"] = "no-cache"
        return response
