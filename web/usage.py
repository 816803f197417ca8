"""Usage charts for the portal, from metering's samples and hourly usage rows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.utils import timezone

from clusters.models import Cluster
from metering import selectors as metering_selectors

from .charts import Series, human_bytes, line_chart

WINDOWS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
MAX_POINTS = 240


def per_second(value: float) -> str:
    return f"{human_bytes(value)}/s"


def _thin(points: list[tuple[dt.datetime, float]]) -> list[tuple[dt.datetime, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[int(i * step)] for i in range(MAX_POINTS)] + [points[-1]]


def cluster_charts(cluster: Cluster, *, window: str = "hour") -> dict[str, Any]:
    """{"throughput": svg, "storage": svg} for the last hour or day, from metering's samples."""
    now = timezone.now()
    since = now - WINDOWS.get(window, WINDOWS["hour"])
    rows = metering_selectors.sample_series(cluster=cluster, since=since)
    ins, outs, stored = [], [], []
    for row in rows:
        seconds = max((row["interval_ms"] or 0) / 1000, 0.001)
        ins.append((row["taken_at"], (row["bytes_in"] or 0) / seconds))
        outs.append((row["taken_at"], (row["bytes_out"] or 0) / seconds))
        stored.append((row["taken_at"], float(row["storage_bytes"] or 0)))
    label = f"last {window}"
    return {
        "throughput": line_chart(
            [Series("Bytes in", _thin(ins), "s1"), Series("Bytes out", _thin(outs), "s2")],
            title=f"Throughput, {label}",
            formatter=per_second,
            start=since,
            end=now,
        ),
        "storage": line_chart(
            [Series("Stored", _thin(stored), "s3")],
            title=f"Storage, {label}",
            start=since,
            end=now,
            whole=True,
        ),
    }


def topic_rates(cluster: Cluster) -> dict[str, str]:
    """{topic: "N msg/s"}: records produced per second over the last full and current hour."""
    now = timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    records: dict[str, int] = defaultdict(int)
    for row in metering_selectors.usage_rows(
        organization=cluster.organization, start=start, end=now + dt.timedelta(hours=1), cluster=cluster
    ):
        records[row["topic"]] += row["records_in"] or 0
    seconds = max((now - start).total_seconds(), 1.0)
    return {topic: f"{count / seconds:.2f} msg/s" for topic, count in records.items() if topic}


def organization_charts(organization, *, days: int) -> dict[str, Any]:
    """Daily ingress, egress and average storage of the organization over the last `days` days."""
    today = timezone.now().astimezone(dt.UTC).date()
    start = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    per_day: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in metering_selectors.usage_rows(organization=organization, start=start, end=end, group_by="day"):
        totals = per_day[row["day"]]
        totals[0] += row["bytes_in"] or 0
        totals[1] += row["bytes_out"] or 0
        totals[2] += row["storage_byte_seconds"] or 0
    days_sorted = sorted(per_day)

    def at(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)

    table = [
        {"day": d, "bytes_in": per_day[d][0], "bytes_out": per_day[d][1], "stored": per_day[d][2] / 86400}
        for d in days_sorted
    ]
    return {
        "traffic": line_chart(
            [
                Series("Ingress", [(at(r["day"]), r["bytes_in"]) for r in table], "s1"),
                Series("Egress", [(at(r["day"]), r["bytes_out"]) for r in table], "s2"),
            ],
            title=f"Ingress and egress per day, last {days} days",
            start=start,
            end=at(today),
            whole=True,
        ),
        "storage": line_chart(
            [Series("Average stored", [(at(r["day"]), r["stored"]) for r in table], "s3")],
            title=f"Average storage per day, last {days} days",
            start=start,
            end=at(today),
            whole=True,
        ),
        "table": table,
    }
