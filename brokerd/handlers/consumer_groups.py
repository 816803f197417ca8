"""The consumer group protocol: ConsumerGroupHeartbeat 0-1 and ConsumerGroupDescribe 0-1.

Translated to the group coordinator (``broker.groups``), which shares committed offsets with the
classic protocol's handlers (brokerd/handlers/groups.py).
"""

from __future__ import annotations

import datetime
import uuid

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.groups.consumer import HeartbeatRequest

E = ErrorCode
ZERO = datetime.timedelta(0)
MS = datetime.timedelta(milliseconds=1)
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
MEMBER_TYPE_CLASSIC, MEMBER_TYPE_CONSUMER = 0, 1


def _client_host(ctx) -> str:
    peer = getattr(ctx.conn, "peer", "") or ""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return f"/{host}" if host else ""


def _ms(value) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value // MS)
    return int(value)


async def consumer_group_heartbeat(request, ctx):
    def refuse(error: ErrorCode, message: str | None = None):
        return ctx.response(
            throttle_time=ZERO, error_code=error, error_message=message, member_id=None, member_epoch=-1,
            heartbeat_interval=ZERO, assignment=None,
        )  # fmt: skip

    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):  # READ on the group
        return refuse(E.group_authorization_failed, "Authorization failed.")
    names = request.subscribed_topic_names
    regex = getattr(request, "subscribed_topic_regex", None)
    member_id = request.member_id
    if ctx.api_version >= 1 and not member_id:
        # v1: the consumer names itself (a UUID it keeps across rejoins)
        return refuse(E.invalid_request, "MemberId can't be empty.")
    if not member_id and request.member_epoch == 0:
        member_id = str(uuid.uuid4())  # v0: the coordinator names new members
    if names is not None and not all(
        acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, n) for n in names
    ):  # DESCRIBE on the topics subscribed to by name
        return refuse(E.topic_authorization_failed, "Authorization failed for a subscribed topic.")
    owned = None
    if request.topic_partitions is not None:
        owned = {tp.topic_id: set(tp.partitions) for tp in request.topic_partitions if tp.partitions}
    result = await ctx.broker.groups.consumer_heartbeat(
        request.group_id,
        HeartbeatRequest(
            member_id,
            request.member_epoch,
            request.instance_id,
            request.rack_id,
            _ms(request.rebalance_timeout),
            list(names) if names is not None else None,
            regex,
            request.server_assignor,
            owned,
            ctx.client_id or "",
            _client_host(ctx),
        ),
    )
    if result.error is not E.none:
        return refuse(result.error, result.message)
    assignment = None
    if result.assignment is not None:
        assignment = ctx.build(
            "Assignment",
            topic_partitions=tuple(
                ctx.build("TopicPartitions", topic_id=t, partitions=tuple(sorted(ps)))
                for t, ps in sorted(result.assignment.items(), key=lambda kv: str(kv[0]))
            ),
        )
    return ctx.response(
        throttle_time=ZERO,
        error_code=E.none,
        error_message=None,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=datetime.timedelta(milliseconds=result.heartbeat_interval_ms),
        assignment=assignment,
    )


def consumer_group_describe(request, ctx):
    include_ops = bool(request.include_authorized_operations)
    wanted = list(request.group_ids)
    allowed = {g for g in wanted if acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, g)}  # DESCRIBE on each
    found = ctx.broker.groups.consumer_describe([g for g in wanted if g in allowed])
    described = {d.group_id: d for d in found}

    def listed(entries):
        return ctx.build(
            "Assignment",
            topic_partitions=tuple(
                ctx.build("TopicPartitions", topic_id=t, topic_name=name, partitions=tuple(ps))
                for t, name, ps in entries
            ),
        )

    out = []
    for group_id in wanted:
        d = described.get(group_id)
        if d is None or d.error is not E.none:
            error = E.group_authorization_failed if d is None else d.error
            message = "Authorization failed." if d is None else d.message
            out.append(ctx.build(
                "DescribedGroup", error_code=error, error_message=message, group_id=group_id, group_state="",
                group_epoch=-1, assignment_epoch=-1, assignor_name="", members=(),
                authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
            ))  # fmt: skip
            continue
        members = tuple(
            ctx.build(
                "Member",
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=tuple(m.subscribed_topic_names),
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=listed(m.assignment),
                target_assignment=listed(m.target_assignment),
                member_type=MEMBER_TYPE_CLASSIC if m.classic else MEMBER_TYPE_CONSUMER,
            )
            for m in d.members
        )
        ops = AUTHORIZED_OPERATIONS_OMITTED
        if include_ops and ctx.broker.authorizer is not None:  # this principal's operations
            ops = acls.authorized_operations(ctx, acls.GROUP, group_id)
        out.append(
            ctx.build(
                "DescribedGroup",
                error_code=E.none,
                error_message=None,
                group_id=group_id,
                group_state=d.state,
                group_epoch=d.group_epoch,
                assignment_epoch=d.assignment_epoch,
                assignor_name=d.assignor_name,
                members=members,
                authorized_operations=ops,
            )
        )
    return ctx.response(throttle_time=ZERO, groups=tuple(out))
