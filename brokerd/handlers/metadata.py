"""Metadata v0-13, with topic ids; auto-creates topics when allowed; caches encoded bodies."""

from __future__ import annotations

import datetime
import struct
import uuid

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.internal_topics import is_internal
from brokerd.errors import CloseConnection
from brokerd.kafka_configs import ConfigError
from brokerd.protocol import kio_adapter
from brokerd.storage.manager import validate_topic_name

_ZERO = datetime.timedelta(0)
_I32 = struct.Struct(">i")
NO_OPS = -(2**31)
_ZERO_UUID = uuid.UUID(int=0)
# READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS
TOPIC_OPS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


def _topic_entry(ctx, topic, include_ops: bool):
    ops = TOPIC_OPS if include_ops else NO_OPS
    if include_ops and ctx.broker.authorizer is not None:  # this principal's operations
        ops = acls.authorized_operations(ctx, acls.TOPIC, topic.name)
    node = ctx.broker.node_id
    parts = tuple(
        ctx.build(
            "MetadataResponsePartition",
            error_code=ErrorCode.none,
            partition_index=i,
            leader_id=node,
            leader_epoch=0,
            replica_nodes=(node,),
            isr_nodes=(node,),
            offline_replicas=(),
        )
        for i in range(len(topic.partitions))
    )
    return ctx.build(
        "MetadataResponseTopic",
        error_code=ErrorCode.none,
        name=topic.name,
        topic_id=topic.id,
        is_internal=is_internal(topic.name),
        partitions=parts,
        topic_authorized_operations=ops,
    )


def _cluster_entries(ctx, wanted, include_ops: bool, allow_auto: bool, creating: list) -> list:
    """A cluster's topics as etcd has them: every partition's leader, leader epoch, replicas,
    ISR and offline replicas. An unknown topic answers UNKNOWN_TOPIC_OR_PARTITION, or, when it
    may be auto-created, LEADER_NOT_AVAILABLE while the controller creates it (its name goes
    into ``creating``: such an answer is not cached)."""
    topics = ctx.broker.replicas.topics(for_clients=True)
    by_id = {topic_id: name for name, (topic_id, _rows) in topics.items()}
    names = list(topics) if wanted is None else [name or by_id.get(tid) for name, tid in wanted]
    entries = []
    for i, name in enumerate(names):
        if name is None:
            entries.append(_error_entry(ctx, None, wanted[i][1], ErrorCode.unknown_topic_id))
            continue
        if not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, name):
            if wanted is not None:
                entries.append(_error_entry(ctx, name, None, ErrorCode.topic_authorization_failed))
            continue
        if name not in topics:
            error = ErrorCode.unknown_topic_or_partition
            if allow_auto and _may_auto_create(ctx, name):
                ctx.broker.replicas.auto_create(name)
                creating.append(name)
                error = ErrorCode.leader_not_available  # as Kafka: the client asks again
            entries.append(_error_entry(ctx, name, None, error))
            continue
        topic_id, rows = topics[name]
        ops = TOPIC_OPS if include_ops else NO_OPS
        if include_ops and ctx.broker.authorizer is not None:
            ops = acls.authorized_operations(ctx, acls.TOPIC, name)
        parts = tuple(
            ctx.build(
                "MetadataResponsePartition",
                error_code=ErrorCode.leader_not_available if leader < 0 else ErrorCode.none,
                partition_index=index,
                leader_id=leader,
                leader_epoch=epoch,
                replica_nodes=replicas,
                isr_nodes=isr,
                offline_replicas=offline,
            )
            for index, leader, epoch, replicas, isr, offline in rows
        )
        entries.append(
            ctx.build(
                "MetadataResponseTopic", error_code=ErrorCode.none, name=name, topic_id=topic_id,
                is_internal=is_internal(name), partitions=parts, topic_authorized_operations=ops,
            )
        )
    return entries


def _may_auto_create(ctx, name: str) -> bool:
    """A legal name, CREATE on the cluster or the topic, and room under the plan's partition cap."""
    if validate_topic_name(name) is not None:
        return False
    if not (acls.cluster_allowed(ctx, acls.CREATE) or acls.allowed(ctx, acls.CREATE, acls.TOPIC, name)):
        return False
    broker = ctx.broker
    try:
        broker.configs.check_partition_count(broker.logs.partition_count(), broker.config["num.partitions"])
    except ConfigError:
        return False
    return True


def _error_entry(ctx, name, topic_id, error):
    return ctx.build(
        "MetadataResponseTopic",
        error_code=error,
        name=name,
        topic_id=topic_id,
        is_internal=False,
        partitions=(),
        topic_authorized_operations=NO_OPS,
    )


