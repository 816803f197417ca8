"""Monitoring reads: a cluster's live figures and their Prometheus export."""

from __future__ import annotations

from clusters.models import Cluster

from . import export, live


def cluster_snapshot(*, cluster: Cluster, max_age: float | None = None) -> live.Snapshot:
    """The cluster's live figures (cached for KASTLE_METRICS_EXPORT_CACHE_SECONDS)."""
    return live.snapshot(cluster, max_age=max_age)


def cluster_metrics_export(*, cluster: Cluster) -> bytes:
    """The cluster's figures in the Prometheus text format (version 0.0.4)."""
    return export.render(live.snapshot(cluster))
