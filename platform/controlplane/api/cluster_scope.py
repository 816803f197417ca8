"""Viewsets for what lives on a cluster's brokers (topics, consumer groups), under /clusters/{cluster_id}/."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter

from clusters import selectors as cluster_selectors
from clusters.models import Cluster

from .tenancy import OrganizationScopedMixin

CLUSTER_PARAM = OpenApiParameter(
    "cluster_id", str, OpenApiParameter.PATH, description="The cluster's id (lkc-…)"
)


# The objects live on the brokers; the cluster (`cluster_id` in the URL) is what is scoped.
# No class docstring on purpose: drf-spectacular takes a viewset's first docstring in its MRO as
# the operations' description, and the API schema keeps OrganizationScopedMixin's.
class ClusterScopedMixin(OrganizationScopedMixin):

    def get_base_queryset(self) -> QuerySet:
        return Cluster.objects.all()

    def get_cluster(self) -> Cluster:
        """The caller's organization's cluster named in the URL; another tenant's is a 404."""
        cluster = cluster_selectors.cluster_get(
            organization=self.organization, public_id=self.kwargs["cluster_id"]
        )
        if cluster is None:
            raise Http404
        return cluster
