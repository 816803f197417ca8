"""Views of what belongs to one cluster (topics, groups, ACLs, API keys, its CA): /clusters/{cluster_id}/…"""

from __future__ import annotations

from typing import ClassVar

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter

from clusters import selectors as cluster_selectors
from clusters.models import Cluster

from .tenancy import OrganizationScopedMixin


def cluster_param(name: str = "cluster_id") -> OpenApiParameter:
    return OpenApiParameter(name, str, OpenApiParameter.PATH, description="The cluster's id (lkc-…)")


CLUSTER_PARAM = cluster_param()


# The objects live on the brokers; the cluster (`cluster_id` in the URL) is what is scoped.
# No class docstring on purpose: drf-spectacular takes a viewset's first docstring in its MRO as
# the operations' description, and the API schema keeps OrganizationScopedMixin's.
# `cluster_url_kwarg` names the URL's cluster id (`cluster_id`; `id` where the cluster is the
# resource itself, as in /clusters/{id}/ca.pem).
class ClusterScopedMixin(OrganizationScopedMixin):
    cluster_url_kwarg: ClassVar[str] = "cluster_id"

    def get_base_queryset(self) -> QuerySet:
        return Cluster.objects.all()

    def get_cluster(self) -> Cluster:
        """The caller's organization's cluster named in the URL (looked up once per request);
        another tenant's is a 404."""
        cached = getattr(self, "_scoped_cluster", None)
        if cached is not None:
            return cached
        cluster = cluster_selectors.cluster_get(
            organization=self.organization, public_id=self.kwargs[self.cluster_url_kwarg]
        )
        if cluster is None:
            raise Http404
        self._scoped_cluster = cluster
        return cluster
