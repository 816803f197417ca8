"""A cluster's live figures, collected from its brokers and cached for a few seconds.

Two sources, both reached the way the rest of the control plane reaches them:
- each broker's `/metrics` on its admin listener (usage counters, storage, requests, throttling,
  connections; docs/metering.md defines them), fetched concurrently;
- the Kafka protocol with the cluster's internal credential (`sharedkit.kafka_admin`):
  metadata (replicas, in-sync replicas, leaders), each topic's min.insync.replicas, log start
  and end offsets, and every consumer group's committed offsets.

A broker only ever holds its own cluster's data, and the admin client only sees its own cluster,
so a snapshot is one tenant's by construction. The snapshot is plain JSON and is kept in Django's
cache (Redis in production) for `KASTLE_METRICS_EXPORT_CACHE_SECONDS`: Prometheus scraping every
15 s, several scrapers, the portal and the alert evaluation all share one collection.
Each source that fails is recorded in `sources` (the export shows it as
`kastle_export_source_up`) and the others are still served.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, OffsetSpec, ResourceType
from django.core.cache import cache
from prometheus_client.parser import text_string_to_metric_families

from clusters.models import INTERNAL_USERNAME, Broker, BrokerStatus, Cluster, ClusterStatus
from controlplane.errors import ServiceError
from provisioning import supervisor
from sharedkit import kafka_admin

from . import conf

logger = logging.getLogger(__name__)

CACHE_PREFIX = "monitoring:live:v4:"
#: brokerd counter families (without `_total`) -> the snapshot's per-topic slot.
TOPIC_COUNTERS = {
    "kastle_bytes_in": "bytes_in",
    "kastle_bytes_out": "bytes_out",
    "kastle_records_in": "records_in",
    "kastle_records_out": "records_out",
}
#: brokerd per-partition counter families (without `_total`) -> their column in `partition_traffic`.
PARTITION_COUNTERS = {
    "kastle_partition_bytes_in": 2,
    "kastle_partition_records_in": 3,
    "kastle_partition_bytes_out": 4,
    "kastle_partition_records_out": 5,
}
SOURCES = ("brokers", "metadata", "configs", "offsets", "consumer_groups")


@dataclass
class Snapshot:
    """What the export and the alert rules read. Lists of rows keep it JSON-serialisable."""

    cluster: str
    running: bool
    taken_at: float = 0.0
    collect_seconds: float = 0.0
    brokers: int = 0
    brokers_up: int = 0
    sources: dict[str, bool] = field(default_factory=dict)
    #: topic -> {bytes_in, bytes_out, records_in, records_out}, summed over API keys and brokers
    topics: dict[str, dict[str, float]] = field(default_factory=dict)
    #: [topic, partition, bytes_in, records_in, bytes_out, records_out], summed over brokers
    partition_traffic: list[list[Any]] = field(default_factory=list)
    #: [topic, partition, stored_bytes]
    stored: list[list[Any]] = field(default_factory=list)
    #: [topic, partition, leader, replicas, in_sync_replicas]
    partitions: list[list[Any]] = field(default_factory=list)
    #: topic -> its min.insync.replicas
    min_isr: dict[str, int] = field(default_factory=dict)
    #: [topic, partition, log_start_offset, log_end_offset]
    offsets: list[list[Any]] = field(default_factory=list)
    #: [group, topic, partition, committed_offset, lag]
    lag: list[list[Any]] = field(default_factory=list)
    #: [api, error, count]
    requests: list[list[Any]] = field(default_factory=list)
    #: api -> {"buckets": {le: cumulative count}, "sum": seconds, "count": requests}
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: [principal, quota, throttle_seconds, throttled_responses]
    throttle: list[list[Any]] = field(default_factory=list)
    #: listener -> open connections
    connections: dict[str, float] = field(default_factory=dict)
    #: principal -> open connections
    principal_connections: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(**data)

    # --- figures the alert rules read ------------------------------------------------------------
    def group_lag(self, group: str | None = None) -> dict[str, int]:
        """group -> total lag over its partitions (only `group` when given)."""
        out: dict[str, int] = {}
        for g, _topic, _partition, _committed, lag in self.lag:
            if group is None or g == group:
                out[g] = out.get(g, 0) + int(lag)
        return out

    def under_replicated(self) -> int:
        """Partitions with fewer in-sync replicas than replicas, or with no leader."""
        return sum(1 for _t, _p, leader, replicas, isr in self.partitions if leader < 0 or isr < replicas)

    def produce_throttle_seconds(self) -> float:
        return sum(seconds for _p, quota, seconds, _n in self.throttle if quota == "producer_byte_rate")

    def stored_bytes(self) -> int:
        return int(sum(row[2] for row in self.stored))


def snapshot(cluster: Cluster, *, max_age: float | None = None) -> Snapshot:
    """The cluster's live figures, at most `max_age` seconds old (default: the configured cache time)."""
    ttl = conf.export_cache_seconds() if max_age is None else max_age
    key = f"{CACHE_PREFIX}{cluster.pk}:{cluster.status}"
    if ttl > 0:
        cached = cache.get(key)
        if cached is not None and time.time() - cached["taken_at"] <= ttl:
            return Snapshot.from_dict(cached)
    snap = collect(cluster)
    if ttl > 0:
        cache.set(key, snap.as_dict(), timeout=max(1, int(ttl + 1)))
    return snap


