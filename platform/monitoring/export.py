"""A cluster's Prometheus export: the live snapshot (`live.py`) in the text exposition format.

Names follow Prometheus's conventions (the unit last, `_total` on counters), and labels use
Kafka's names: `topic`, `partition`, `group`. `METRICS` is the catalogue: docs/monitoring.md
lists it, and the Grafana dashboard in docs/ may only query these names (a test checks it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .live import SOURCES, Snapshot


@dataclass(frozen=True, slots=True)
class Spec:
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...] = ()


METRICS: dict[str, Spec] = {
    # Usage, as billed (docs/metering.md): record-batch bytes and records, summed over API keys.
    "kastle_topic_bytes_in_total": Spec("counter", "Record-batch bytes produced to the topic", ("topic",)),
    "kastle_topic_bytes_out_total": Spec("counter", "Record-batch bytes fetched from the topic", ("topic",)),
    "kastle_topic_records_in_total": Spec("counter", "Records produced to the topic", ("topic",)),
    "kastle_topic_records_out_total": Spec("counter", "Records fetched from the topic", ("topic",)),
    # The same per partition (counted by the broker process serving it: they restart from 0 with it).
    "kastle_partition_bytes_in_total": Spec(
        "counter", "Record-batch bytes produced to the partition", ("topic", "partition")
    ),
    "kastle_partition_bytes_out_total": Spec(
        "counter", "Record-batch bytes fetched from the partition", ("topic", "partition")
    ),
    "kastle_partition_records_in_total": Spec(
        "counter", "Records produced to the partition", ("topic", "partition")
    ),
    "kastle_partition_records_out_total": Spec(
        "counter", "Records fetched from the partition", ("topic", "partition")
    ),
    # Partitions: storage, offsets (records appended = increase of the log end offset), health.
    "kastle_partition_stored_bytes": Spec(
        "gauge", "Bytes of the partition's log segments on disk", ("topic", "partition")
    ),
    "kastle_partition_log_start_offset": Spec(
        "gauge", "First offset still in the partition's log", ("topic", "partition")
    ),
    "kastle_partition_log_end_offset": Spec(
        "gauge", "Next offset to be written (records ever appended to the partition)", ("topic", "partition")
    ),
    "kastle_partition_replicas": Spec("gauge", "Replicas assigned to the partition", ("topic", "partition")),
    "kastle_partition_in_sync_replicas": Spec(
        "gauge", "Replicas in the partition's ISR", ("topic", "partition")
    ),
    "kastle_partition_under_replicated": Spec(
        "gauge", "1 when the partition has fewer in-sync replicas than replicas", ("topic", "partition")
    ),
    "kastle_partition_offline": Spec("gauge", "1 when the partition has no leader", ("topic", "partition")),
    "kastle_partition_under_min_isr": Spec(
        "gauge", "1 when the ISR is smaller than the topic's min.insync.replicas", ("topic", "partition")
    ),
    # Consumers.
    "kastle_consumer_group_committed_offset": Spec(
        "gauge", "The group's committed offset", ("group", "topic", "partition")
    ),
    "kastle_consumer_group_lag_records": Spec(
        "gauge", "Log end offset minus the group's committed offset", ("group", "topic", "partition")
    ),
    # Requests, throttling, connections (summed over the cluster's brokers; restart from 0 with a broker).
    "kastle_requests_total": Spec(
        "counter", "Requests handled, by Kafka API and error code (NONE: success)", ("api", "error")
    ),
    "kastle_request_latency_seconds": Spec(
        "histogram", "Time from a request's arrival at a broker to its response being queued", ("api",)
    ),
    "kastle_throttle_time_seconds_total": Spec(
        "counter", "Throttle time returned to clients, by API key and quota", ("principal", "quota")
    ),
    "kastle_throttled_responses_total": Spec(
        "counter", "Responses that carried a throttle time, by API key and quota", ("principal", "quota")
    ),
    "kastle_connections": Spec("gauge", "Open client connections, by listener", ("listener",)),
    "kastle_api_key_connections": Spec(
        "gauge", "Open connections authenticated with the API key", ("principal",)
    ),
    # The export itself.
    "kastle_cluster_running": Spec("gauge", "1 when the cluster is RUNNING"),
    "kastle_brokers": Spec("gauge", "Brokers of the cluster"),
    "kastle_brokers_up": Spec("gauge", "Brokers whose figures are in this export"),
    "kastle_export_source_up": Spec(
        "gauge",
        "1 when the source answered (brokers, metadata, configs, offsets, consumer_groups)",
        ("source",),
    ),
    "kastle_export_age_seconds": Spec("gauge", "Age of the figures (they are cached for a few seconds)"),
    "kastle_export_collect_seconds": Spec("gauge", "Time the collection of these figures took"),
}


def sample_names() -> set[str]:
    """Every sample name the export can serve (a histogram serves _bucket, _sum and _count)."""
    out = set()
    for name, spec in METRICS.items():
        out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if spec.kind == "histogram" else {name}
    return out


def _le(bound: str) -> float:
    return float("inf") if bound in ("+Inf", "Inf") else float(bound)


def _family(name: str) -> Metric:
    spec = METRICS[name]
    if spec.kind == "histogram":
        return HistogramMetricFamily(name, spec.help, labels=list(spec.labels))
    if spec.kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


def families(snap: Snapshot, *, now: float | None = None) -> Iterable[Metric]:
    now = time.time() if now is None else now
    out: dict[str, Metric] = {}

    def add(name: str, labels: Iterable[object], value: float) -> None:
        fam = out.get(name)
        if fam is None:
            fam = out[name] = _family(name)
        fam.add_metric([str(v) for v in labels], value)

    add("kastle_cluster_running", [], 1 if snap.running else 0)
    add("kastle_brokers", [], snap.brokers)
    add("kastle_brokers_up", [], snap.brokers_up)
    for source in SOURCES:
        add("kastle_export_source_up", [source], 1 if snap.sources.get(source) else 0)
    add("kastle_export_age_seconds", [], max(0.0, now - snap.taken_at))
    add("kastle_export_collect_seconds", [], snap.collect_seconds)
    for topic, row in sorted(snap.topics.items()):
        for slot in ("bytes_in", "bytes_out", "records_in", "records_out"):
            add(f"kastle_topic_{slot}_total", [topic], row[slot])
    for topic, partition, bytes_in, records_in, bytes_out, records_out in snap.partition_traffic:
        add("kastle_partition_bytes_in_total", [topic, partition], bytes_in)
        add("kastle_partition_records_in_total", [topic, partition], records_in)
        add("kastle_partition_bytes_out_total", [topic, partition], bytes_out)
        add("kastle_partition_records_out_total", [topic, partition], records_out)
    for topic, partition, stored in sorted(snap.stored):
        add("kastle_partition_stored_bytes", [topic, partition], stored)
    for topic, partition, leader, replicas, isr in snap.partitions:
        add("kastle_partition_replicas", [topic, partition], replicas)
        add("kastle_partition_in_sync_replicas", [topic, partition], isr)
        add("kastle_partition_under_replicated", [topic, partition], 1 if isr < replicas else 0)
        add("kastle_partition_offline", [topic, partition], 1 if leader < 0 else 0)
        if topic in snap.min_isr:
            add("kastle_partition_under_min_isr", [topic, partition], 1 if isr < snap.min_isr[topic] else 0)
    for topic, partition, start, end in snap.offsets:
        add("kastle_partition_log_start_offset", [topic, partition], start)
        add("kastle_partition_log_end_offset", [topic, partition], end)
    for group, topic, partition, committed, lag in snap.lag:
        add("kastle_consumer_group_committed_offset", [group, topic, partition], committed)
        add("kastle_consumer_group_lag_records", [group, topic, partition], lag)
    for api, error, n in snap.requests:
        add("kastle_requests_total", [api, error], n)
    for api, row in sorted(snap.latency.items()):
        if "kastle_request_latency_seconds" not in out:
            out["kastle_request_latency_seconds"] = _family("kastle_request_latency_seconds")
        buckets = sorted(row["buckets"].items(), key=lambda kv: _le(kv[0]))
        out["kastle_request_latency_seconds"].add_metric(
            [api], buckets=[(b, v) for b, v in buckets], sum_value=row["sum"]
        )
    for principal, quota, seconds, responses in snap.throttle:
        add("kastle_throttle_time_seconds_total", [principal, quota], seconds)
        add("kastle_throttled_responses_total", [principal, quota], responses)
    for listener, n in sorted(snap.connections.items()):
        add("kastle_connections", [listener], n)
    for principal, n in sorted(snap.principal_connections.items()):
        add("kastle_api_key_connections", [principal], n)
    return list(out.values())


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterable[Metric]:
        return families(self.snap)


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
