"""Reads of topics, from the cluster's brokers through the Kafka protocol (no topic table here)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigEntry, ConfigResource, ConfigSource, OffsetSpec, ResourceType
from django.http import Http404

from clusters.models import Cluster
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error, result

from . import logdirs

NOT_FOUND = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError.TOPIC_EXCEPTION)


def _metadata(cluster: Cluster, topic: str | None = None):
    client = admin_client(cluster)
    try:
        return client.list_topics(topic=topic, timeout=kafka_admin.REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        raise kafka_admin.unavailable(cluster, kafka_error(exc)) from exc


def _user_topics(metadata) -> dict[str, Any]:
    return {name: t for name, t in metadata.topics.items() if not name.startswith("__") and t.error is None}


def topic_list(*, cluster: Cluster) -> list[dict[str, Any]]:
    topics = _user_topics(_metadata(cluster))
    return [{"name": name, "partitions_count": len(topics[name].partitions)} for name in sorted(topics)]


def total_partitions(cluster: Cluster) -> int:
    return sum(len(t.partitions) for t in _user_topics(_metadata(cluster)).values())


def topic_metadata(cluster: Cluster, name: str):
    """The broker's metadata of one tenant topic (404 for an unknown or internal one)."""
    metadata = _metadata(cluster, name)
    topic = metadata.topics.get(name)
    if topic is None or name.startswith("__"):
        raise Http404
    if topic.error is not None:
        if topic.error.code() in NOT_FOUND:
            raise Http404
        raise kafka_admin.unavailable(cluster, topic.error)
    return topic


def _offsets(cluster: Cluster, name: str, partitions: list[int], spec) -> dict[int, int]:
    client = admin_client(cluster)
    futures = client.list_offsets(
        {TopicPartition(name, p): spec for p in partitions}, request_timeout=kafka_admin.REQUEST_TIMEOUT_S
    )
    return {tp.partition: result(cluster, fut).offset for tp, fut in futures.items()}


def _configs(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    client = admin_client(cluster)
    resource = ConfigResource(ResourceType.TOPIC, name)
    futures = client.describe_configs([resource], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    entries: dict[str, ConfigEntry] = result(cluster, futures[resource])
    return [
        {
            "name": entry.name,
            "value": None if entry.is_sensitive else entry.value,
            "source": config_source_name(entry.source),
            "is_default": bool(entry.is_default),
            "read_only": bool(entry.is_read_only),
        }
        for entry in sorted(entries.values(), key=lambda e: e.name)
    ]


def topic_get(*, cluster: Cluster, name: str) -> dict[str, Any]:
    topic = topic_metadata(cluster, name)
    partitions = sorted(topic.partitions)
    earliest = _offsets(cluster, name, partitions, OffsetSpec.earliest())
    latest = _offsets(cluster, name, partitions, OffsetSpec.latest())
    sizes = logdirs.partition_sizes(cluster, name, partitions)
    rows = []
    for p in partitions:
        meta = topic.partitions[p]
        rows.append(
            {
                "partition": p,
                "leader": meta.leader,
                "replicas": list(meta.replicas),
                "isr": list(meta.isrs),
                "earliest_offset": earliest.get(p),
                "latest_offset": latest.get(p),
                "size_bytes": None if sizes is None else sizes.get(p, 0),
            }
        )
    return {
        "name": name,
        "partitions_count": len(partitions),
        "partitions": rows,
        "records": sum(max(0, (r["latest_offset"] or 0) - (r["earliest_offset"] or 0)) for r in rows),
        "size_bytes": None if sizes is None else sum(sizes.values()),
        "configs": _configs(cluster, name),
    }


def config_source_name(source: Any) -> str:
    """Kafka's name for a config's source (DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG, …): confluent-kafka
    reports the number of the DescribeConfigs wire field."""
    if isinstance(source, ConfigSource):
        return source.name
    try:
        return ConfigSource(int(source)).name
    except (TypeError, ValueError):
        return "UNKNOWN_CONFIG"
