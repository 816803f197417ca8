"""Topics, managed on the cluster's brokers through the Kafka protocol (no topic table here).

Writes (reads are `selectors.py`) go through `sharedkit.kafka_admin` with the cluster's internal
credential.
Requests are validated here first (name, partitions, configs, plan limits) so that a 400
names the field; the broker enforces the same rules (and the plan limits in its config) for
tenants' own admin clients.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from django.http import Http404

from accounts.audit import SYSTEM, Actor, audit_record
from acls.bindings import PLATFORM_TOPICS
from clusters.models import Cluster
from controlplane.errors import Conflict, LimitExceeded, ValidationFailed
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error, result

from . import selectors
from .selectors import topic_metadata

NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_NAME_LENGTH = 249
MAX_PARTITIONS_PER_REQUEST = 1000
INVALID = "The topic is invalid."


class TopicExists(Conflict):
    code = "topic_already_exists"


# --- validation ---------------------------------------------------------------------------------
def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationFailed(INVALID, details={"name": ["This field is required."]})
    problem = None
    if len(name) > MAX_NAME_LENGTH:
        problem = f"Use at most {MAX_NAME_LENGTH} characters."
    elif name in (".", ".."):
        problem = "'.' and '..' are not topic names."
    elif not NAME_RE.match(name):
        problem = "Use only ASCII letters, digits, '.', '_' and '-'."
    elif name.startswith("__"):
        problem = "Names starting with '__' are reserved for internal topics."
    elif name in PLATFORM_TOPICS:
        problem = f"'{name}' is reserved: the cluster's Schema Registry keeps its schemas there."
    if problem:
        raise ValidationFailed(INVALID, details={"name": [problem]})
    return name


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def validate_configs(cluster: Cluster, configs: Any, *, allow_null: bool = False) -> dict[str, str | None]:
    """{key: canonical string} (None: reset to default, PATCH only); 400 naming `configs.<key>`."""
    from brokerd.kafka_configs import ConfigError, validate_topic_config

    if configs is None:
        return {}
    if not isinstance(configs, dict):
        raise ValidationFailed(
            INVALID, details={"configs": ["Expected an object of config names to values."]}
        )
    plan = cluster.plan_limits
    out: dict[str, str | None] = {}
    errors: dict[str, list[str]] = {}
    for key, raw in configs.items():
        if raw is None and allow_null:
            try:
                validate_topic_config(key, "0" if key != "cleanup.policy" else "delete")
            except ConfigError as exc:
                if "Unknown topic config" in exc.message:
                    errors[key] = [exc.message]
                    continue
            out[key] = None
            continue
        if isinstance(raw, dict | list) or raw is None:
            errors[key] = ["Expected a string, number or boolean."]
            continue
        try:
            value = validate_topic_config(key, _config_value(raw))
        except ConfigError as exc:
            errors[key] = [exc.message]
            continue
        if key == "retention.ms" and plan.max_retention_ms >= 0:
            ms = int(value)
            if ms < 0 or ms > plan.max_retention_ms:
                errors[key] = [
                    f"The {plan.name} plan allows retention.ms of at most {plan.max_retention_ms} "
                    f"({plan.max_retention_ms // 86_400_000} days); unlimited (-1) is not available."
                ]
                continue
        if key == "max.message.bytes" and int(value) > plan.max_message_bytes:
            errors[key] = [
                f"The {plan.name} plan allows max.message.bytes of at most {plan.max_message_bytes}."
            ]
            continue
        out[key] = value
    if errors:
        raise ValidationFailed(INVALID, details={"configs": errors})
    return out


def validate_partitions(value: Any, *, field: str = "partitions") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(INVALID, details={field: ["A whole number is required."]})
    if value < 1:
        raise ValidationFailed(INVALID, details={field: ["Ensure this value is at least 1."]})
    if value > MAX_PARTITIONS_PER_REQUEST:
        raise ValidationFailed(
            INVALID, details={field: [f"Ensure this value is at most {MAX_PARTITIONS_PER_REQUEST}."]}
        )
    return value


# --- writes ---------------------------------------------------------------------------------------
def _check_partition_limit(cluster: Cluster, adding: int) -> None:
    limit = cluster.plan_limits.max_partitions
    current = selectors.total_partitions(cluster)
    if current + adding > limit:
        raise LimitExceeded(
            f"The {cluster.plan} plan allows {limit} partitions per cluster; the cluster has {current} "
            f"and this would add {adding}.",
            details={"limit": limit, "current": current, "requested": adding, "plan": cluster.plan},
        )


def _raise_for(cluster: Cluster, exc: KafkaException, *, name: str, field: str = "configs") -> None:
    err = kafka_error(exc)
    if err is None:
        raise exc
    code = err.code()
    message = err.str()
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        raise TopicExists(f"A topic named {name!r} already exists.", details={"name": name}) from exc
    if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
        raise Http404 from exc
    if code == KafkaError.TOPIC_EXCEPTION:
        raise ValidationFailed(INVALID, details={"name": [message]}) from exc
    if code in (KafkaError.INVALID_PARTITIONS, KafkaError.INVALID_REPLICATION_FACTOR):
        raise ValidationFailed(INVALID, details={"partitions": [message]}) from exc
    if code == KafkaError.INVALID_CONFIG:
        raise ValidationFailed(INVALID, details={field: [message]}) from exc
    if code == KafkaError.POLICY_VIOLATION:
        if "partition" in message.lower():
            raise LimitExceeded(message, details={"plan": cluster.plan}) from exc
        raise ValidationFailed(INVALID, details={field: [message]}) from exc
    if code in kafka_admin.TRANSPORT_ERRORS:
        raise kafka_admin.unavailable(cluster, err) from exc
    raise Conflict(
        f"The cluster refused the request: {message}", code="kafka_error", details={"kafka_error": err.name()}
    ) from exc


def _audit(cluster: Cluster, actor: Actor, action: str, name: str, details: dict[str, Any]) -> None:
    audit_record(
        organization=cluster.organization,
        actor=actor,
        action=action,
        target_type="topic",
        target_id=f"{cluster.public_id}/{name}",
        target_label=name,
        details={"cluster": cluster.public_id, **details},
    )


def validate_all(**checks: Callable[[], Any]) -> dict[str, Any]:
    """Run every field's check and report every bad field at once (one 400 naming them all)."""
    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for field, check in checks.items():
        try:
            values[field] = check()
        except ValidationFailed as exc:
            details.update(exc.details)
    if details:
        raise ValidationFailed(INVALID, details=details)
    return values


