"""ListOffsets v1-10: earliest (-2), latest (-1; with read_committed, from v2, the last stable
offset), max timestamp (-3), earliest local (-4), latest tiered (-5), by time. v10's timeout
bounds reads from remote storage, which brokerd has none of."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from brokerd import acls

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5  # v9 (KIP-1005)


def _lookup(plog, timestamp: int, version: int, latest: int) -> tuple[ErrorCode, int, int]:
    """(error, offset, timestamp); ``latest``: the end the request's isolation level sees."""
    if timestamp == LATEST:
        return ErrorCode.none, latest, -1
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        if timestamp == EARLIEST_LOCAL and version < 8:
            return ErrorCode.unsupported_version, -1, -1
        return ErrorCode.none, plog.start_offset, -1
    if timestamp == LATEST_TIERED:
        if version < 9:
            return ErrorCode.unsupported_version, -1, -1
        # Without tiered storage nothing is tiered: Kafka answers offset -1 (and leader epoch -1)
        return ErrorCode.none, -1, -1
    if timestamp == MAX_TIMESTAMP:
        if version < 7:
            return ErrorCode.unsupported_version, -1, -1
        found = plog.max_timestamp()
        return (ErrorCode.none, found[0], found[1]) if found else (ErrorCode.none, -1, -1)
    if timestamp < 0:
        return ErrorCode.invalid_request, -1, -1
    found = plog.offset_for_timestamp(timestamp)
    return (ErrorCode.none, found[0], found[1]) if found else (ErrorCode.none, -1, -1)


def handle(request, ctx):
    logs = ctx.broker.logs
    v = ctx.api_version
    topics = []
    read_committed = getattr(request, "isolation_level", 0) == 1
    for t in request.topics:
        topic = logs.topics.get(t.name)
        parts = []
        denied = not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, t.name)
        for p in t.partitions:
            if denied:
                error, offset, ts = ErrorCode.topic_authorization_failed, -1, -1
            elif topic is None or not 0 <= p.partition_index < len(topic.partitions):
                error, offset, ts = ErrorCode.unknown_topic_or_partition, -1, -1
            elif ctx.broker.replicas is not None and (
                code := ctx.broker.replicas.leader_error(
                    t.name, p.partition_index, getattr(p, "current_leader_epoch", -1)
                )
            ):
                error, offset, ts = ErrorCode(code), -1, -1
            else:
                plog = topic.partitions[p.partition_index]
                error, offset, ts = _lookup(plog, p.timestamp, v, _latest(ctx, plog, read_committed))
            parts.append(
                ctx.build(
                    "ListOffsetsPartitionResponse",
                    partition_index=p.partition_index,
                    error_code=error,
                    timestamp=ts,
                    offset=offset,
                    leader_epoch=(
                        _leader_epoch(ctx, t.name, p.partition_index)
                        if error == ErrorCode.none and offset >= 0 else -1
                    ),
                )
            )
        topics.append(ctx.build("ListOffsetsTopicResponse", name=t.name, partitions=tuple(parts)))
    return ctx.response(throttle_time=datetime.timedelta(0), topics=tuple(topics))


def _leader_epoch(ctx, name: str, index: int) -> int:
    """The partition's leader epoch: from the cluster's metadata, else 0 (a broker alone)."""
    replicas = ctx.broker.replicas
    state = replicas.partition(name, index) if replicas is not None else None
    return state.leader_epoch if state is not None else 0


def _latest(ctx, plog, read_committed: bool) -> int:
    """The latest offset: the high watermark, or for read_committed the last stable offset."""
    hw = plog.next_offset
    replicas = ctx.broker.replicas
    if replicas is not None:
        hw = replicas.high_watermark(plog.topic, plog.partition) or 0
        if not read_committed:
            return plog.next_offset  # as before: the leader's log end
    return ctx.broker.producers.last_stable_offset(plog, hw) if read_committed else hw
