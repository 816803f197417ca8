"""DescribeClientQuotas 0-1 and AlterClientQuotas 0-1 (semantics in brokerd/quotas.py).

Altering quotas needs a super user (``super.users``; empty means nobody): a tenant's API key
must not lift the plan's (or the spend cap's) quotas. In a cluster any broker takes the
alteration: the quotas live in etcd and apply on every broker.
"""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.etcd import CoordinationError
from brokerd.quotas import AlterResult, QuotaError, make_entity, plan_alter

_ZERO = datetime.timedelta(0)


def describe_client_quotas(request, ctx):
    store = ctx.broker.quotas.store
    if not acls.cluster_allowed(ctx, acls.DESCRIBE_CONFIGS):
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.cluster_authorization_failed,
                            error_message="Authorization failed.", entries=None)
    try:
        found = store.describe([(c.entity_type, int(c.match_type), c.match) for c in request.components],
                               bool(request.strict))
    except QuotaError as exc:
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode(exc.error_code),
                            error_message=exc.message, entries=None)
    entries = tuple(
        ctx.build("EntryData",
                  entity=tuple(ctx.build("EntityData", entity_type=t, entity_name=n) for t, n in entity),
                  values=tuple(ctx.build("ValueData", key=k, value=float(v))
                               for k, v in sorted(values.items())))
        for entity, values in found)
    return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.none, error_message=None, entries=entries)


def alter_client_quotas(request, ctx):
    broker = ctx.broker
    if not broker.configs.is_super_user(ctx.principal) or not acls.cluster_allowed(ctx, acls.ALTER_CONFIGS):
        entries = tuple(
            ctx.build("EntryData", error_code=ErrorCode.cluster_authorization_failed,
                      error_message="Altering client quotas needs a super user",
                      entity=tuple(ctx.build("EntityData", entity_type=e.entity_type,
                                             entity_name=e.entity_name) for e in entry.entity))
            for entry in request.entries)
        return ctx.response(throttle_time=_ZERO, entries=entries)
    wanted = [([(e.entity_type, e.entity_name) for e in entry.entity],
               [(op.key, float(op.value), bool(op.remove)) for op in entry.ops]) for entry in request.entries]
    if broker.cluster is not None:
        return _alter_in_cluster(ctx, wanted, bool(request.validate_only))
    return _altered(ctx, broker.quotas.store.alter(wanted, validate_only=bool(request.validate_only)))


def _altered(ctx, results):
    entries = tuple(
        ctx.build("EntryData", error_code=ErrorCode(r.error_code), error_message=r.error_message,
                  entity=tuple(ctx.build("EntityData", entity_type=t, entity_name=n) for t, n in r.entity))
        for r in results)
    return ctx.response(throttle_time=_ZERO, entries=entries)


async def _alter_in_cluster(ctx, wanted, validate_only: bool):
    """The entities' quotas are read from etcd, altered as Kafka alters them and written back
    (brokerd/coordination/metadata.py); every broker's quota store follows."""
    entities = []
    for parts, _ops in wanted:
        try:
            entities.append(make_entity(parts))
        except QuotaError:
            continue  # answered with its error by plan_alter
    planned: list = []

    def plan(seen):
        results, changes = plan_alter(seen, wanted)
        planned[:] = results
        return {} if validate_only else changes

    try:
        await ctx.broker.cluster.writes.alter_quotas(plan, entities)
    except (CoordinationError, TimeoutError) as exc:  # etcd unreachable or busy: the client retries
        results = plan_alter({}, wanted)[0]
        failed = [AlterResult(r.entity, r.error_code or ErrorCode.request_timed_out,
                              r.error_message or f"cluster metadata: {exc}") for r in results]
        return _altered(ctx, failed)
    return _altered(ctx, planned)
