"""Transactions, translated to the transaction coordinator (``broker.transactions``) and the
partition side of the producer state (``broker.producers``).

AddPartitionsToTxn 0-5 (v4+: batched, from brokers, with KIP-890's verify-only form),
AddOffsetsToTxn 0-4, EndTxn 0-5, WriteTxnMarkers 1, TxnOffsetCommit 0-5, DescribeTransactions
0 and ListTransactions 0-1. The ``transaction.version`` feature is not advertised, so clients
use transaction version 1 semantics at every version (EndTxn v5 answers no new epoch).

PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH to the versions that predate it (KIP-588),
as Kafka does.
"""

from __future__ import annotations

import datetime
import logging
import time

from kio.schema.errors import ErrorCode as E

from brokerd import acls
from brokerd.groups.store import OffsetAndMetadata, StoreError
from brokerd.txn.log import STATES_BY_NAME
from brokerd.txn.markers import write_here

log = logging.getLogger("brokerd.txn")

ZERO = datetime.timedelta(0)
#: the first version of each API that knows PRODUCER_FENCED
_FENCED_SINCE = {24: 2, 25: 2, 26: 2, 28: 2}


def _fenced(ctx, error: E) -> E:
    if error is E.producer_fenced and ctx.api_version < _FENCED_SINCE.get(ctx.api_key, 0):
        return E.invalid_producer_epoch
    return error


def _coordinator(ctx):
    """The transaction coordinator (it answers NOT_COORDINATOR for ids it does not coordinate)."""
    return ctx.broker.transactions


def _exists(broker, topic: str, partition: int) -> bool:
    """Whether the partition exists: in the cluster (led anywhere), else here."""
    if broker.replicas is not None:
        return broker.replicas.partition(topic, partition) is not None
    return broker.logs.log(topic, partition) is not None


# --- AddPartitionsToTxn ----------------------------------------------------------------------


async def add_partitions_to_txn(request, ctx):
    if ctx.api_version >= 4:
        return await _add_partitions_batched(request, ctx)
    tid = request.v3_and_below_transactional_id
    wanted = [(t.name, int(p)) for t in request.v3_and_below_topics for p in t.partitions]
    errors = await _add_one(
        ctx,
        tid,
        request.v3_and_below_producer_id,
        request.v3_and_below_producer_epoch,
        wanted,
        verify_only=False,
    )
    return ctx.response(throttle_time=ZERO, results_by_topic_v3_and_below=_topic_results(ctx, errors))


def _topic_results(ctx, errors: dict[tuple[str, int], E]) -> tuple:
    by_topic: dict[str, list] = {}
    for (topic, partition), error in errors.items():
        by_topic.setdefault(topic, []).append(
            ctx.build(
                "AddPartitionsToTxnPartitionResult", partition_index=partition, partition_error_code=error
            )
        )
    return tuple(
        ctx.build("AddPartitionsToTxnTopicResult", name=name, results_by_partition=tuple(parts))
        for name, parts in by_topic.items()
    )


async def _add_partitions_batched(request, ctx):
    """v4+: sent by brokers (CLUSTER_ACTION), several transactions at once, each possibly
    verify-only: is each partition in the producer's open transaction?"""
    if not acls.cluster_allowed(ctx, acls.CLUSTER_ACTION):
        return ctx.response(
            throttle_time=ZERO, error_code=E.cluster_authorization_failed, results_by_transaction=()
        )
    results = []
    for txn in request.transactions:
        wanted = [(t.name, int(p)) for t in txn.topics for p in t.partitions]
        errors = await _add_one(
            ctx,
            txn.transactional_id,
            txn.producer_id,
            txn.producer_epoch,
            wanted,
            verify_only=txn.verify_only,
        )
        results.append(
            ctx.build(
                "AddPartitionsToTxnResult",
                transactional_id=txn.transactional_id,
                topic_results=_topic_results(ctx, errors),
            )
        )
    return ctx.response(throttle_time=ZERO, error_code=E.none, results_by_transaction=tuple(results))


async def _add_one(ctx, tid, pid, epoch, wanted, *, verify_only: bool) -> dict[tuple[str, int], E]:
    """Per partition: the error, as Kafka: an authorization or unknown-partition problem on some
    gives the others OPERATION_NOT_ATTEMPTED."""
    coord = _coordinator(ctx)
    if coord is None:
        return dict.fromkeys(wanted, E.not_coordinator)
    if not acls.allowed(ctx, acls.WRITE, acls.TRANSACTIONAL_ID, tid):
        return dict.fromkeys(wanted, E.transactional_id_authorization_failed)
    problems: dict[tuple[str, int], E] = {}
    for topic, partition in wanted:
        if not acls.allowed(ctx, acls.WRITE, acls.TOPIC, topic):
            problems[(topic, partition)] = E.topic_authorization_failed
        elif not _exists(ctx.broker, topic, partition):
            problems[(topic, partition)] = E.unknown_topic_or_partition
    if problems:
        return {tp: problems.get(tp, E.operation_not_attempted) for tp in wanted}
    if verify_only:
        return {tp: _fenced(ctx, coord.verify(tid, pid, epoch, tp)) for tp in wanted}
    error = await coord.add_partitions(tid, pid, epoch, wanted)
    return dict.fromkeys(wanted, _fenced(ctx, error))


