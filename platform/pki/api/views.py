"""GET /api/v1/clusters/{id}/ca.pem: the CA bundle a tenant's clients verify the brokers with."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView

from controlplane.api.cluster_scope import ClusterScopedMixin, cluster_param
from controlplane.errors import Conflict
from pki import services


class ClusterCaView(ClusterScopedMixin, GenericAPIView):
    cluster_url_kwarg = "id"

    @extend_schema(
        operation_id="clusters_ca_pem",
        summary="The cluster's CA bundle (PEM) for verifying its brokers over SASL_SSL",
        parameters=[cluster_param("id")],
        responses={(200, "application/x-pem-file"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request, id: str):
        cluster = self.get_cluster()
        if cluster.security_protocol != services.SASL_SSL:
            raise Conflict(
                f"Cluster {cluster.public_id} listens with {cluster.security_protocol}; "
                "it has no TLS certificate.",
                code="tls_disabled",
                details={"security_protocol": cluster.security_protocol},
            )
        bundle = cluster.ca_bundle()
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
