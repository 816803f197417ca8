"""Usage charts for the portal, from metering's hourly usage rows once metering exists."""

from __future__ import annotations

from typing import Any

from clusters.models import Cluster

from .charts import line_chart


def cluster_charts(cluster: Cluster, *, window: str = "hour") -> dict[str, Any]:
    """{"throughput": svg, "storage": svg} for the last hour or day (empty charts without data)."""
    series = _cluster_series(cluster, window)
    return {
        "throughput": line_chart(series.get("throughput", []), title=f"Throughput, last {window}"),
        "storage": line_chart(series.get("storage", []), title=f"Storage, last {window}"),
    }


def _cluster_series(cluster: Cluster, window: str) -> dict[str, list]:
    try:
        from metering import selectors as metering_selectors  # noqa: F401
    except ImportError:
        return {}
    return {}


def topic_rates(cluster: Cluster) -> dict[str, str]:
    """{topic: "N msg/s"} averaged over the last hour, from metering (empty until it exists)."""
    return {}
