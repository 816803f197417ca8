"""CreatePartitions 0-3, DeleteRecords 0-2 and OffsetForLeaderEpoch 2-4.

A broker alone has leader epoch 0 on every partition (what Metadata reports), so
OffsetForLeaderEpoch answers epoch 0 with the log end offset and any later epoch with
UNDEFINED (-1/-1), as Kafka's leader-epoch cache does for an epoch it never had. In a cluster
the partition's leader answers from its leader epoch cache (brokerd/storage/epochs.py).
"""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.metadata import InvalidPartitionsError, UnknownTopicError
from brokerd.coordination.placement import AssignmentError, PlacementError
from brokerd.kafka_configs import ConfigError

_ZERO = datetime.timedelta(0)
LEADER_EPOCH = 0


def create_partitions(request, ctx):
    broker = ctx.broker
    if broker.replicas is not None:
        return _create_partitions_in_cluster(request, ctx)
    logs = broker.logs
    names = [t.name for t in request.topics]
    results = []
    adding_total = 0
    for t in request.topics:
        error, message = ErrorCode.none, None
        topic = logs.topics.get(t.name)
        if names.count(t.name) > 1:
            error, message = ErrorCode.invalid_request, "Duplicate topic in request."
        elif not acls.allowed(ctx, acls.ALTER, acls.TOPIC, t.name):
            error, message = ErrorCode.topic_authorization_failed, "Authorization failed."
        elif topic is None:
            error, message = ErrorCode.unknown_topic_or_partition, f"The topic '{t.name}' does not exist."
        elif t.count < len(topic.partitions):
            error, message = ErrorCode.invalid_partitions, (
                f"Topic currently has {len(topic.partitions)} partitions, which is higher than the "
                f"requested {t.count}.")
        elif t.count == len(topic.partitions):
            error, message = ErrorCode.invalid_partitions, f"Topic already has {t.count} partitions."
        elif t.assignments is not None and (
                len(t.assignments) != t.count - len(topic.partitions)
                or any(tuple(a.broker_ids) != (broker.node_id,) for a in t.assignments)):
            error, message = ErrorCode.invalid_replica_assignment, (
                f"Each new partition must be assigned to exactly broker {broker.node_id}.")
        else:
            adding = t.count - len(topic.partitions)
            try:
                broker.configs.check_partition_count(logs.partition_count() + adding_total, adding)
            except ConfigError as exc:
                error, message = ErrorCode(exc.error_code), exc.message
            else:
                if request.validate_only:  # count what it would add (real additions are in partition_count)
                    adding_total += adding
                else:
                    try:
                        logs.add_partitions(topic, t.count)
                    except OSError as exc:
                        error, message = ErrorCode.kafka_storage_error, f"cannot create partitions: {exc}"
        results.append(ctx.build("CreatePartitionsTopicResult", name=t.name, error_code=error,
                                 error_message=message))
    return ctx.response(throttle_time=_ZERO, results=tuple(results))


async def _create_partitions_in_cluster(request, ctx):
    """This broker adds the partitions to etcd in one transaction (with the topic's new count),
    whichever broker is the controller; each replica creates its local logs when its metadata
    view sees them."""
    broker = ctx.broker
    names = [t.name for t in request.topics]
    writes = broker.cluster.writes
    results = []
    for t in request.topics:
        error, message = ErrorCode.none, None
        if names.count(t.name) > 1:
            error, message = ErrorCode.invalid_request, "Duplicate topic in request."
        elif not acls.allowed(ctx, acls.ALTER, acls.TOPIC, t.name):
            error, message = ErrorCode.topic_authorization_failed, "Authorization failed."
        else:
            assignments = None if t.assignments is None else [list(a.broker_ids) for a in t.assignments]
            try:
                current = broker.replicas.topics().get(t.name)
                if current is not None and t.count > len(current[1]):
                    broker.configs.check_partition_count(
                        broker.logs.partition_count(), t.count - len(current[1]))
                await writes.create_partitions(t.name, t.count, assignments,
                                               validate_only=request.validate_only)
            except UnknownTopicError as exc:
                error, message = ErrorCode.unknown_topic_or_partition, str(exc)
            except InvalidPartitionsError as exc:
                error, message = ErrorCode.invalid_partitions, str(exc)
            except AssignmentError as exc:
                error, message = ErrorCode.invalid_replica_assignment, str(exc)
            except PlacementError as exc:
                error, message = ErrorCode.invalid_replication_factor, str(exc)
            except ConfigError as exc:
                error, message = ErrorCode(exc.error_code), exc.message
            except (CoordinationError, TimeoutError) as exc:  # etcd unreachable or busy: retriable
                error, message = ErrorCode.request_timed_out, f"cluster metadata: {exc}"
        results.append(ctx.build("CreatePartitionsTopicResult", name=t.name, error_code=error,
                                 error_message=message))
    return ctx.response(throttle_time=_ZERO, results=tuple(results))


