"""Fetch v4-18: whole stored batches from the one containing the requested offset.

Long-polls for ``max_wait_ms`` until ``min_bytes`` are available, woken by futures that
appends resolve (never by polling). Session id is always 0 (no incremental sessions).
"""

from __future__ import annotations

import asyncio

from brokerd import acls
from brokerd.api import count_errors
from brokerd.protocol.fastpath import (
    FetchedPartition,
    FetchedTopic,
    FileRange,
    encode_fetch_response,
)
from brokerd.protocol.framing import RawBody
from brokerd.records import iter_headers
from brokerd.storage import OffsetOutOfRange

OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_AUTHORIZATION_FAILED = 29
FETCH_SESSION_ID_NOT_FOUND = 70
UNKNOWN_TOPIC_ID = 100
NO_OFFSET = -1  # Kafka's INVALID_HIGH_WATERMARK / INVALID_LAST_STABLE_OFFSET / INVALID_LOG_START_OFFSET


def _error_partition(index: int, error: int) -> FetchedPartition:
    """A partition Kafka answers with an error alone (FetchResponse.partitionResponse).

    Offsets -1 and records *empty*, never null: Kafka turns null records into
    MemoryRecords.EMPTY on the wire, and librdkafka fails the whole response on a null
    (``invalid MessageSetSize -1``), so the application never sees the error.
    """
    return FetchedPartition(index, error, NO_OFFSET, NO_OFFSET, NO_OFFSET, b"")


def _max_bytes(ctx, request) -> int:
    """The response byte limit: the request's, the broker's, and (as Kafka) the fetch quota's window.

    A client with a ``consumer_byte_rate`` quota gets at most quota x (samples - 1) x sample
    size in one response, so that one large fetch is answered (and then throttled) instead of
    being answered empty until the rate decays.
    """
    limit = min(request.max_bytes, ctx.broker.config["fetch.max.bytes"])
    window = ctx.broker.quotas.fetch_window_bytes(ctx.principal, ctx.client_id)
    return limit if window is None else min(limit, window)


def replica_id_of(request) -> int:
    """A follower's node id (``replica_id``, or ReplicaState from v15); -1 for consumers."""
    state = getattr(request, "replica_state", None)
    if state is not None:
        return int(state.replica_id)
    return int(getattr(request, "replica_id", -1))


def replica_epoch_of(request) -> int:
    """A follower's broker epoch (ReplicaState.ReplicaEpoch, v15+); -1 when not sent."""
    state = getattr(request, "replica_state", None)
    return int(state.replica_epoch) if state is not None else -1


def _below(records: bytes, high_watermark: int) -> bytes:
    """The whole batches of ``records`` below the high watermark: consumers never see a record
    that not every in-sync replica holds."""
    for pos, base, _size, _last, _ts, _attrs in iter_headers(records):
        if base >= high_watermark:
            return records[:pos]
    return records


def _collect(ctx, request, resolved):
    """Read what is available now. Returns (topics for the encoder, total record bytes, had error)."""
    remaining = _max_bytes(ctx, request)
    if remaining <= 0:
        remaining = 1
    total = 0
    errors = False
    out = []
    authz = ctx.broker.authorizer  # READ on each topic (None: authorizer off)
    replicas = ctx.broker.replicas  # in a cluster: only the partition's leader serves it
    follower = replica_id_of(request) if replicas is not None else -1
    # records stay in the segment files until the connection sends them (sendfile): plaintext
    # listeners only, and not in a cluster (records are cut at the high watermark there)
    zero_copy = ctx.conn.zero_copy and replicas is None
    # read_committed: records up to the last stable offset, with the aborted transactions in them
    read_committed = getattr(request, "isolation_level", 0) == 1 and follower < 0
    producers = ctx.broker.producers
    for name, topic_id, topic, partitions in resolved:
        parts = []
        denied = authz is not None and bool(name) and not acls.allowed(ctx, acls.READ, acls.TOPIC, name)
        for p in partitions:
            idx = p.partition
            if denied:
                parts.append(_error_partition(idx, TOPIC_AUTHORIZATION_FAILED))
                errors = True
                continue
            if topic is None or not 0 <= idx < len(topic.partitions):
                err = (
                    UNKNOWN_TOPIC_ID
                    if (ctx.api_version >= 13 and topic is None)
                    else UNKNOWN_TOPIC_OR_PARTITION
                )
                parts.append(_error_partition(idx, err))
                errors = True
                continue
            if replicas is not None and (
                err := replicas.leader_error(topic.name, idx, getattr(p, "current_leader_epoch", -1))
            ):
                parts.append(_error_partition(idx, err))
                errors = True
                continue
            plog = topic.partitions[idx]
            if follower >= 0:  # a follower's fetch offset says what it holds (the high watermark)
                epoch = replica_epoch_of(request)
                replicas.follower_fetched(topic.name, idx, follower, p.fetch_offset, epoch)
            records = b""
            err = 0
            hw = plog.next_offset
            if replicas is not None:
                hw = replicas.high_watermark(topic.name, idx) or 0
            lso = producers.last_stable_offset(plog, hw)
            if remaining > 0:
                try:
                    if zero_copy and not (read_committed and lso < plog.next_offset):
                        found = plog.read_range(
                            p.fetch_offset, min(p.partition_max_bytes, remaining), min_one=total == 0
                        )
                        if found is None:
                            records = b""
                        elif isinstance(found, bytes):
                            records = found
                        else:
                            records = FileRange(*found)
                    else:
                        records = plog.read(
                            p.fetch_offset, min(p.partition_max_bytes, remaining), min_one=total == 0
                        )
                except OffsetOutOfRange:
                    err = OFFSET_OUT_OF_RANGE
                    errors = True
            elif not plog.start_offset <= p.fetch_offset <= plog.next_offset:
                err = OFFSET_OUT_OF_RANGE
                errors = True
            if replicas is not None and follower < 0:
                records = _below(records, hw)
            aborted = None
            if read_committed and err == 0:
                if lso < hw:
                    records = _below(records, lso)
                if len(records):
                    aborted = producers.aborted(plog, p.fetch_offset, lso) or None
            n = len(records)
            total += n
            remaining -= n
            # (an out-of-range fetch keeps the log's offsets, and empty records as every error)
            parts.append(FetchedPartition(idx, err, hw, lso, plog.start_offset, records if err == 0 else b"",
                                          aborted))
        out.append(FetchedTopic(name, topic_id, parts))
    return out, total, errors


