"""Produce v3-13 (advertised from v0; v0-2 are refused by closing the connection, as Kafka 4 does).

From v13 (KIP-516) topics are named by id: an id this broker does not know gets
UNKNOWN_TOPIC_ID, or NOT_LEADER_OR_FOLLOWER when the cluster has the topic led elsewhere.

Batches are validated by header + CRC-32C and stamped in place; records are never decoded,
except for their first bytes where a topic config asks for it: on compacted topics a record
without a key is refused, as Kafka's LogValidator does, and with confluent.key/value.schema.validation
a key or value without a schema id registered under its subject (brokerd/schemas.py); both
answer INVALID_RECORD, with ``record_errors`` from v8.
acks=all is answered after a group fsync covering the batch; acks=1 once write() returned.

A producer's first transactional batch to a partition is checked with the transaction
coordinator first (KIP-890); when the coordinator runs on another broker that answer is awaited
before the request is handled, and the connection's later Produce requests wait behind it so
that batches are appended in the order they were sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from brokerd import acls
from brokerd.api import count_errors
from brokerd.coordination.internal_topics import is_internal
from brokerd.errors import CloseConnection
from brokerd.idempotence import ProduceRefused
from brokerd.protocol.fastpath import encode_produce_response
from brokerd.records import (
    HEADER_SIZE,
    BatchTooLarge,
    InvalidBatch,
    read_header,
    stamp_leader_epoch,
    validate_and_stamp,
)
from brokerd.schemas import record_problems, validates

log = logging.getLogger("brokerd.produce")

NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
MESSAGE_TOO_LARGE = 10
INVALID_REQUIRED_ACKS = 21
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
KAFKA_STORAGE_ERROR = 56
TOPIC_AUTHORIZATION_FAILED = 29
INVALID_TOPIC_EXCEPTION = 17
PRODUCE_QUOTA = "producer_byte_rate"
INVALID_RECORD = 87
INVALID_TOPIC_EXCEPTION = 17
TRANSACTION_STATE_TOPIC = "__transaction_state"
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
CONCURRENT_TRANSACTIONS = 51
PRODUCER_FENCED = 90
TRANSACTION_ABORTABLE = 120
UNKNOWN_TOPIC_ID = 100
#: the coordinator is moving, loading or finishing the transaction (Kafka answers these to the
#: producer as NOT_ENOUGH_REPLICAS, which every client retries)
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
_RETRY_VERIFICATION = frozenset(
    {CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR}
)


class RecordsRefused(Exception):
    """Kafka's RecordValidationException: the partition's records are refused, with per-record errors."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        shown = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3])
        super().__init__(f"One or more records have been rejected due to {len(errors)} record errors in "
                         f"total, and only showing the first three errors at most: [{shown}]")
        self.errors = errors


def _refuse_records(broker, name: str, index: int, records, settings) -> None:
    problems = record_problems(broker.schemas, name, index, records, settings)
    if problems:
        raise RecordsRefused(problems)


def _name_of(broker, topic_id: uuid.UUID) -> tuple[str | None, int]:
    """(topic name, error) for a Produce v13 topic id."""
    topic = broker.logs.by_id.get(topic_id)
    if topic is not None:
        return topic.name, NONE
    if broker.replicas is not None:  # a cluster topic without a replica here
        for name, (cluster_id, _rows) in broker.replicas.topics().items():
            if cluster_id == topic_id:
                return name, NOT_LEADER_OR_FOLLOWER
    return None, UNKNOWN_TOPIC_ID


def handle(request, ctx):
    conn = ctx.conn
    prior = getattr(conn, "txn_verifying", None)
    if prior is not None and prior.done():
        prior = conn.txn_verifying = None
    ask = _to_verify(ctx.broker, request, ctx.api_version)
    if ask is None and prior is None:
        return _handle(request, ctx, {})
    appended = asyncio.get_running_loop().create_future()
    conn.txn_verifying = appended
    return asyncio.ensure_future(_handle_verified(request, ctx, prior, ask, appended))


def _to_verify(broker, request, version: int) -> tuple[int, int, list[tuple[str, int]]] | None:
    """(producer id, epoch, partitions) a transactional request needs the answer of a coordinator
    on another broker for: the partitions led here that are not yet in the producer's open
    transaction here. None when there are none."""
    tid = request.transactional_id
    coord = broker.transactions
    if tid is None or broker.replicas is None or coord is None or coord.owner_error(tid) is None:
        return None
    sequences = broker.producers.sequences
    found: list[tuple[str, int]] = []
    pid = epoch = -1
    for key, partitions in request.topics:
        name = _name_of(broker, key)[0] if version >= 13 else key
        if name is None:
            continue
        for index, records in partitions:
            if records is None or len(records) < HEADER_SIZE or not broker.replicas.leads(name, index):
                continue
            header = read_header(records)
            if header.is_control or not header.is_transactional:
                continue
            pid, epoch = header.producer_id, header.producer_epoch
            if sequences.open_transactions((name, index)).get(pid) is None:
                found.append((name, index))
    return (pid, epoch, found) if found else None