def collect(cluster: Cluster) -> Snapshot:
    started = time.monotonic()
    snap = Snapshot(cluster=cluster.public_id, running=cluster.status == ClusterStatus.RUNNING)
    snap.brokers = Broker.objects.filter(cluster=cluster).count()
    if snap.running:
        # Database reads stay on this thread (a pool thread would open a connection of its own);
        # the pool only waits on the brokers' admin listeners.
        brokers = list(
            Broker.objects.filter(cluster=cluster, status=BrokerStatus.RUNNING, admin_port__isnull=False)
            .select_related("host")
            .order_by("node_id")
        )
        with ThreadPoolExecutor(max_workers=min(8, len(brokers) + 1)) as pool:
            pages = [pool.submit(supervisor.fetch_metrics, b.host.address, b.admin_port) for b in brokers]
            _collect_kafka(cluster, snap)
            _read_brokers(cluster, snap, [page.result() for page in pages])
    snap.taken_at = time.time()
    snap.collect_seconds = time.monotonic() - started
    return snap


# --- broker /metrics ------------------------------------------------------------------------------
def _read_brokers(cluster: Cluster, snap: Snapshot, pages: list[str | None]) -> None:
    if not pages:
        snap.sources["brokers"] = False
        return
    requests: dict[tuple[str, str], float] = {}
    throttle: dict[tuple[str, str], list[float]] = {}
    traffic: dict[tuple[str, int], list[Any]] = {}
    for page in pages:
        if page is None:
            continue
        try:
            families = list(text_string_to_metric_families(page))
        except ValueError as exc:
            logger.warning("monitoring: /metrics of a broker of %s is malformed: %s", cluster.public_id, exc)
            continue
        snap.brokers_up += 1
        for family in families:
            _add_family(family, snap, requests, throttle, traffic)
    snap.partition_traffic = [traffic[key] for key in sorted(traffic)]
    snap.requests = [[api, error, n] for (api, error), n in sorted(requests.items())]
    snap.throttle = [[p, q, v[0], v[1]] for (p, q), v in sorted(throttle.items())]
    snap.sources["brokers"] = snap.brokers_up == len(pages)


def _add_family(family, snap: Snapshot, requests: dict, throttle: dict, traffic: dict) -> None:
    name = family.name
    slot = TOPIC_COUNTERS.get(name)
    column = PARTITION_COUNTERS.get(name)
    for sample in family.samples:
        labels, value = sample.labels, sample.value
        if labels.get("topic", "").startswith("__"):
            continue  # internal topics (__consumer_offsets, __transaction_state) are the platform's
        if column is not None and sample.name.endswith("_total"):
            topic, partition = labels.get("topic", ""), int(labels.get("partition", "0"))
            row = traffic.setdefault((topic, partition), [topic, partition, 0, 0, 0, 0])
            row[column] += value
        elif slot is not None and sample.name.endswith("_total"):
            row = snap.topics.setdefault(
                labels.get("topic", ""), {"bytes_in": 0, "bytes_out": 0, "records_in": 0, "records_out": 0}
            )
            row[slot] += value
        elif name == "kastle_partition_bytes_stored":
            snap.stored.append([labels.get("topic", ""), int(labels.get("partition", "0")), value])
        elif name == "kastle_request_latency_seconds":
            row = snap.latency.setdefault(labels.get("api", ""), {"buckets": {}, "sum": 0.0, "count": 0.0})
            if sample.name.endswith("_bucket"):
                le = labels.get("le", "+Inf")
                row["buckets"][le] = row["buckets"].get(le, 0.0) + value
            elif sample.name.endswith("_sum"):
                row["sum"] += value
            elif sample.name.endswith("_count"):
                row["count"] += value
        elif name == "kastle_requests" and sample.name.endswith("_total"):
            key = (labels.get("api", ""), labels.get("error", ""))
            requests[key] = requests.get(key, 0) + value
        elif name in ("kastle_throttle_time_seconds", "kastle_throttled_responses") and sample.name.endswith(
            "_total"
        ):
            if labels.get("principal") == INTERNAL_USERNAME:
                continue
            row = throttle.setdefault((labels.get("principal", ""), labels.get("quota", "")), [0.0, 0.0])
            row[0 if name == "kastle_throttle_time_seconds" else 1] += value
        elif name == "kastle_connections":
            listener = labels.get("listener", "")
            snap.connections[listener] = snap.connections.get(listener, 0) + value
        elif name == "kastle_principal_connections":
            principal = labels.get("principal", "")
            if principal != INTERNAL_USERNAME:
                snap.principal_connections[principal] = snap.principal_connections.get(principal, 0) + value