def _resolve(ctx, request):
    logs = ctx.broker.logs
    resolved = []
    for t in request.topics:
        if ctx.api_version >= 13:
            topic = logs.by_id.get(t.topic_id) if t.topic_id is not None else None
            resolved.append((topic.name if topic else "", t.topic_id, topic, t.partitions))
        else:
            topic = logs.topics.get(t.topic)
            resolved.append((t.topic, topic.id if topic else None, topic, t.partitions))
    return resolved


def _body(ctx, request, topics: list[FetchedTopic], total: int) -> RawBody:
    # Count bytes out (usage journal) and apply the fetch quota (KIP-219).
    # Over quota, Kafka answers with no records (un-recording them) and the throttle time.
    replica = ctx.broker.replicas is not None and replica_id_of(request) >= 0
    if replica:  # a follower's copying is neither a client's usage nor under its quota
        throttle, total = 0, 0
    throttle = ctx.broker.quotas.throttle_fetch(ctx.principal, ctx.client_id, total) if total else 0
    if throttle:
        ctx.conn.mute(throttle)
        topics = [t._replace(partitions=[p._replace(records=b"") for p in t.partitions]) for t in topics]
    elif total:
        ctx.broker.metering.after_fetch(
            ctx.principal, [(t.name, [(p.partition, p.records) for p in t.partitions]) for t in topics]
        )
    # KIP-219: the larger of the byte-rate and the request-time throttle (both mute).
    throttle = max(throttle, ctx.request_throttle())
    # kastle_requests_total labels: the top-level error (v7+) and one per partition, as Kafka.
    ctx.errors = count_errors(
        (p.error for t in topics for p in t.partitions), none=1 if ctx.api_version >= 7 else 0
    )
    parts, size = encode_fetch_response(ctx.api_version, topics, throttle)
    return RawBody(parts, size)


def handle(request, ctx):
    if ctx.api_version >= 7 and request.session_id != 0:
        parts, size = encode_fetch_response(ctx.api_version, [], error=FETCH_SESSION_ID_NOT_FOUND)
        ctx.errors = {"FETCH_SESSION_ID_NOT_FOUND": 1}
        return RawBody(parts, size)
    resolved = _resolve(ctx, request)
    topics, total, errors = _collect(ctx, request, resolved)
    max_wait = request.max_wait.total_seconds()
    if total >= min(request.min_bytes, _max_bytes(ctx, request)) or errors or max_wait <= 0:
        return _body(ctx, request, topics, total)
    return _long_poll(ctx, request, max_wait)


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def _long_poll(ctx, request, max_wait: float):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait
    # What was appended since the first look (requests handled before this coroutine started,
    # a follower's parked fetch overtaken by the next Produce) woke no waiter: look again
    # before parking, so it is answered now rather than after max_wait.
    topics, total, errors = _collect(ctx, request, _resolve(ctx, request))
    if total >= min(request.min_bytes, _max_bytes(ctx, request)) or errors:
        return _body(ctx, request, topics, total)
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0 or ctx.conn.closed:
            break
        resolved = _resolve(ctx, request)
        logs = [
            topic.partitions[p.partition]
            for _name, _tid, topic, partitions in resolved
            if topic is not None
            for p in partitions
            if 0 <= p.partition < len(topic.partitions)
        ]
        fut = loop.create_future()
        for plog in logs:
            plog.add_waiter(fut)
        timer = loop.call_later(remaining, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            for plog in logs:
                plog.remove_waiter(fut)
        topics, total, errors = _collect(ctx, request, _resolve(ctx, request))
        if total >= min(request.min_bytes, _max_bytes(ctx, request)) or errors:
            return _body(ctx, request, topics, total)
    topics, total, _errors = _collect(ctx, request, _resolve(ctx, request))
    return _body(ctx, request, topics, total)
