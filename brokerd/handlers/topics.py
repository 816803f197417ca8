"""CreateTopics v2-7 (with validate_only) and DeleteTopics v1-6 (by name or id).

CreateTopics validates configs as AlterConfigs does (brokerd/kafka_configs.py): an unknown or invalid
config is INVALID_CONFIG naming the key, a value over a plan cap (``kastle.plan.*``) is
POLICY_VIOLATION, and so is a topic whose partitions would take the cluster over
``kastle.plan.max.partitions`` (counting the earlier topics of the same request).
"""

from __future__ import annotations

import datetime
import uuid

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.internal_topics import is_internal
from brokerd.coordination.metadata import TopicExistsError, UnknownTopicError
from brokerd.coordination.placement import AssignmentError, PlacementError, check_assignment
from brokerd.kafka_configs import ConfigError, InvalidConfig, TopicConfig, validate_topic_configs
from brokerd.storage.manager import validate_topic_name

_ZERO = datetime.timedelta(0)


def _config_entries(ctx, topic_configs: dict[str, str]):
    """Resulting configs (v5+): overrides plus the defaults they apply on."""
    entries = []
    for described in TopicConfig(ctx.broker.configs, topic_configs).describe():
        entries.append(
            ctx.build(
                "CreatableTopicConfigs",
                name=described.name,
                value=described.value,
                read_only=described.read_only,
                config_source=int(described.source),
                is_sensitive=described.is_sensitive,
            )
        )
    return tuple(entries)


def create_topics(request, ctx):
    broker = ctx.broker
    logs = broker.logs
    plan = broker.configs  # broker configs: plan caps
    results = []
    adding_total = 0
    seen: dict[str, int] = {}
    for t in request.topics:
        seen[t.name] = seen.get(t.name, 0) + 1
    # CREATE on the cluster, else CREATE on each topic
    create_all = acls.cluster_allowed(ctx, acls.CREATE)
    replicas = broker.replicas  # in a cluster: topics live in etcd and the controller creates them
    existing = replicas.topics() if replicas is not None else logs.topics
    pending = []  # (row, partitions, replication factor, configs) for the controller
    for t in request.topics:
        error, message = ErrorCode.none, None
        partitions = t.num_partitions
        rf = t.replication_factor
        configs: dict[str, str] = {}
        if seen[t.name] > 1:
            error, message = (
                ErrorCode.invalid_request,
                f"Topic {t.name!r} appears more than once in the request",
            )
        elif not create_all and not acls.allowed(ctx, acls.CREATE, acls.TOPIC, t.name):
            error, message = ErrorCode.topic_authorization_failed, "Authorization failed."
        elif (msg := validate_topic_name(t.name)) is not None:
            error, message = ErrorCode.invalid_topic_exception, msg
        elif is_internal(t.name):  # the brokers create it when its coordinator is first needed
            error, message = ErrorCode.invalid_request, f"Creation of internal topic {t.name} is prohibited."
        elif t.name in existing:
            error, message = ErrorCode.topic_already_exists, f"Topic '{t.name}' already exists."
        elif t.assignments and (partitions != -1 or rf != -1):
            error, message = ErrorCode.invalid_request, (
                "Both numPartitions or replicationFactor and replicasAssignments were set. "
                "Both cannot be used at the same time.")
        elif t.assignments and (problem := _assignment_problem(broker, t.assignments)) is not None:
            error, message = ErrorCode.invalid_replica_assignment, problem
        else:
            if t.assignments:
                partitions, rf = len(t.assignments), len(t.assignments[0].broker_ids)
            if partitions == -1:
                partitions = broker.config["num.partitions"]
            brokers = replicas.live_brokers() if replicas is not None else 1
            if rf == -1:
                rf = replicas.default_replication_factor() if replicas is not None else 1
            if partitions <= 0:
                error, message = ErrorCode.invalid_partitions, "Number of partitions must be larger than 0."
            elif rf <= 0:
                error, message = (
                    ErrorCode.invalid_replication_factor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                )
            elif rf > brokers:
                error, message = (
                    ErrorCode.invalid_replication_factor,
                    f"Replication factor {rf} is larger than the number of brokers ({brokers}).",
                )
            else:
                try:
                    names = [c.name for c in t.configs]
                    dup = sorted({n for n in names if names.count(n) > 1})
                    if dup:
                        raise InvalidConfig(dup[0], f"Duplicate config keys: {', '.join(dup)}")
                    configs = validate_topic_configs({c.name: c.value for c in t.configs}, plan)
                    plan.check_partition_count(logs.partition_count() + adding_total, partitions)
                except ConfigError as exc:
                    error, message = ErrorCode(exc.error_code), exc.message
                    configs = {}
                else:
                    if request.validate_only:  # what it would add (created ones are in partition_count)
                        adding_total += partitions
        topic_id = None
        row = {"name": t.name, "error_code": error, "error_message": message}
        if error == ErrorCode.none and not request.validate_only:
            if replicas is not None:
                assignment = _ordered_assignment(t.assignments) if t.assignments else None
                pending.append((row, partitions, rf, configs, assignment))
            else:
                try:
                    topic_id = broker.create_topic(t.name, partitions, configs).id
                except OSError as exc:
                    row["error_code"] = ErrorCode.kafka_storage_error
                    row["error_message"] = f"cannot create topic files: {exc.strerror}"
        row["topic_id"] = topic_id
        results.append((row, partitions, rf, configs))

    def respond():
        rows = []
        for row, partitions, rf, configs in results:
            ok = row["error_code"] == ErrorCode.none
            rows.append(
                ctx.build(
                    "CreatableTopicResult",
                    **row,
                    topic_config_error_code=0,
                    num_partitions=partitions if ok else -1,
                    replication_factor=rf if ok else -1,
                    configs=_config_entries(ctx, configs) if ok and ctx.api_version >= 5 else None,
                )
            )
        return ctx.response(throttle_time=_ZERO, topics=tuple(rows))

    if not pending:
        return respond()
    return _create_in_cluster(broker.cluster.writes, pending, respond)


