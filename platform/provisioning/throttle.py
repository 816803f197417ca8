"""The replication throttle of a growing cluster's moves (Kafka's, as kafka-reassign-partitions
--throttle sets it): the replicas a move adds are named in their topic's
follower.replication.throttled.replicas and the brokers receiving them fetch those at most at
follower.replication.throttled.rate, so copying logs to a new broker leaves bandwidth to clients;
replicas already in sync are not throttled. Cleared when the growth ends."""

from __future__ import annotations

from collections import defaultdict

from confluent_kafka import KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from clusters.models import Cluster
from sharedkit import coordination, kafka_admin

from . import conf

REPLICAS = "follower.replication.throttled.replicas"
RATE = "follower.replication.throttled.rate"
UNKNOWN_TOPIC_OR_PARTITION = 3  # a topic deleted meanwhile has nothing left to throttle


def throttle_moves(cluster: Cluster, state: coordination.ClusterState, moves: list) -> dict[str, list]:
    """Throttle the replicas `moves` (every move in flight: [topic, partition, target]) add; returns
    the topics and brokers throttled, for `throttle_clear`. Nothing when the throttle is off."""
    rate = conf.reassign_throttle()
    if not rate:
        return {"topics": [], "brokers": []}
    adding: dict[str, set[str]] = defaultdict(set)
    receivers: set[int] = set()
    for topic, index, target in moves:
        partition = state.partitions.get((topic, index))
        holding = set(partition.replicas) - set(partition.adding) if partition is not None else set()
        for node in target:
            if node not in holding:
                adding[topic].add(f"{index}:{node}")
                receivers.add(node)
    resources = [
        ConfigResource("TOPIC", topic, incremental_configs=[_set(REPLICAS, ",".join(sorted(pairs)))])
        for topic, pairs in sorted(adding.items())
    ]
    resources += [
        ConfigResource("BROKER", str(node), incremental_configs=[_set(RATE, str(rate))])
        for node in sorted(receivers)
    ]
    _alter(cluster, resources)
    return {"topics": sorted(adding), "brokers": sorted(receivers)}


def throttle_clear(cluster: Cluster, throttled: dict[str, list]) -> None:
    """Remove the throttle configs `throttle_moves` set (the growth ended)."""
    delete = AlterConfigOpType.DELETE
    resources = [
        ConfigResource(
            "TOPIC", t, incremental_configs=[ConfigEntry(REPLICAS, None, incremental_operation=delete)]
        )
        for t in throttled.get("topics", [])
    ]
    resources += [
        ConfigResource(
            "BROKER", str(b), incremental_configs=[ConfigEntry(RATE, None, incremental_operation=delete)]
        )
        for b in throttled.get("brokers", [])
    ]
    _alter(cluster, resources)


def _set(name: str, value: str) -> ConfigEntry:
    return ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)


def _alter(cluster: Cluster, resources: list[ConfigResource]) -> None:
    """IncrementalAlterConfigs as the cluster's internal user (a super user: broker configs are its
    to alter); ConnectionError when a broker does not take it (the step is tried again)."""
    if not resources:
        return
    admin = kafka_admin.admin_client(cluster)
    futures = admin.incremental_alter_configs(resources, request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    for resource, future in futures.items():
        try:
            future.result(kafka_admin.REQUEST_TIMEOUT_S + 5)
        except KafkaException as exc:
            error = kafka_admin.kafka_error(exc)
            if error is not None and error.code() == UNKNOWN_TOPIC_OR_PARTITION:
                continue
            raise ConnectionError(f"the throttle of {resource} was not set: {exc}") from exc
