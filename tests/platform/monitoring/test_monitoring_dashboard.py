"""The Grafana dashboard and Prometheus scrape config in docs/ against what the export serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from django.urls import resolve
from prometheus_client.parser import text_string_to_metric_families

from monitoring import export
from monitoring.live import SOURCES, Snapshot

DOCS = Path(__file__).resolve().parents[3] / "docs"
METRIC_NAME = re.compile(r"\b(kastle_[a-zA-Z0-9_]+)\b")


def full_snapshot() -> Snapshot:
    """A snapshot with a row in every collection, so that every series the export can serve appears."""
    return Snapshot(
        cluster="lkc-test",
        running=True,
        taken_at=1.0,
        collect_seconds=0.01,
        brokers=1,
        brokers_up=1,
        sources=dict.fromkeys(SOURCES, True),
        topics={"orders": {"bytes_in": 10, "bytes_out": 20, "records_in": 1, "records_out": 2}},
        partition_traffic=[["orders", 0, 10, 1, 20, 2]],
        stored=[["orders", 0, 10]],
        partitions=[["orders", 0, 1, 1, 1]],
        min_isr={"orders": 1},
        offsets=[["orders", 0, 0, 1]],
        lag=[["billing", "orders", 0, 0, 1]],
        requests=[["Produce", "NONE", 1]],
        latency={"Produce": {"buckets": {"0.001": 1, "0.01": 2, "+Inf": 2}, "sum": 0.004, "count": 2}},
        throttle=[["key-1", "producer_byte_rate", 0.5, 1]],
        connections={"SASL_PLAINTEXT": 1},
        principal_connections={"key-1": 1},
    )


def served_names() -> set[str]:
    text = export.render(full_snapshot()).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def dashboard_queries() -> list[str]:
    board = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            queries.append(var["query"]["query"])
    return queries


def test_the_catalogue_is_what_the_export_serves():
    assert served_names() == export.sample_names()


def test_every_dashboard_query_names_served_metrics():
    served = served_names()
    queries = dashboard_queries()
    assert len(queries) >= 20
    used = set()
    for query in queries:
        names = set(METRIC_NAME.findall(query))
        assert names, f"query names no Kastle metric: {query}"
        assert names <= served, f"{query} names {names - served}, which the export does not serve"
        used |= names
    # Every topic of the export is on the dashboard except the export's own bookkeeping.
    missing = {n for n in export.sample_names() - used if not n.endswith(("_sum", "_count"))}
    assert missing <= {"kastle_partition_replicas", "kastle_partition_in_sync_replicas",
                       "kastle_consumer_group_committed_offset"}, missing  # fmt: skip


def test_scrape_config_points_at_the_export():
    config = yaml.safe_load((DOCS / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    path = job["metrics_path"].replace("lkc-CLUSTER", "lkc-abc123")
    assert resolve(path).url_name == "cluster-metrics-export"
    assert job["authorization"]["type"] == "Bearer"
    assert job["static_configs"][0]["labels"]["cluster"] == "lkc-CLUSTER"  # the dashboard's $cluster
    assert int(job["scrape_interval"].rstrip("s")) == 15


def test_every_metric_is_documented():
    text = (DOCS / "monitoring.md").read_text()
    assert [name for name in export.METRICS if f"`{name}`" not in text] == []