# --- AddOffsetsToTxn / EndTxn ----------------------------------------------------------------


def _refused(ctx, coord, tid: str, group_id: str | None = None) -> E | None:
    """What a request about a transactional id (and a group) is refused with, if anything."""
    if coord is None:
        return E.not_coordinator
    if not acls.allowed(ctx, acls.WRITE, acls.TRANSACTIONAL_ID, tid):
        return E.transactional_id_authorization_failed
    if group_id is not None and not acls.allowed(ctx, acls.READ, acls.GROUP, group_id):
        return E.group_authorization_failed
    return None


async def add_offsets_to_txn(request, ctx):
    coord = _coordinator(ctx)
    tid = request.transactional_id
    error = _refused(ctx, coord, tid, request.group_id)
    if error is None:
        tp = coord.offsets_partition(request.group_id)
        added = await coord.add_partitions(tid, request.producer_id, request.producer_epoch, [tp])
        error = _fenced(ctx, added)
    return ctx.response(throttle_time=ZERO, error_code=error)


async def end_txn(request, ctx):
    coord = _coordinator(ctx)
    tid = request.transactional_id
    error = _refused(ctx, coord, tid)
    if error is None:
        commit = bool(request.committed)
        error = _fenced(ctx, await coord.end_txn(tid, request.producer_id, request.producer_epoch, commit))
    return ctx.response(throttle_time=ZERO, error_code=error, producer_id=-1, producer_epoch=-1)


# --- TxnOffsetCommit -------------------------------------------------------------------------


async def txn_offset_commit(request, ctx):
    coord = _coordinator(ctx)
    tid = request.transactional_id
    group_id = request.group_id
    entries = [(t.name, p) for t in request.topics for p in t.partitions]
    error = _refused(ctx, coord, tid, group_id)
    if error is None:
        pid, epoch = request.producer_id, request.producer_epoch
        error = await _offsets_in_transaction(ctx, coord, tid, pid, epoch, group_id)
        if error is E.none:
            error = (
                ctx.broker.groups.validate_txn_offset_commit(
                    group_id,
                    getattr(request, "generation_id", -1),
                    getattr(request, "member_id", ""),
                    getattr(request, "group_instance_id", None),
                )
                or E.none
            )
    errors: dict[tuple[str, int], E] = {}
    held: dict[tuple[str, int], OffsetAndMetadata] = {}
    if error is E.none:
        now = int(time.time() * 1000)
        limit = ctx.broker.groups.config.offset_metadata_max_bytes
        for topic, p in entries:
            tp = (topic, int(p.partition_index))
            metadata = p.committed_metadata or ""
            if not acls.allowed(ctx, acls.READ, acls.TOPIC, topic):
                errors[tp] = E.topic_authorization_failed
            elif len(metadata.encode()) > limit:
                errors[tp] = E.offset_metadata_too_large
            else:
                epoch = int(getattr(p, "committed_leader_epoch", -1))
                held[tp] = OffsetAndMetadata(int(p.committed_offset), epoch, metadata, now)
        if held:
            stored = E.none
            try:
                await ctx.broker.groups.commit_in_transaction(
                    group_id, request.producer_id, request.producer_epoch, held
                )
            except StoreError as exc:
                log.error("cannot commit offsets of group %s in a transaction: %s", group_id, exc)
                stored = exc.code
            for tp in held:
                errors[tp] = stored
    else:
        error = _fenced(ctx, error)
        errors = {(topic, int(p.partition_index)): error for topic, p in entries}
    by_topic: dict[str, list] = {}
    for (topic, index), code in errors.items():
        by_topic.setdefault(topic, []).append(
            ctx.build("TxnOffsetCommitResponsePartition", partition_index=index, error_code=code)
        )
    return ctx.response(
        throttle_time=ZERO,
        topics=tuple(
            ctx.build("TxnOffsetCommitResponseTopic", name=name, partitions=tuple(parts))
            for name, parts in by_topic.items()
        ),
    )


async def _offsets_in_transaction(ctx, coord, tid: str, pid: int, epoch: int, group_id: str) -> E:
    """Whether the group's offsets partition is in the producer's open transaction: asked of the
    transaction coordinator, here or on another broker (the group coordinator is the leader of
    the group's ``__consumer_offsets`` partition, the transaction coordinator that of the id's
    ``__transaction_state`` partition)."""
    if coord.owner_error(tid) is None:
        return coord.check_offset_commit(tid, pid, epoch, group_id)
    tp = coord.offsets_partition(group_id)
    answer = (await ctx.broker.txn_verifier.verify(tid, pid, epoch, [tp]))[tp]
    if answer in (E.not_coordinator, E.coordinator_not_available, E.coordinator_load_in_progress):
        return E.coordinator_load_in_progress  # retriable for the producer; not about the group
    return answer