def handle(request, ctx):
    broker = ctx.broker
    logs = broker.logs
    v = ctx.api_version
    requested = request.topics
    if v == 0 and not requested:
        requested = None
    allow_auto = broker.config["auto.create.topics.enable"] and (v < 4 or request.allow_auto_topic_creation)
    include_ops = bool(getattr(request, "include_topic_authorized_operations", False))
    wanted = None if requested is None else tuple((t.name, getattr(t, "topic_id", None)) for t in requested)
    if v < 12 and wanted and any(name is None for name, _id in wanted):
        # As Kafka (InvalidRequestException): v10-11 carry topic ids but their responses cannot hold
        # a null name (found by bench/fuzz_brokerd.py: the encoder raised)
        raise CloseConnection(f"Metadata v{v}: a topic name cannot be null before v12")
    listener = ctx.conn.listener
    key = (v, listener.name, ctx.conn.port, wanted, allow_auto, include_ops)
    authz = broker.authorizer
    include_cluster_ops = bool(getattr(request, "include_cluster_authorized_operations", False))
    if authz is not None:  # what a principal sees depends on its ACLs
        key = (*key, acls.principal_of(ctx.conn.principal), acls.client_host(ctx.conn), authz.generation,
               include_cluster_ops)
    cache = broker.metadata_cache
    if cache.get("generation") != logs.generation:
        cache.clear()
        cache["generation"] = logs.generation
    body = cache.get(key)
    if body is not None:
        return _throttled(ctx, body)

    entries = []
    creating: list[str] = []  # topics being auto-created in the cluster
    if broker.replicas is not None:
        entries = _cluster_entries(ctx, wanted, include_ops, allow_auto, creating)
    elif wanted is None:
        entries = [
            _topic_entry(ctx, t, include_ops)
            for t in logs.topics.values()
            if authz is None or acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, t.name)  # hidden
        ]
    else:
        for name, topic_id in wanted:
            if name is None:
                topic = logs.by_id.get(topic_id) if topic_id is not None else None
                if topic is None:
                    entries.append(_error_entry(ctx, None, topic_id, ErrorCode.unknown_topic_id))
                elif not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, topic.name):
                    entries.append(_error_entry(ctx, None, topic_id, ErrorCode.topic_authorization_failed))
                else:
                    entries.append(_topic_entry(ctx, topic, include_ops))
                continue
            if not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, name):
                entries.append(_error_entry(ctx, name, None, ErrorCode.topic_authorization_failed))
                continue
            topic = logs.topics.get(name)
            if topic is None:
                if validate_topic_name(name) is not None:
                    entries.append(_error_entry(ctx, name, None, ErrorCode.invalid_topic_exception))
                    continue
                if allow_auto and not (
                    acls.cluster_allowed(ctx, acls.CREATE) or acls.allowed(ctx, acls.CREATE, acls.TOPIC, name)
                ):  # auto-creation needs CREATE on the cluster or the topic
                    entries.append(_error_entry(ctx, name, None, ErrorCode.topic_authorization_failed))
                    continue
                if allow_auto:
                    partitions = broker.config["num.partitions"]
                    try:  # the plan's partition cap applies to auto-creation too
                        broker.configs.check_partition_count(logs.partition_count(), partitions)
                    except ConfigError:
                        entries.append(_error_entry(ctx, name, None, ErrorCode.policy_violation))
                        continue
                    topic = logs.create_topic(name, partitions, {})
                else:
                    entries.append(_error_entry(ctx, name, None, ErrorCode.unknown_topic_or_partition))
                    continue
            entries.append(_topic_entry(ctx, topic, include_ops))
    resp = ctx.response(
        throttle_time=_ZERO,
        error_code=ErrorCode.none,  # v13: a top-level error only asks the client to rebootstrap
        brokers=tuple(
            ctx.build("MetadataResponseBroker", node_id=node_id, host=host, port=port, rack=rack)
            for node_id, host, port, rack in broker.cluster_brokers(listener, ctx.conn.port, departed=True)
        ),
        cluster_id=broker.cluster_id,
        controller_id=broker.controller_id(),
        topics=tuple(entries),
        cluster_authorized_operations=(
            acls.authorized_operations(ctx, acls.CLUSTER, acls.CLUSTER_NAME)
            if include_cluster_ops and authz is not None else NO_OPS
        ),
    )
    body = kio_adapter.encode(resp)
    if cache.get("generation") != logs.generation:
        cache.clear()
        cache["generation"] = logs.generation
    if len(cache) < 512 and not creating:
        cache[key] = body
    return _throttled(ctx, body)


