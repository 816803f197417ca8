"""REST endpoint of a cluster's Prometheus export (text format, not JSON)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers, viewsets

from accounts.models import Role
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin
from monitoring import selectors

#: The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PrometheusTextRenderer(renderers.BaseRenderer):
    """Lets a scraper's `Accept: text/plain` through content negotiation; errors stay JSON text."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return renderers.JSONRenderer().render(data)


EXPORT_DESCRIPTION = """\
The cluster's metrics in the Prometheus text format, for your own Prometheus to scrape (every
15 s is fine: the figures are collected at most every few seconds and shared between scrapes).

Authenticate with a REST token (`Authorization: Bearer <token>`; any role). The export holds
only this cluster's figures: per-topic bytes and records produced and fetched (the units billing
uses), per-partition storage, log start and end offsets, replicas and in-sync replicas,
consumer lag per group and partition, and requests, errors, throttle time and connections.
`kastle_export_source_up` says which sources answered; a source that did not answer leaves its
series out rather than failing the scrape. docs/monitoring.md lists every metric, and
docs/grafana-dashboard.json is a dashboard for them.
"""


class ClusterMetricsExportViewSet(ClusterScopedMixin, viewsets.ViewSet):
    renderer_classes = [renderers.JSONRenderer, PrometheusTextRenderer]
    roles = {"export": Role.MEMBER}

    @extend_schema(
        operation_id="clusters_metrics_export",
        summary="Prometheus export of the cluster's metrics",
        description=EXPORT_DESCRIPTION,
        parameters=[CLUSTER_PARAM],
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="Prometheus text exposition format 0.0.4"
            )
        },
    )
    def export(self, request, cluster_id=None):
        body = selectors.cluster_metrics_export(cluster=self.get_cluster())
        response = HttpResponse(body, content_type=CONTENT_TYPE)
        response["Cache-Control"] = "no-store"
        return response