# --- the Kafka protocol ---------------------------------------------------------------------------
def _collect_kafka(cluster: Cluster, snap: Snapshot) -> None:
    try:
        client = kafka_admin.admin_client(cluster)
        metadata = client.list_topics(timeout=kafka_admin.REQUEST_TIMEOUT_S)
    except (KafkaException, ServiceError) as exc:
        logger.info("monitoring: no metadata from %s: %s", cluster.public_id, exc)
        for source in ("metadata", "configs", "offsets", "consumer_groups"):
            snap.sources[source] = False
        return
    partitions: list[TopicPartition] = []
    for name, topic in sorted(metadata.topics.items()):
        if name.startswith("__") or topic.error is not None:
            continue  # internal topics (__consumer_offsets) are the platform's, not the tenant's
        for pid, p in sorted(topic.partitions.items()):
            snap.partitions.append([name, pid, p.leader, len(p.replicas), len(p.isrs)])
            partitions.append(TopicPartition(name, pid))
    snap.sources["metadata"] = True
    snap.sources["configs"] = _collect_min_isr(cluster, client, snap)
    ends = _offsets(cluster, client, partitions, OffsetSpec.latest())
    starts = _offsets(cluster, client, partitions, OffsetSpec.earliest())
    snap.sources["offsets"] = ends is not None and starts is not None
    ends, starts = ends or {}, starts or {}
    for key in sorted(set(ends) & set(starts)):
        snap.offsets.append([key[0], key[1], starts[key], ends[key]])
    snap.sources["consumer_groups"] = _collect_lag(cluster, client, snap, ends)


def _collect_min_isr(cluster, client, snap: Snapshot) -> bool:
    """Each topic's min.insync.replicas (one DescribeConfigs), for the under-min-ISR figure."""
    topics = sorted({row[0] for row in snap.partitions})
    if not topics:
        return True
    try:
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        futures = client.describe_configs(resources, request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        logger.info("monitoring: DescribeConfigs on %s failed: %s", cluster.public_id, exc)
        return False
    ok = True
    for resource, future in futures.items():
        try:
            entry = kafka_admin.result(cluster, future).get("min.insync.replicas")
            snap.min_isr[resource.name] = int(entry.value)
        except (KafkaException, ServiceError, AttributeError, TypeError, ValueError):
            ok = False
    return ok


def _offsets(cluster, client, partitions, spec) -> dict[tuple[str, int], int] | None:
    if not partitions:
        return {}
    try:
        futures = client.list_offsets(
            {tp: spec for tp in partitions}, request_timeout=kafka_admin.REQUEST_TIMEOUT_S
        )
    except KafkaException as exc:
        logger.info("monitoring: ListOffsets on %s failed: %s", cluster.public_id, exc)
        return None
    out = {}
    for tp, future in futures.items():
        try:
            out[(tp.topic, tp.partition)] = kafka_admin.result(cluster, future).offset
        except (KafkaException, ServiceError):
            continue  # a partition without a leader right now: its offsets are simply absent
    return out


def _collect_lag(cluster, client, snap: Snapshot, ends: dict[tuple[str, int], int]) -> bool:
    try:
        listing = kafka_admin.result(
            cluster, client.list_consumer_groups(request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
        )
    except (KafkaException, ServiceError) as exc:
        logger.info("monitoring: ListGroups on %s failed: %s", cluster.public_id, exc)
        return False
    groups = sorted(g.group_id for g in listing.valid)
    ok = not listing.errors
    # One OffsetFetch per group (librdkafka takes one group per call); they run concurrently.
    futures = {}
    for group in groups:
        try:
            futures[group] = client.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=kafka_admin.REQUEST_TIMEOUT_S
            )[group]
        except KafkaException:
            ok = False
    for group, future in futures.items():
        try:
            found = kafka_admin.result(cluster, future)
        except (KafkaException, ServiceError):
            ok = False
            continue
        for tp in sorted(found.topic_partitions or [], key=lambda tp: (tp.topic, tp.partition)):
            if tp.error is not None or tp.offset < 0:
                continue
            end = ends.get((tp.topic, tp.partition))
            if end is None:
                continue  # a deleted topic's stale commit, or no answer for the partition
            snap.lag.append([group, tp.topic, tp.partition, tp.offset, max(0, end - tp.offset)])
    return ok
