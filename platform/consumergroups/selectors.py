"""Reads of consumer groups, from the cluster's brokers through the Kafka protocol (no table here).

`sharedkit.kafka_admin` (confluent-kafka's AdminClient with the cluster's internal credential)
answers, so the REST API and a tenant's own admin client see the same groups and offsets;
librdkafka decodes the consumer protocol's member assignments. The Kafka-error mapping here is
shared with the writes (`services.py`).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from django.http import Http404

from clusters.models import Cluster
from controlplane.errors import Conflict
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error, result

from .wire import consumer_group_epochs

STATES = {
    ConsumerGroupState.UNKNOWN: "Unknown",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.EMPTY: "Empty",
}
#: Per-request errors that mean "the group has (or just got) members" (a race with our check).
MEMBER_ERRORS = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.NON_EMPTY_GROUP,
}


class GroupNotEmpty(Conflict):
    code = "group_not_empty"


def group_state_name(value: Any) -> str:
    return STATES.get(value, str(getattr(value, "name", value)))


def _type(value: Any) -> str:
    name = getattr(value, "name", None)
    return name.lower() if name else "unknown"


def _host(host: str | None) -> str:
    return (host or "").lstrip("/")  # Kafka reports the client's address as "/127.0.0.1"


def raise_for(cluster: Cluster, exc: KafkaException, group_id: str) -> None:
    """A Kafka error of a group request -> the API's errors."""
    err = kafka_error(exc)
    if err is None:
        raise exc
    code = err.code()
    if code in (KafkaError.GROUP_ID_NOT_FOUND, KafkaError.INVALID_GROUP_ID):
        raise Http404 from exc
    if code in MEMBER_ERRORS:
        raise GroupNotEmpty(
            f"Consumer group {group_id!r} has active members; stop its consumers first.",
            details={"group_id": group_id},
        ) from exc
    if code in kafka_admin.TRANSPORT_ERRORS or code in (
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
    ):
        raise kafka_admin.unavailable(cluster, err) from exc
    raise Conflict(
        f"The cluster refused the request: {err.str()}",
        code="kafka_error",
        details={"kafka_error": err.name()},
    ) from exc


def admin_call(cluster: Cluster, future, group_id: str):
    try:
        return result(cluster, future)
    except KafkaException as exc:
        raise_for(cluster, exc, group_id)


def group_list(*, cluster: Cluster) -> list[dict[str, Any]]:
    """Every consumer group the cluster knows, by id."""
    client = admin_client(cluster)
    listing = result(cluster, client.list_consumer_groups(request_timeout=kafka_admin.REQUEST_TIMEOUT_S))
    if listing.errors and not listing.valid:
        err = kafka_error(listing.errors[0]) if isinstance(listing.errors[0], KafkaException) else None
        raise kafka_admin.unavailable(cluster, err)
    return sorted(
        (
            {
                "group_id": g.group_id,
                "state": group_state_name(g.state),
                "type": _type(getattr(g, "type", None)),
                "simple": bool(g.is_simple_consumer_group),
            }
            for g in listing.valid
        ),
        key=lambda row: row["group_id"],
    )


def group_describe(cluster: Cluster, group_id: str):
    client = admin_client(cluster)
    futures = client.describe_consumer_groups([group_id], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    return admin_call(cluster, futures[group_id], group_id)


def committed_offsets(cluster: Cluster, group_id: str) -> dict[tuple[str, int], TopicPartition]:
    client = admin_client(cluster)
    futures = client.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_id)], request_timeout=kafka_admin.REQUEST_TIMEOUT_S
    )
    found = admin_call(cluster, futures[group_id], group_id)
    return {
        (tp.topic, tp.partition): tp
        for tp in found.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def list_offsets(cluster: Cluster, specs: dict[tuple[str, int], Any]) -> dict[tuple[str, int], int | None]:
    """{(topic, partition): offset}; None where the broker has no answer (e.g. a deleted topic)."""
    if not specs:
        return {}
    client = admin_client(cluster)
    futures = client.list_offsets(
        {TopicPartition(t, p): spec for (t, p), spec in specs.items()},
        request_timeout=kafka_admin.REQUEST_TIMEOUT_S,
    )
    out: dict[tuple[str, int], int | None] = {}
    for tp, future in futures.items():
        try:
            out[(tp.topic, tp.partition)] = result(cluster, future).offset
        except KafkaException:
            out[(tp.topic, tp.partition)] = None
    return out


def group_get(*, cluster: Cluster, group_id: str) -> dict[str, Any]:
    """State, members and their assignments, and committed offset and lag per partition."""
    desc = group_describe(cluster, group_id)
    committed = committed_offsets(cluster, group_id)
    if desc.state == ConsumerGroupState.DEAD and not desc.members and not committed:
        raise Http404  # Kafka describes an unknown group as Dead and empty
    owner: dict[tuple[str, int], Any] = {}
    members = []
    for m in sorted(desc.members, key=lambda m: (m.client_id, m.member_id)):
        assigned = sorted((tp.topic, tp.partition) for tp in (m.assignment.topic_partitions or []))
        by_topic: dict[str, list[int]] = {}
        for topic, partition in assigned:
            by_topic.setdefault(topic, []).append(partition)
            owner[(topic, partition)] = m
        members.append(
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": _host(m.host),
                "group_instance_id": m.group_instance_id or None,
                "assignments": [{"topic": t, "partitions": ps} for t, ps in sorted(by_topic.items())],
            }
        )
    keys = sorted(set(committed) | set(owner))
    latest = list_offsets(cluster, dict.fromkeys(keys, OffsetSpec.latest()))
    offsets = []
    for key in keys:
        tp = committed.get(key)
        end = latest.get(key)
        member = owner.get(key)
        current = tp.offset if tp is not None else None
        offsets.append(
            {
                "topic": key[0],
                "partition": key[1],
                "committed_offset": current,
                "latest_offset": end,
                "lag": max(0, end - current) if current is not None and end is not None else None,
                "member_id": member.member_id if member is not None else None,
                "client_id": member.client_id if member is not None else None,
                "metadata": (tp.metadata or None) if tp is not None else None,
            }
        )
    lags = [row["lag"] for row in offsets if row["lag"] is not None]
    coordinator = desc.coordinator
    kind = _type(getattr(desc, "type", None))
    epochs = consumer_group_epochs(cluster, group_id) if kind == "consumer" else None
    for member in members:
        known = (epochs or {}).get("members", {}).get(member["member_id"])
        member["member_epoch"] = known["member_epoch"] if known else None
        member["target_assignments"] = known["target"] if known else None
        classic = kind != "consumer" or bool(known and known["classic"])
        member["protocol"] = "classic" if classic else "consumer"
    return {
        "group_id": desc.group_id,
        "state": group_state_name(desc.state),
        "type": kind,
        "protocol": "consumer" if kind == "consumer" else "classic",
        "group_epoch": epochs["group_epoch"] if epochs else None,
        "assignment_epoch": epochs["assignment_epoch"] if epochs else None,
        "simple": bool(desc.is_simple_consumer_group),
        "partition_assignor": desc.partition_assignor or (epochs or {}).get("assignor"),
        "coordinator": (
            {"id": coordinator.id, "host": coordinator.host, "port": coordinator.port}
            if coordinator is not None
            else None
        ),
        "members": members,
        "offsets": offsets,
        "total_lag": sum(lags),
    }