def delete_records(request, ctx):
    """Alone, the broker holds every partition. In a cluster only a partition's leader deletes
    (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka), up to its high watermark; the followers move
    their log start to the leader's as they fetch."""
    logs = ctx.broker.logs
    replicas = ctx.broker.replicas
    topics = []
    for t in request.topics:
        parts = []
        denied = not acls.allowed(ctx, acls.DELETE, acls.TOPIC, t.name)
        for p in t.partitions:
            plog = logs.log(t.name, p.partition_index)
            low, error = -1, ErrorCode.none
            end = plog.next_offset if plog is not None else -1
            if replicas is not None and plog is not None:
                end = replicas.high_watermark(t.name, p.partition_index)
            if denied:
                error = ErrorCode.topic_authorization_failed
            elif replicas is not None and replicas.partition(t.name, p.partition_index) is None:
                error = ErrorCode.unknown_topic_or_partition
            elif replicas is not None and (code := replicas.leader_error(t.name, p.partition_index)):
                error = ErrorCode(code)
            elif plog is None or end is None:
                error = ErrorCode.unknown_topic_or_partition
            elif not plog.settings.delete:  # as Kafka: records of a compact-only log stay
                error = ErrorCode.policy_violation
            else:
                offset = end if p.offset == -1 else p.offset
                if offset < 0 or offset > end:
                    error = ErrorCode.offset_out_of_range
                else:
                    low = logs.delete_records(plog, offset)
            parts.append(ctx.build("DeleteRecordsPartitionResult", partition_index=p.partition_index,
                                   low_watermark=low, error_code=error))
        topics.append(ctx.build("DeleteRecordsTopicResult", name=t.name, partitions=tuple(parts)))
    return ctx.response(throttle_time=_ZERO, topics=tuple(topics))


def offset_for_leader_epoch(request, ctx):
    logs = ctx.broker.logs
    topics = []
    # CLUSTER_ACTION on the cluster (replicas), else DESCRIBE on each topic (as Kafka)
    cluster_action = acls.cluster_allowed(ctx, acls.CLUSTER_ACTION)
    for t in request.topics:
        parts = []
        denied = not cluster_action and not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, t.topic)
        for p in t.partitions:
            plog = logs.log(t.topic, p.partition)
            error, epoch, end = ErrorCode.none, -1, -1
            current = int(getattr(p, "current_leader_epoch", -1))
            if denied:
                error = ErrorCode.topic_authorization_failed
            elif plog is None:
                error = ErrorCode.unknown_topic_or_partition
            elif ctx.broker.replicas is not None:  # in a cluster: the leader's epoch cache answers
                code, epoch, end = ctx.broker.replicas.offset_for_leader_epoch(
                    t.topic, p.partition, p.leader_epoch, current
                )
                error = ErrorCode(code)
            elif current > LEADER_EPOCH:
                error = ErrorCode.unknown_leader_epoch
            elif 0 <= current < LEADER_EPOCH:
                error = ErrorCode.fenced_leader_epoch
            elif p.leader_epoch == LEADER_EPOCH:
                epoch, end = LEADER_EPOCH, plog.next_offset
            parts.append(ctx.build("EpochEndOffset", error_code=error, partition=p.partition,
                                   leader_epoch=epoch, end_offset=end))
        topics.append(ctx.build("OffsetForLeaderTopicResult", topic=t.topic, partitions=tuple(parts)))
    return ctx.response(throttle_time=_ZERO, topics=tuple(topics))