async def _handle_verified(request, ctx, prior, ask, appended: asyncio.Future):
    """Append once the coordinator answered and the connection's previous Produce is appended
    (``prior``), then wait for the acknowledgement. The next Produce waits only for this one's
    append (``appended``), not its acknowledgement: partitions led here replicate side by side,
    and responses still go out in request order."""
    try:
        if prior is not None:
            await asyncio.wait([prior])
        verified = {}
        if ask is not None:
            pid, epoch, tps = ask
            verified = await ctx.broker.txn_verifier.verify(request.transactional_id, pid, epoch, tps)
        result = _handle(request, ctx, verified)
    finally:
        if not appended.done():
            appended.set_result(None)
    if isinstance(result, asyncio.Future) or asyncio.iscoroutine(result):
        result = await result
    return result


def _handle(request, ctx, verified: dict):
    broker = ctx.broker
    logs = broker.logs
    acks = request.acks
    version = ctx.api_version
    results = []
    committed: list = []  # (topic, partition, offset, result list, position) awaiting the ISR
    to_flush = []
    failed = False
    metering = broker.metering
    producers = broker.producers
    record_errors: dict = {}
    appended = 0
    authz = broker.authorizer  # WRITE on each topic (None: authorizer off)
    tid = request.transactional_id  # WRITE on the transactional id of a transactional producer
    txn_denied = tid is not None and not acls.allowed(ctx, acls.WRITE, acls.TRANSACTIONAL_ID, tid)
    for key, partitions in request.topics:
        unknown_id = NONE
        if version >= 13:
            name, unknown_id = _name_of(broker, key)
        else:
            name = key
        topic = logs.topics.get(name) if unknown_id == NONE else None
        denied = (authz is not None and name is not None
                  and not acls.allowed(ctx, acls.WRITE, acls.TOPIC, name))
        presults = []
        for index, records in partitions:
            error = NONE
            message = None
            base = -1
            lat = -1
            start = -1
            if acks not in (-1, 0, 1):
                error = INVALID_REQUIRED_ACKS
            elif txn_denied:
                error = TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            elif denied:
                error = TOPIC_AUTHORIZATION_FAILED
            elif is_internal(name):  # only the coordinators append there (Kafka: internalTopicsAllowed)
                error = INVALID_TOPIC_EXCEPTION
                message = f"Cannot append to internal topic {name}"
            elif unknown_id:
                error = unknown_id
            elif name == TRANSACTION_STATE_TOPIC:  # only the transaction coordinator writes there
                error = INVALID_TOPIC_EXCEPTION
                message = f"Cannot append to internal topic {name}"
            elif topic is None or not 0 <= index < len(topic.partitions):
                error = UNKNOWN_TOPIC_OR_PARTITION
                if broker.replicas is not None and broker.replicas.partition(name, index) is not None:
                    error = NOT_LEADER_OR_FOLLOWER  # the topic exists in the cluster, led elsewhere
            elif broker.replicas is not None and not broker.replicas.leads(name, index):
                error = NOT_LEADER_OR_FOLLOWER
            elif acks == -1 and broker.replicas is not None and (
                broker.replicas.isr_size(name, index) < broker.replicas.min_insync(name)
            ):
                error = NOT_ENOUGH_REPLICAS
                message = "fewer in-sync replicas than min.insync.replicas"
            elif records is None or len(records) == 0:
                error = CORRUPT_MESSAGE
                message = "no records"
            else:
                plog = topic.partitions[index]
                settings = topic.settings
                append_time = int(time.time() * 1000) if settings.timestamp_type == "LogAppendTime" else None
                journaled = False
                try:
                    batches, count = validate_and_stamp(
                        records, plog.next_offset, settings.max_message_bytes, append_time
                    )
                    if broker.replicas is not None:  # in a cluster: the leader's epoch, for followers
                        epoch = broker.replicas.partition(name, index).leader_epoch
                        stamp_leader_epoch(records, batches, epoch)
                    if settings.compact or validates(settings):  # the only look inside a batch
                        _refuse_records(broker, name, index, records, settings)
                    _check_transaction(broker, tid, name, index, records, version, verified)
                    # idempotent-producer sequence check (a retry returns its offset)
                    base = producers.check(name, index, records)
                    if base is None:
                        # Usage is journaled before the append (see brokerd/metrics.py).
                        metering.before_append(
                            ctx.principal, name, topic.id.bytes, index, plog.next_offset, count, len(records)
                        )
                        journaled = True
                        base = plog.append(records, batches, count)
                        producers.appended(name, index, records, batches)
                except ProduceRefused as exc:
                    error, message = exc.code, str(exc)
                except RecordsRefused as exc:
                    error, message = INVALID_RECORD, str(exc)
                    record_errors[(key, index)] = exc.errors
                except InvalidBatch as exc:
                    error, message = CORRUPT_MESSAGE, str(exc)
                except BatchTooLarge as exc:
                    error, message = MESSAGE_TOO_LARGE, str(exc)
                except OSError as exc:
                    log.error("append to %s-%d failed: %s", name, index, exc)
                    error, message = KAFKA_STORAGE_ERROR, "storage error"
                    if journaled:
                        metering.append_failed(
                            ctx.principal, name, topic.id.bytes, index, plog.next_offset, count, len(records)
                        )
                else:
                    lat = append_time if append_time is not None else -1
                    start = plog.start_offset
                    if acks == -1:
                        to_flush.append(plog)
                    appended += len(records)
                    if broker.replicas is not None:
                        broker.replicas.appended(name, index)
                        if acks == -1:  # answered once every in-sync replica has the batch
                            committed.append((name, index, base + count, presults, len(presults)))
            if error:
                failed = True
            presults.append((index, error, base, lat, start, message))
        results.append((key, presults))
    # KIP-219: answer with throttle_time_ms (the larger of the byte-rate and the request-time
    # quota's) and mute the connection that long; nothing is dropped.
    quotas = broker.quotas
    throttle = quotas.throttle(ctx.principal, ctx.client_id, PRODUCE_QUOTA, appended) if appended else 0
    throttle = max(throttle, ctx.request_throttle())
    if throttle:
        ctx.conn.mute(throttle)
    if acks == 0:
        if failed:
            # Kafka closes the connection so an acks=0 producer notices the failure.
            raise CloseConnection("acks=0 produce failed")
        return None
    if failed or len(results) != 1 or len(results[0][1]) != 1:
        ctx.errors = count_errors(p[1] for _name, presults in results for p in presults)
    body = encode_produce_response(version, results, throttle, record_errors)
    if committed:
        flushed = broker.flusher.wait(to_flush, body) if to_flush else body

        def encode():
            ctx.errors = count_errors(p[1] for _name, presults in results for p in presults)
            return encode_produce_response(version, results, throttle, record_errors)

        return _acknowledge(broker.replicas, committed, flushed, encode, request.timeout_ms / 1000)
    if to_flush:
        # A future resolved with the body once an fsync covers the batches (no task per request).
        return broker.flusher.wait(to_flush, body)
    return body