async def _create_in_cluster(writes, pending, respond):
    """This broker writes each topic and its partitions to etcd in one transaction, whichever
    broker is the controller (brokerd/coordination/metadata.py); the replicas create their local
    logs when their metadata view sees it."""
    for row, partitions, rf, configs, assignment in pending:
        try:
            # As in Kafka every replica starts in sync: all the logs are empty.
            topic = await writes.create_topic(row["name"], partitions, rf, configs, assignment=assignment)
            row["topic_id"] = uuid.UUID(topic.topic_id)
        except TopicExistsError as exc:
            row["error_code"], row["error_message"] = ErrorCode.topic_already_exists, str(exc)
        except AssignmentError as exc:
            row["error_code"], row["error_message"] = ErrorCode.invalid_replica_assignment, str(exc)
        except PlacementError as exc:
            row["error_code"], row["error_message"] = ErrorCode.invalid_replication_factor, str(exc)
        except (CoordinationError, TimeoutError) as exc:  # etcd unreachable: the client retries
            row["error_code"], row["error_message"] = ErrorCode.request_timed_out, f"cluster metadata: {exc}"
    return respond()


def _ordered_assignment(assignments) -> list[list[int]]:
    return [list(a.broker_ids) for a in sorted(assignments, key=lambda a: a.partition_index)]


def _assignment_problem(broker, assignments) -> str | None:
    """Why Kafka would refuse a CreateTopics replica assignment, or None."""
    indices = sorted(a.partition_index for a in assignments)
    if indices != list(range(len(indices))):
        return "partitions should be a consecutive 0-based integer sequence"
    ordered = _ordered_assignment(assignments)
    if broker.replicas is None:  # a standalone broker holds every replica itself
        if any(a != [broker.node_id] for a in ordered):
            return f"each partition must be assigned to exactly broker {broker.node_id}"
        return None
    try:
        check_assignment(ordered, set(broker.replicas.membership.view.state.brokers))
    except AssignmentError as exc:
        return str(exc)
    return None


