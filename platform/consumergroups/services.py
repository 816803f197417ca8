"""Consumer groups, managed on the cluster's brokers through the Kafka protocol (no table here).

As with topics, the broker is the source of truth: reads and writes go through
`sharedkit.kafka_admin` (confluent-kafka's AdminClient with the cluster's internal
credential), so the REST API and a tenant's own admin client see the same groups and offsets.
librdkafka decodes the consumer protocol's member assignments for us.

Offsets are reset only while a group has no members (Kafka's rule: a live member would
overwrite them with its next commit); the broker refuses the commit otherwise, which we map
to the same 409 for the race between our check and the write.
"""

from __future__ import annotations

from datetime import UTC
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
from django.utils.dateparse import parse_datetime

from accounts.audit import SYSTEM, Actor, audit_record
from clusters.models import Cluster
from controlplane.errors import Conflict, ValidationFailed
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error, result

RESET_TARGETS = ("earliest", "latest", "timestamp", "offset")
INVALID = "The offset reset is invalid."
MAX_GROUP_ID_LENGTH = 255

#: Kafka's names for group states (as kafka-consumer-groups.sh and the Java AdminClient show them).
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


def _state(value: Any) -> str:
    return STATES.get(value, str(getattr(value, "name", value)))


def _type(value: Any) -> str:
    name = getattr(value, "name", None)
    return name.lower() if name else "unknown"


def _host(host: str | None) -> str:
    return (host or "").lstrip("/")  # Kafka reports the client's address as "/127.0.0.1"


def _raise(cluster: Cluster, exc: KafkaException, group_id: str) -> None:
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


def _call(cluster: Cluster, future, group_id: str):
    try:
        return result(cluster, future)
    except KafkaException as exc:
        _raise(cluster, exc, group_id)


# --- reads ----------------------------------------------------------------------------------------
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
                "state": _state(g.state),
                "type": _type(getattr(g, "type", None)),
                "simple": bool(g.is_simple_consumer_group),
            }
            for g in listing.valid
        ),
        key=lambda row: row["group_id"],
    )