def _check_transaction(
    broker, tid: str | None, name: str, index: int, records, version: int, verified: dict
) -> None:
    """The partition side of transactions: no control batch from a client, transactional batches
    only from a transactional producer, and (KIP-890) only to a partition the coordinator has
    in the producer's open transaction: INVALID_TXN_STATE, or TRANSACTION_ABORTABLE from v11."""
    if len(records) < HEADER_SIZE:
        return
    header = read_header(records)
    if header.is_control:
        raise ProduceRefused(INVALID_RECORD, "clients may not write control batches")
    if not header.is_transactional:
        return
    if tid is None:
        raise ProduceRefused(INVALID_RECORD, "transactional records without a transactional id")
    pid = header.producer_id
    if broker.producers.sequences.open_transactions((name, index)).get(pid) is not None:
        return  # already in the producer's open transaction here (its epoch is checked next)
    result = verified.get((name, index))
    if result is None:
        coord = broker.transactions
        if coord is None:
            raise ProduceRefused(INVALID_TXN_STATE, "no transaction coordinator to verify the transaction")
        result = coord.verify(tid, pid, header.producer_epoch, (name, index))
    result = int(result)
    if result == 0:
        return
    if result in _RETRY_VERIFICATION:  # retriable for every client, as Kafka answers them
        raise ProduceRefused(NOT_ENOUGH_REPLICAS, "the transaction coordinator cannot answer yet; retry")
    if result == PRODUCER_FENCED:
        raise ProduceRefused(INVALID_PRODUCER_EPOCH, "the producer's epoch is fenced")
    message = f"{name}-{index} is not in the open transaction of {tid}"
    raise ProduceRefused(TRANSACTION_ABORTABLE if version >= 11 else INVALID_TXN_STATE, message)


async def _acknowledge(replicas, committed, flushed, encode, timeout: float):
    """acks=all in a cluster: answer once the leader's fsync covers the batches and the high
    watermark passed them (every in-sync replica holds them). A partition that did not get
    there in the request's timeout answers REQUEST_TIMED_OUT; one whose ISR shrank below
    min.insync.replicas meanwhile, NOT_ENOUGH_REPLICAS_AFTER_APPEND; one whose leadership
    moved, NOT_LEADER_OR_FOLLOWER (the producer retries; idempotence keeps it exactly once)."""
    body = await flushed if isinstance(flushed, asyncio.Future) else flushed
    futures = [replicas.wait_committed(name, index, offset) for name, index, offset, _r, _i in committed]
    pending = {f for f in futures if f is not None and not f.done()}
    if pending:
        await asyncio.wait(pending, timeout=max(timeout, 0.001))
    changed = False
    for (name, index, _offset, presults, position), fut in zip(committed, futures, strict=True):
        if fut is None or (fut.done() and not fut.result()):
            code = NOT_LEADER_OR_FOLLOWER
        elif not fut.done():
            code = REQUEST_TIMED_OUT
        elif replicas.isr_size(name, index) < replicas.min_insync(name):
            code = NOT_ENOUGH_REPLICAS_AFTER_APPEND
        else:
            continue
        index_, _error, base, lat, start, _message = presults[position]
        presults[position] = (index_, code, base, lat, start, None)
        changed = True
    return encode() if changed else body