def _throttled(ctx, body: bytes) -> bytes:
    """The (cached) body with the request-time quota's throttle in throttle_time_ms (v3+: first)."""
    ms = ctx.request_throttle() if ctx.api_version >= 3 else 0
    return _I32.pack(ms) + body[4:] if ms else body


def _described_topics(broker) -> dict:
    """name -> (topic id, partition rows) of every topic: the etcd view in a cluster, the local
    logs on a standalone broker (which leads every partition alone)."""
    if broker.replicas is not None:
        return broker.replicas.topics()
    node = broker.node_id
    return {
        name: (topic.id, [(i, node, 0, (node,), (node,), ()) for i in range(len(topic.partitions))])
        for name, topic in broker.logs.topics.items()
    }


def _paged_topic(ctx, name, topic_id, rows, start: int, limit: int):
    """One topic's partitions from ``start``, at most ``limit`` of them, and the index to resume
    at (-1 when the topic is complete), as Kafka pages DescribeTopicPartitions."""
    chosen = rows[start : start + limit]
    resume = start + limit if start + limit < len(rows) else -1
    ops = TOPIC_OPS if ctx.broker.authorizer is None else acls.authorized_operations(ctx, acls.TOPIC, name)
    parts = tuple(
        ctx.build(
            "DescribeTopicPartitionsResponsePartition",
            error_code=ErrorCode.leader_not_available if leader < 0 else ErrorCode.none,
            partition_index=index, leader_id=leader, leader_epoch=epoch, replica_nodes=tuple(replicas),
            isr_nodes=tuple(isr), eligible_leader_replicas=None, last_known_elr=None,
            offline_replicas=tuple(offline),
        )
        for index, leader, epoch, replicas, isr, offline in chosen
    )
    topic = ctx.build("DescribeTopicPartitionsResponseTopic", error_code=ErrorCode.none, name=name,
                      topic_id=topic_id, is_internal=is_internal(name), partitions=parts,
                      topic_authorized_operations=ops)
    return topic, resume


def describe_topic_partitions(request, ctx):
    """DescribeTopicPartitions (KIP-966), paged by response_partition_limit and a cursor.

    As Kafka: topics in name order; no topics named means every topic the caller may describe
    (unknown or hidden ones are then left out); a named topic the caller may not describe answers
    TOPIC_AUTHORIZATION_FAILED, an unknown one UNKNOWN_TOPIC_OR_PARTITION; the limit is capped by
    max.request.partition.size.limit and at least 1; next_cursor names where to resume."""
    broker = ctx.broker
    names = [t.name for t in request.topics]
    fetch_all = not names
    cursor = request.cursor
    if cursor is not None and not fetch_all and cursor.topic_name not in names:
        raise CloseConnection("DescribeTopicPartitions: the topic list must contain the cursor topic")
    start_name = cursor.topic_name if cursor is not None else ""
    topics = _described_topics(broker)
    candidates = sorted({n for n in (topics if fetch_all else names) if n >= start_name})
    denied, allowed = [], []
    for name in candidates:
        if acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, name):
            allowed.append(name)
        elif not fetch_all:
            denied.append(ctx.build("DescribeTopicPartitionsResponseTopic",
                                    error_code=ErrorCode.topic_authorization_failed, name=name,
                                    topic_id=_ZERO_UUID, is_internal=False, partitions=()))
    remaining = max(min(broker.config["max.request.partition.size.limit"],
                        request.response_partition_limit), 1)
    entries, next_cursor = [], None
    for name in allowed:
        if remaining <= 0:  # every partition so far fitted: resume at this topic's start
            next_cursor = ctx.build("Cursor", topic_name=name, partition_index=0)
            break
        if name not in topics:
            if not fetch_all:
                entries.append(ctx.build("DescribeTopicPartitionsResponseTopic",
                                         error_code=ErrorCode.unknown_topic_or_partition, name=name,
                                         topic_id=_ZERO_UUID, is_internal=False, partitions=()))
            continue
        start = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        topic_id, rows = topics[name]
        entry, resume = _paged_topic(ctx, name, topic_id, rows, max(start, 0), remaining)
        entries.append(entry)
        if resume >= 0:
            next_cursor = ctx.build("Cursor", topic_name=name, partition_index=resume)
            break
        remaining -= len(entry.partitions)
    return ctx.response(throttle_time=_ZERO, topics=(*entries, *denied), next_cursor=next_cursor)