def topic_create(
    *, cluster: Cluster, name: Any, partitions: Any = 1, configs: Any = None, actor: Actor = SYSTEM
) -> dict[str, Any]:
    checked = validate_all(
        name=lambda: validate_name(name),
        partitions=lambda: validate_partitions(partitions),
        configs=lambda: validate_configs(cluster, configs),
    )
    name, partitions, values = checked["name"], checked["partitions"], checked["configs"]
    client = admin_client(cluster)
    _check_partition_limit(cluster, partitions)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=-1, config=dict(values))
    futures = client.create_topics([topic], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    try:
        result(cluster, futures[name])
    except KafkaException as exc:
        _raise_for(cluster, exc, name=name)
    _audit(cluster, actor, "topic.create", name, {"partitions": partitions, "configs": values})
    return {"name": name, "partitions_count": partitions, "configs": values}


def topic_update(
    *, cluster: Cluster, name: str, configs: Any = None, partitions: Any = None, actor: Actor = SYSTEM
) -> None:
    client = admin_client(cluster)
    values = validate_configs(cluster, configs, allow_null=True)
    topic = topic_metadata(cluster, name)
    current = len(topic.partitions)
    if partitions is not None:
        partitions = validate_partitions(partitions)
        if partitions < current:
            raise ValidationFailed(
                INVALID,
                details={"partitions": [f"The topic has {current} partitions; the count can only grow."]},
            )
    if values:
        resource = ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(
                    key,
                    value,
                    incremental_operation=(
                        AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
                    ),
                )
                for key, value in values.items()
            ],
        )
        futures = client.incremental_alter_configs([resource], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
        try:
            result(cluster, futures[resource])
        except KafkaException as exc:
            _raise_for(cluster, exc, name=name)
    if partitions is not None and partitions > current:
        _check_partition_limit(cluster, partitions - current)
        futures = client.create_partitions(
            [NewPartitions(name, partitions)], request_timeout=kafka_admin.REQUEST_TIMEOUT_S
        )
        try:
            result(cluster, futures[name])
        except KafkaException as exc:
            _raise_for(cluster, exc, name=name, field="partitions")
    details: dict[str, Any] = {}
    if values:
        details["configs"] = values
    if partitions is not None and partitions != current:
        details["partitions"] = {"from": current, "to": partitions}
    if details:
        _audit(cluster, actor, "topic.update", name, details)


def topic_delete(*, cluster: Cluster, name: str, actor: Actor = SYSTEM) -> None:
    client = admin_client(cluster)
    topic_metadata(cluster, name)
    futures = client.delete_topics([name], request_timeout=kafka_admin.REQUEST_TIMEOUT_S)
    try:
        result(cluster, futures[name])
    except KafkaException as exc:
        _raise_for(cluster, exc, name=name)
    _audit(cluster, actor, "topic.delete", name, {})