def _describe(cluster: Cluster, group_id: str):
    client = admin_client(cluster)
    futures = client.describe_consumer_groups([group_id], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    return _call(cluster, futures[group_id], group_id)


def _committed(cluster: Cluster, group_id: str) -> dict[tuple[str, int], TopicPartition]:
    client = admin_client(cluster)
    futures = client.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_id)], request_timeout=kafka_admin.REQUEST_TIMEOUT_S
    )
    found = _call(cluster, futures[group_id], group_id)
    return {
        (tp.topic, tp.partition): tp
        for tp in found.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def _list_offsets(cluster: Cluster, specs: dict[tuple[str, int], Any]) -> dict[tuple[str, int], int | None]:
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
    desc = _describe(cluster, group_id)
    committed = _committed(cluster, group_id)
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
    latest = _list_offsets(cluster, dict.fromkeys(keys, OffsetSpec.latest()))
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
    return {
        "group_id": desc.group_id,
        "state": _state(desc.state),
        "type": _type(getattr(desc, "type", None)),
        "simple": bool(desc.is_simple_consumer_group),
        "partition_assignor": desc.partition_assignor or None,
        "coordinator": (
            {"id": coordinator.id, "host": coordinator.host, "port": coordinator.port}
            if coordinator is not None
            else None
        ),
        "members": members,
        "offsets": offsets,
        "total_lag": sum(lags),
    }


# --- writes ---------------------------------------------------------------------------------------
def _audit(cluster: Cluster, actor: Actor, action: str, group_id: str, details: dict[str, Any]) -> None:
    audit_record(
        organization=cluster.organization,
        actor=actor,
        action=action,
        target_type="consumer_group",
        target_id=f"{cluster.public_id}/{group_id}"[:64],  # the column's width; details has it whole
        target_label=group_id[:200],
        details={"cluster": cluster.public_id, "group_id": group_id, **details},
    )


def _timestamp_ms(value: Any) -> int:
    text = str(value).strip() if value is not None else ""
    if text.lstrip("-").isdigit():
        ms = int(text)
    else:
        parsed = parse_datetime(text) if text else None
        if parsed is None:
            raise ValidationFailed(
                INVALID,
                details={
                    "value": ["Give a time as milliseconds since the epoch or an ISO 8601 date and time."]
                },
            )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    if ms < 0:
        raise ValidationFailed(INVALID, details={"value": ["The time must not be before 1970."]})
    return ms


def _offset_value(value: Any) -> int:
    text = str(value).strip() if value is not None else ""
    if not text.isdigit():
        raise ValidationFailed(
            INVALID, details={"value": ["Give the offset as a whole number of 0 or more."]}
        )
    return int(text)


def _topic_partitions(cluster: Cluster, topic: str) -> list[int]:
    client = admin_client(cluster)
    try:
        metadata = client.list_topics(topic, timeout=kafka_admin.REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        raise kafka_admin.unavailable(cluster, kafka_error(exc)) from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or topic.startswith("__") or not found.partitions:
        if (
            found is not None
            and found.error is not None
            and found.error.code() in kafka_admin.TRANSPORT_ERRORS
        ):
            raise kafka_admin.unavailable(cluster, found.error)
        raise ValidationFailed(INVALID, details={"topic": [f"The cluster has no topic named {topic!r}."]})
    return sorted(found.partitions)


def _targets(
    cluster: Cluster,
    committed: dict[tuple[str, int], TopicPartition],
    topic: str | None,
    partitions: list[int] | None,
) -> list[tuple[str, int]]:
    if not topic:
        if partitions:
            raise ValidationFailed(
                INVALID, details={"partitions": ["Name the topic these partitions are of."]}
            )
        if not committed:
            raise ValidationFailed(
                INVALID, details={"topic": ["The group has no committed offsets yet; name a topic to reset."]}
            )
        return sorted(committed)
    existing = _topic_partitions(cluster, topic)
    if not partitions:
        return [(topic, p) for p in existing]
    unknown = sorted(set(partitions) - set(existing))
    if unknown:
        raise ValidationFailed(
            INVALID,
            details={"partitions": [f"{topic!r} has partitions 0 to {len(existing) - 1}; not {unknown}."]},
        )
    return [(topic, p) for p in sorted(set(partitions))]


def reset_offsets(
    *,
    cluster: Cluster,
    group_id: str,
    to: str,
    value: Any = None,
    topic: str | None = None,
    partitions: list[int] | None = None,
    dry_run: bool = False,
    actor: Actor = SYSTEM,
) -> dict[str, Any]:
    """Set the group's committed offsets (only while it has no members); a dry run only computes them.

    `to`: earliest | latest | timestamp (value: ms since the epoch or ISO 8601; the first offset at
    or after it, else the end) | offset (value: an offset, clamped to the partition's range).
    Without `topic`, every partition the group has committed offsets for.
    """
    if to not in RESET_TARGETS:
        raise ValidationFailed(INVALID, details={"to": [f"Choose one of: {', '.join(RESET_TARGETS)}."]})
    timestamp = _timestamp_ms(value) if to == "timestamp" else None
    wanted = _offset_value(value) if to == "offset" else None
    desc = _describe(cluster, group_id)
    if desc.members:
        raise GroupNotEmpty(
            f"Consumer group {group_id!r} has {len(desc.members)} active member(s); offsets can be reset "
            "only while it has none. Stop its consumers first.",
            details={"group_id": group_id, "state": _state(desc.state), "members": len(desc.members)},
        )
    committed = _committed(cluster, group_id)
    targets = _targets(cluster, committed, topic, partitions)

    if to == "earliest":
        new = _list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.earliest()))
    elif to == "latest":
        new = _list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.latest()))
    elif to == "timestamp":
        assert timestamp is not None
        found = _list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.for_timestamp(timestamp)))
        ends = _list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.latest()))
        new = {k: (ends.get(k) if v is None or v < 0 else v) for k, v in found.items()}
    else:
        assert wanted is not None
        lows = _list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.earliest()))
        highs = _list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.latest()))
        new = {
            k: (None if lows.get(k) is None or highs.get(k) is None else min(max(wanted, lows[k]), highs[k]))  # type: ignore[type-var]
            for k in targets
        }
    missing = sorted(f"{t}[{p}]" for (t, p) in targets if new.get((t, p)) is None)
    if missing:
        raise kafka_admin.ClusterUnavailable(
            f"The cluster did not report offsets for {', '.join(missing[:10])}; try again in a few seconds.",
            details={"partitions": missing[:100]},
        )
    rows = [
        {
            "topic": t,
            "partition": p,
            "previous_offset": committed[(t, p)].offset if (t, p) in committed else None,
            "new_offset": new[(t, p)],
        }
        for (t, p) in targets
    ]
    if not dry_run:
        client = admin_client(cluster)
        request = ConsumerGroupTopicPartitions(
            group_id, [TopicPartition(r["topic"], r["partition"], r["new_offset"]) for r in rows]
        )
        futures = client.alter_consumer_group_offsets(
            [request], request_timeout=kafka_admin.REQUEST_TIMEOUT_S
        )
        done = _call(cluster, futures[group_id], group_id)
        for tp in done.topic_partitions or []:
            if tp.error is not None:
                _raise(cluster, KafkaException(tp.error), group_id)
        _audit(
            cluster,
            actor,
            "consumer_group.reset_offsets",
            group_id,
            {
                "to": to,
                **({"value": str(value)} if to in ("timestamp", "offset") else {}),
                "offsets": [
                    {k: r[k] for k in ("topic", "partition", "previous_offset", "new_offset")}
                    for r in rows[:200]
                ],
            },
        )
    return {"group_id": group_id, "dry_run": dry_run, "to": to, "offsets": rows}


def group_delete(*, cluster: Cluster, group_id: str, actor: Actor = SYSTEM) -> None:
    """Delete an empty group and its committed offsets (409 while it has members)."""
    client = admin_client(cluster)
    futures = client.delete_consumer_groups([group_id], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    _call(cluster, futures[group_id], group_id)
    _audit(cluster, actor, "consumer_group.delete", group_id, {})
