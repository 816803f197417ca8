"""InitProducerId 0-5: producer ids for idempotent producers (``broker.producers``)."""

from __future__ import annotations

import datetime
import logging

from kio.schema.errors import ErrorCode as E

from brokerd import acls
from brokerd.coordination.producer_ids import ProducerIdsUnavailable

log = logging.getLogger("brokerd.producers")

ZERO = datetime.timedelta(0)


def init_producer_id(request, ctx):
    if request.transactional_id is not None:
        # Transactions are not supported (FindCoordinator for transactions says so too).
        return ctx.response(
            throttle_time=ZERO,
            error_code=E.transactional_id_authorization_failed,
            producer_id=-1,
            producer_epoch=-1,
        )
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