# --- WriteTxnMarkers -------------------------------------------------------------------------


async def write_txn_markers(request, ctx):
    """Markers from a transaction coordinator (CLUSTER_ACTION): appended to the partitions this
    broker leads, the producer's transaction ended there, answered once durable."""
    broker = ctx.broker
    allowed = acls.cluster_allowed(ctx, acls.CLUSTER_ACTION)
    results = []
    for marker in request.markers:
        tps = [(t.name, int(index)) for t in marker.topics for index in t.partition_indexes]
        if allowed:
            errors = await write_here(
                broker, marker.producer_id, marker.producer_epoch, bool(marker.transaction_result),
                marker.coordinator_epoch, tps,
            )  # fmt: skip
        else:
            errors = dict.fromkeys(tps, E.cluster_authorization_failed)
        by_topic: dict[str, list] = {}
        for (name, index), error in errors.items():
            by_topic.setdefault(name, []).append(
                ctx.build("WritableTxnMarkerPartitionResult", partition_index=index, error_code=error)
            )
        topics = tuple(
            ctx.build("WritableTxnMarkerTopicResult", name=name, partitions=tuple(parts))
            for name, parts in by_topic.items()
        )
        results.append(ctx.build("WritableTxnMarkerResult", producer_id=marker.producer_id, topics=topics))
    return ctx.response(markers=tuple(results))


# --- DescribeTransactions / ListTransactions -------------------------------------------------


def _ms_to_datetime(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(max(ms, 0) / 1000, tz=datetime.UTC) if ms >= 0 else _EPOCH_MINUS_1


_EPOCH_MINUS_1 = datetime.datetime.fromtimestamp(0, tz=datetime.UTC) - datetime.timedelta(milliseconds=1)


def describe_transactions(request, ctx):
    coord = _coordinator(ctx)
    states = []
    for tid in request.transactional_ids:
        meta = coord.describe(tid) if coord is not None else None
        if not acls.allowed(ctx, acls.DESCRIBE, acls.TRANSACTIONAL_ID, tid):
            error = E.transactional_id_authorization_failed
        elif coord is None:
            error = E.not_coordinator
        elif (owner := coord.owner_error(tid)) is not None:
            error = owner
        elif meta is None:
            error = E.transactional_id_not_found
        else:
            error = E.none
        if error is not E.none:
            states.append(
                ctx.build(
                    "TransactionState",
                    error_code=error,
                    transactional_id=tid,
                    transaction_state="",
                    transaction_timeout=ZERO,
                    transaction_start_time=_EPOCH_MINUS_1,
                    producer_id=-1,
                    producer_epoch=-1,
                    topics=(),
                )
            )
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            if acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, topic):
                by_topic.setdefault(topic, []).append(partition)
        states.append(
            ctx.build(
                "TransactionState",
                error_code=E.none,
                transactional_id=tid,
                transaction_state=meta.state_name,
                transaction_timeout=datetime.timedelta(milliseconds=meta.timeout_ms),
                transaction_start_time=_ms_to_datetime(meta.start_ms),
                producer_id=meta.producer_id,
                producer_epoch=meta.producer_epoch,
                topics=tuple(
                    ctx.build("TopicData", topic=t, partitions=tuple(ps)) for t, ps in by_topic.items()
                ),
            )
        )
    return ctx.response(throttle_time=ZERO, transaction_states=tuple(states))


def list_transactions(request, ctx):
    coord = _coordinator(ctx)
    wanted_states = set(request.state_filters)
    unknown = tuple(s for s in request.state_filters if s not in STATES_BY_NAME)
    pids = set(request.producer_id_filters)
    duration = int(getattr(request, "duration_filter", -1))
    now = int(time.time() * 1000)
    out = []
    for meta in coord.listing() if coord is not None else []:
        if wanted_states and meta.state_name not in wanted_states:
            continue
        if pids and meta.producer_id not in pids:
            continue
        if duration >= 0 and (meta.start_ms < 0 or now - meta.start_ms <= duration):
            continue
        if not acls.allowed(ctx, acls.DESCRIBE, acls.TRANSACTIONAL_ID, meta.transactional_id):
            continue
        out.append(
            ctx.build(
                "TransactionState",
                transactional_id=meta.transactional_id,
                producer_id=meta.producer_id,
                transaction_state=meta.state_name,
            )
        )
    return ctx.response(
        throttle_time=ZERO, error_code=E.none, unknown_state_filters=unknown, transaction_states=tuple(out)
    )