def delete_topics(request, ctx):
    broker = ctx.broker
    if broker.replicas is not None:
        return _delete_in_cluster(request, ctx)
    logs = broker.logs
    results = []
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    for name, topic_id in wanted:
        error, message = ErrorCode.none, None
        topic = None
        if name is None and topic_id is not None:
            topic = logs.by_id.get(topic_id)
            if topic is not None and not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, topic.name):
                topic = None  # an id the principal may not see is unknown
            if topic is None:
                error, message = ErrorCode.unknown_topic_id, "Topic id not found"
        elif name is not None and topic_id is not None:
            error, message = ErrorCode.invalid_request, "Give a topic name or an id, not both"
        else:
            topic = logs.topics.get(name or "")
            if topic is None:
                error, message = ErrorCode.unknown_topic_or_partition, "This server does not host this topic"
        if error in (ErrorCode.none, ErrorCode.unknown_topic_or_partition) and not _may_delete(
            ctx, topic, name
        ):
            error, message, topic = ErrorCode.topic_authorization_failed, "Authorization failed.", None
        if topic is not None and is_internal(topic.name):
            error, message = ErrorCode.invalid_topic_exception, _INTERNAL_DELETE.format(topic.name)
            topic = None
        if topic is not None and not broker.config["delete.topic.enable"]:
            error, message = ErrorCode.topic_deletion_disabled, "Topic deletion is disabled."
        elif topic is not None:
            name, topic_id = topic.name, topic.id
            logs.delete_topic(topic.name)
        results.append(
            ctx.build(
                "DeletableTopicResult",
                name=name,
                topic_id=topic_id,
                error_code=error,
                error_message=message,
            )
        )
    return ctx.response(throttle_time=_ZERO, responses=tuple(results))


# Consumer groups' committed offsets (and transactions) live there: deleting it loses them all.
_INTERNAL_DELETE = "Topic {} is an internal topic and cannot be deleted."


def _may_delete(ctx, topic, name) -> bool:
    """DESCRIBE to learn whether the topic exists, DELETE to delete it (as Kafka)."""
    name = topic.name if topic is not None else name
    if not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, name or ""):
        return False
    return topic is None or acls.allowed(ctx, acls.DELETE, acls.TOPIC, name)


async def _delete_in_cluster(request, ctx):
    """DeleteTopics in a cluster: this broker deletes the topic and its partitions from etcd in
    one transaction; every replica removes its local log when its view sees it."""
    broker = ctx.broker
    topics = broker.replicas.topics()
    by_id = {topic_id: name for name, (topic_id, _rows) in topics.items()}
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        error, message = ErrorCode.none, None
        if name is not None and topic_id is not None:
            error, message = ErrorCode.invalid_request, "Give a topic name or an id, not both"
        elif name is None:
            name = by_id.get(topic_id)
            if name is None or not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, name):
                error, message, name = ErrorCode.unknown_topic_id, "Topic id not found", None
        if error == ErrorCode.none:
            exists = name in topics
            if not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, name) or (
                exists and not acls.allowed(ctx, acls.DELETE, acls.TOPIC, name)
            ):
                error, message = ErrorCode.topic_authorization_failed, "Authorization failed."
            elif not exists:
                error, message = ErrorCode.unknown_topic_or_partition, "This server does not host this topic"
            elif is_internal(name):
                error, message = ErrorCode.invalid_topic_exception, _INTERNAL_DELETE.format(name)
            elif not broker.config["delete.topic.enable"]:
                error, message = ErrorCode.topic_deletion_disabled, "Topic deletion is disabled."
            else:
                topic_id = topics[name][0]
                try:
                    await broker.cluster.writes.delete_topic(name)
                except UnknownTopicError as exc:
                    error, message = ErrorCode.unknown_topic_or_partition, str(exc)
                except (CoordinationError, TimeoutError) as exc:
                    error, message = ErrorCode.request_timed_out, f"cluster metadata: {exc}"
        results.append(
            ctx.build(
                "DeletableTopicResult", name=name, topic_id=topic_id, error_code=error, error_message=message
            )
        )
    return ctx.response(throttle_time=_ZERO, responses=tuple(results))
