"""InitProducerId 0-5: producer ids for idempotent producers (``broker.producers``), and for
transactional ones from the transaction coordinator (``broker.transactions``). DescribeProducers
0: the producers a partition's leader knows, with their open transactions (how an admin finds a
hanging transaction)."""

from __future__ import annotations

import datetime
import logging

from kio.schema.errors import ErrorCode as E

from brokerd import acls
from brokerd.coordination.producer_ids import ProducerIdsUnavailable

log = logging.getLogger("brokerd.producers")

ZERO = datetime.timedelta(0)


async def init_producer_id(request, ctx):
    if request.transactional_id is not None:
        return await _transactional(request, ctx)
    # IDEMPOTENT_WRITE on the cluster, or WRITE on any topic (Kafka 2.8+)
    if not acls.cluster_allowed(ctx, acls.IDEMPOTENT_WRITE) and not acls.allowed_any(
        ctx, acls.WRITE, acls.TOPIC
    ):
        return ctx.response(throttle_time=ZERO, error_code=E.cluster_authorization_failed, producer_id=-1,
                            producer_epoch=-1)
    try:
        pid = ctx.broker.producers.ids.allocate()
    except ProducerIdsUnavailable:  # a block is on its way from the cluster: the client retries
        return ctx.response(
            throttle_time=ZERO, error_code=E.coordinator_load_in_progress, producer_id=-1, producer_epoch=-1
        )
    except OSError as exc:
        log.error("cannot reserve producer ids: %s", exc)
        return ctx.response(
            throttle_time=ZERO, error_code=E.coordinator_not_available, producer_id=-1, producer_epoch=-1
        )
    # Non-transactional producers always get a fresh id with epoch 0 (as Kafka does).
    return ctx.response(throttle_time=ZERO, error_code=E.none, producer_id=pid, producer_epoch=0)


async def _transactional(request, ctx):
    """A transactional producer: WRITE on its transactional id, then the coordinator bumps the
    id's epoch (fencing any previous producer of it)."""
    tid = request.transactional_id
    coord = ctx.broker.transactions
    if not acls.allowed(ctx, acls.WRITE, acls.TRANSACTIONAL_ID, tid):
        error, pid, epoch = E.transactional_id_authorization_failed, -1, -1
    elif coord is None:
        error, pid, epoch = E.not_coordinator, -1, -1
    else:
        timeout = request.transaction_timeout
        timeout_ms = int(timeout // datetime.timedelta(milliseconds=1)) if isinstance(
            timeout, datetime.timedelta) else int(timeout)
        try:
            error, pid, epoch = await coord.init_producer_id(
                tid, timeout_ms, int(getattr(request, "producer_id", -1)),
                int(getattr(request, "producer_epoch", -1)), allocate=ctx.broker.producers.ids.allocate,
            )
        except ProducerIdsUnavailable:  # a block is on its way from the cluster: the client retries
            error, pid, epoch = E.coordinator_load_in_progress, -1, -1
        except OSError as exc:
            log.error("cannot reserve producer ids: %s", exc)
            error, pid, epoch = E.coordinator_not_available, -1, -1
        if error is E.producer_fenced and ctx.api_version < 4:  # before KIP-588
            error = E.invalid_producer_epoch
    return ctx.response(throttle_time=ZERO, error_code=error, producer_id=pid, producer_epoch=epoch)


def describe_producers(request, ctx):
    broker = ctx.broker
    topics = []
    for t in request.topics:
        denied = not acls.allowed(ctx, acls.READ, acls.TOPIC, t.name)
        parts = []
        for index in t.partition_indexes:
            plog = broker.logs.log(t.name, index)
            states: tuple = ()
            if denied:
                error = E.topic_authorization_failed
            elif plog is None:
                error = E.unknown_topic_or_partition
                if broker.replicas is not None and broker.replicas.partition(t.name, index) is not None:
                    error = E.not_leader_or_follower
            elif broker.replicas is not None and not broker.replicas.leads(t.name, index):
                error = E.not_leader_or_follower
            else:
                error = E.none
                states = tuple(
                    ctx.build("ProducerState", producer_id=pid, producer_epoch=epoch, last_sequence=seq,
                              last_timestamp=ts, coordinator_epoch=-1, current_txn_start_offset=first)
                    for pid, epoch, seq, ts, first in broker.producers.sequences.describe((t.name, index))
                )  # fmt: skip
            parts.append(ctx.build("PartitionResponse", partition_index=index, error_code=error,
                                   error_message=None, active_producers=states))
        topics.append(ctx.build("TopicResponse", name=t.name, partitions=tuple(parts)))
    return ctx.response(throttle_time=ZERO, topics=tuple(topics))
