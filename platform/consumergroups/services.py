"""Consumer groups, managed on the cluster's brokers through the Kafka protocol (no table here).

As with topics, the broker is the source of truth: writes (here) and reads (`selectors.py`) go through
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
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from django.utils.dateparse import parse_datetime

from accounts.audit import SYSTEM, Actor, audit_record
from clusters.models import Cluster
from controlplane.errors import ValidationFailed
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error

from .selectors import (
    GroupNotEmpty,
    admin_call,
    committed_offsets,
    group_describe,
    group_state_name,
    list_offsets,
    raise_for,
)

RESET_TARGETS = ("earliest", "latest", "timestamp", "offset")
INVALID = "The offset reset is invalid."
MAX_GROUP_ID_LENGTH = 255

#: Kafka's names for group states (as kafka-consumer-groups.sh and the Java AdminClient show them).
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


def group_offsets_reset(
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
    desc = group_describe(cluster, group_id)
    if desc.members:
        raise GroupNotEmpty(
            f"Consumer group {group_id!r} has {len(desc.members)} active member(s); offsets can be reset "
            "only while it has none. Stop its consumers first.",
            details={
                "group_id": group_id,
                "state": group_state_name(desc.state),
                "members": len(desc.members),
            },
        )
    committed = committed_offsets(cluster, group_id)
    targets = _targets(cluster, committed, topic, partitions)

    if to == "earliest":
        new = list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.earliest()))
    elif to == "latest":
        new = list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.latest()))
    elif to == "timestamp":
        assert timestamp is not None
        found = list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.for_timestamp(timestamp)))
        ends = list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.latest()))
        new = {k: (ends.get(k) if v is None or v < 0 else v) for k, v in found.items()}
    else:
        assert wanted is not None
        lows = list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.earliest()))
        highs = list_offsets(cluster, dict.fromkeys(targets, OffsetSpec.latest()))
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
        done = admin_call(cluster, futures[group_id], group_id)
        for tp in done.topic_partitions or []:
            if tp.error is not None:
                raise_for(cluster, KafkaException(tp.error), group_id)
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
    admin_call(cluster, futures[group_id], group_id)
    _audit(cluster, actor, "consumer_group.delete", group_id, {})
