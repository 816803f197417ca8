"""Consumer groups and committed offsets, translated to the group coordinator (``broker.groups``).

FindCoordinator 0-4, JoinGroup 0-9, Heartbeat 0-4, LeaveGroup 0-5, SyncGroup 0-5,
DescribeGroups 0-5, ListGroups 0-5, OffsetCommit 2-9, OffsetFetch 1-9, DeleteGroups 0-2 and
OffsetDelete 0.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.internal_topics import OFFSETS, TRANSACTIONS
from brokerd.groups import CommitEntry

log = logging.getLogger("brokerd.groups")

E = ErrorCode
ZERO = datetime.timedelta(0)
MS = datetime.timedelta(milliseconds=1)


def _ms(value: Any) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value // MS)
    return int(value)


def _client_host(ctx) -> str:
    peer = getattr(ctx.conn, "peer", "") or ""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return f"/{host}" if host else ""


# --- FindCoordinator -------------------------------------------------------------------------

SHARE_KEY_TYPE = 2


def _address(broker, ctx, node_id: int) -> tuple[str, int] | None:
    """A broker's address on the listener this client came in through."""
    for node, host, port, _rack in broker.cluster_brokers(ctx.conn.listener, ctx.conn.port):
        if node == node_id:
            return host, port
    return None


def find_coordinator(request, ctx):
    coord = ctx.broker.groups
    broker = ctx.broker
    v = ctx.api_version
    key_type = getattr(request, "key_type", 0)
    keys = list(request.coordinator_keys) if v >= 4 else [request.key]
    found = []
    for key in keys:
        if key_type == SHARE_KEY_TYPE:  # v6: share-group partitions; brokerd serves no share groups
            found.append((key, -1, "", -1, E.unsupported_version, "Share groups are not enabled."))
            continue
        # DESCRIBE on the group (or transactional id) to find its coordinator
        if key_type == 1 and not acls.allowed(ctx, acls.DESCRIBE, acls.TRANSACTIONAL_ID, key):
            found.append((key, -1, "", -1, E.transactional_id_authorization_failed, "Authorization failed."))
            continue
        if key_type != 1 and not acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, key):
            found.append((key, -1, "", -1, E.group_authorization_failed, "Authorization failed."))
            continue
        if key_type == 0:  # the leader of the group's __consumer_offsets partition
            error, node = broker.internal_topics.coordinator(OFFSETS, key)
        elif key_type == 1:  # the leader of the transactional id's __transaction_state partition
            error, node = broker.internal_topics.coordinator(TRANSACTIONS, key)
        else:
            error, node = coord.find_coordinator(key, key_type)
        address = _address(broker, ctx, node) if error is E.none else None
        if error is E.none and address is None:
            error = E.coordinator_not_available  # its broker is not on this listener (yet)
        if error is E.none:
            found.append((key, node, *address, error, None))
        else:
            found.append((key, -1, "", -1, error, error.name))
    if v >= 4:
        return ctx.response(
            throttle_time=ZERO,
            coordinators=tuple(
                ctx.build("Coordinator", key=k, node_id=n, host=h, port=p, error_code=e, error_message=m)
                for k, n, h, p, e, m in found
            ),
        )
    _key, node, h, p, error, message = found[0]
    return ctx.response(
        throttle_time=ZERO, error_code=error, error_message=message, node_id=node, host=h, port=p
    )


# --- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ------------------------------------------


async def join_group(request, ctx):
    v = ctx.api_version
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(
            throttle_time=ZERO, error_code=E.group_authorization_failed, generation_id=-1,
            protocol_type=None, protocol_name=None if v >= 7 else "", leader="", skip_assignment=False,
            member_id=request.member_id, members=(),
        )
    rebalance = _ms(request.rebalance_timeout) if v >= 1 else -1
    res = await ctx.broker.groups.join(
        request.group_id,
        request.member_id,
        request.protocol_type,
        [(p.name, p.metadata) for p in request.protocols],
        session_timeout_ms=_ms(request.session_timeout),
        rebalance_timeout_ms=rebalance,
        group_instance_id=getattr(request, "group_instance_id", None),
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        api_version=v,
        reason=getattr(request, "reason", None),
    )
    members = tuple(
        ctx.build(
            "JoinGroupResponseMember",
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            metadata=m.metadata,
        )
        for m in res.members
    )
    protocol_name = res.protocol_name
    if protocol_name is None and v < 7:
        protocol_name = ""
    return ctx.response(
        throttle_time=ZERO,
        error_code=res.error,
        generation_id=res.generation_id,
        protocol_type=res.protocol_type,
        protocol_name=protocol_name,
        leader=res.leader_id,
        skip_assignment=res.skip_assignment,
        member_id=res.member_id,
        members=members,
    )


async def sync_group(request, ctx):
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(throttle_time=ZERO, error_code=E.group_authorization_failed, protocol_type=None,
                            protocol_name=None, assignment=b"")
    res = await ctx.broker.groups.sync(
        request.group_id,
        request.generation_id,
        request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments=[(a.member_id, a.assignment) for a in request.assignments],
    )
    return ctx.response(
        throttle_time=ZERO,
        error_code=res.error,
        protocol_type=res.protocol_type,
        protocol_name=res.protocol_name,
        assignment=res.assignment,
    )


def heartbeat(request, ctx):
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(throttle_time=ZERO, error_code=E.group_authorization_failed)
    error = ctx.broker.groups.heartbeat(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
    )
    return ctx.response(throttle_time=ZERO, error_code=error)


def leave_group(request, ctx):
    v = ctx.api_version
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(throttle_time=ZERO, error_code=E.group_authorization_failed, members=())
    if v >= 3:
        identities = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        identities = [(request.member_id, None)]
    error, results = ctx.broker.groups.leave(request.group_id, identities)
    if v < 3:
        if error is E.none and results:
            error = results[0].error
        return ctx.response(throttle_time=ZERO, error_code=error)
    return ctx.response(
        throttle_time=ZERO,
        error_code=error,
        members=tuple(
            ctx.build(
                "MemberResponse",
                member_id=r.member_id,
                group_instance_id=r.group_instance_id,
                error_code=r.error,
            )
            for r in results
        ),
    )


# --- OffsetCommit / OffsetFetch / OffsetDelete -----------------------------------------------


def _known_partition(ctx, topic: str, partition: int) -> bool:
    t = ctx.broker.logs.topics.get(topic)
    return t is not None and 0 <= partition < len(t.partitions)


async def offset_commit(request, ctx):
    v = ctx.api_version
    entries = []
    errors: dict[tuple[str, int], ErrorCode] = {}
    # READ on the group, and READ on each topic
    group_ok = acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id)
    for t in request.topics:
        topic_ok = group_ok and acls.allowed(ctx, acls.READ, acls.TOPIC, t.name)
        for p in t.partitions:
            if not group_ok:
                errors[(t.name, p.partition_index)] = E.group_authorization_failed
            elif not topic_ok:
                errors[(t.name, p.partition_index)] = E.topic_authorization_failed
            elif not _known_partition(ctx, t.name, p.partition_index):
                errors[(t.name, p.partition_index)] = E.unknown_topic_or_partition
            else:
                entries.append(
                    CommitEntry(
                        t.name,
                        p.partition_index,
                        p.committed_offset,
                        getattr(p, "committed_leader_epoch", -1),
                        p.committed_metadata,
                    )
                )
    if entries:
        retention = _ms(request.retention_time) if v <= 4 else -1
        results = await ctx.broker.groups.commit_offsets(
            request.group_id,
            entries,
            generation_id=request.generation_id_or_member_epoch,
            member_id=request.member_id,
            group_instance_id=getattr(request, "group_instance_id", None),
            retention_time_ms=retention,
            api_version=v,
        )
        errors.update(results)
    topics = tuple(
        ctx.build(
            "OffsetCommitResponseTopic",
            name=t.name,
            partitions=tuple(
                ctx.build(
                    "OffsetCommitResponsePartition",
                    partition_index=p.partition_index,
                    error_code=errors[(t.name, p.partition_index)],
                )
                for p in t.partitions
            ),
        )
        for t in request.topics
    )
    return ctx.response(throttle_time=ZERO, topics=topics)


def _fetch_group(ctx, group_id, topics, require_stable, partition_cls, topic_cls, member=(None, -1)):
    """(error, topic entities) for one group of an OffsetFetch request."""
    partitions = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    if acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, group_id):  # DESCRIBE on the group
        error, fetched = ctx.broker.groups.fetch_offsets(
            group_id, partitions, require_stable=require_stable, member_id=member[0], member_epoch=member[1]
        )
    else:
        error, fetched = E.group_authorization_failed, []
    by_topic: dict[str, list] = {}
    for f in fetched:
        if not acls.allowed(ctx, acls.DESCRIBE, acls.TOPIC, f.topic):  # DESCRIBE on topics
            if partitions is None:
                continue  # all of the group's offsets: topics it may not describe are left out
            by_topic.setdefault(f.topic, []).append(ctx.build(
                partition_cls, partition_index=f.partition, committed_offset=-1, committed_leader_epoch=-1,
                metadata="", error_code=E.topic_authorization_failed))
            continue
        by_topic.setdefault(f.topic, []).append(
            ctx.build(
                partition_cls,
                partition_index=f.partition,
                committed_offset=f.offset,
                committed_leader_epoch=f.leader_epoch,
                metadata=f.metadata,
                error_code=f.error,
            )
        )
    if error is not E.none and partitions is not None and ctx.api_version < 2:
        # v0-1 have no top-level error: every partition carries it.
        for t in topics:
            by_topic[t.name] = [
                ctx.build(
                    partition_cls,
                    partition_index=p,
                    committed_offset=-1,
                    committed_leader_epoch=-1,
                    metadata="",
                    error_code=error,
                )
                for p in t.partition_indexes
            ]
    return error, tuple(
        ctx.build(topic_cls, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )


def offset_fetch(request, ctx):
    v = ctx.api_version
    require_stable = bool(getattr(request, "require_stable", False))
    if v >= 8:
        groups = []
        for g in request.groups:
            error, topics = _fetch_group(
                ctx,
                g.group_id,
                g.topics,
                require_stable,
                "OffsetFetchResponsePartitions",
                "OffsetFetchResponseTopics",
                # v9: a consumer-protocol member names itself and its epoch
                (getattr(g, "member_id", None), getattr(g, "member_epoch", -1)),
            )
            groups.append(
                ctx.build("OffsetFetchResponseGroup", group_id=g.group_id, topics=topics, error_code=error)
            )
        return ctx.response(throttle_time=ZERO, groups=tuple(groups))
    error, topics = _fetch_group(
        ctx,
        request.group_id,
        request.topics,
        require_stable,
        "OffsetFetchResponsePartition",
        "OffsetFetchResponseTopic",
    )
    return ctx.response(throttle_time=ZERO, topics=topics, error_code=error)


async def offset_delete(request, ctx):
    errors: dict[tuple[str, int], ErrorCode] = {}
    wanted = []
    if not acls.allowed(ctx, acls.DELETE, acls.GROUP, request.group_id):  # DELETE on the group
        return ctx.response(error_code=E.group_authorization_failed, throttle_time=ZERO, topics=())
    for t in request.topics:
        topic_ok = acls.allowed(ctx, acls.READ, acls.TOPIC, t.name)  # READ on each topic
        for p in t.partitions:
            if not topic_ok:
                errors[(t.name, p.partition_index)] = E.topic_authorization_failed
            elif _known_partition(ctx, t.name, p.partition_index):
                wanted.append((t.name, p.partition_index))
            else:
                errors[(t.name, p.partition_index)] = E.unknown_topic_or_partition
    error, results = await ctx.broker.groups.delete_offsets(request.group_id, wanted)
    errors.update(results)
    if error is not E.none:
        return ctx.response(error_code=error, throttle_time=ZERO, topics=())
    topics = tuple(
        ctx.build(
            "OffsetDeleteResponseTopic",
            name=t.name,
            partitions=tuple(
                ctx.build(
                    "OffsetDeleteResponsePartition",
                    partition_index=p.partition_index,
                    error_code=errors.get((t.name, p.partition_index), E.none),
                )
                for p in t.partitions
            ),
        )
        for t in request.topics
    )
    return ctx.response(error_code=E.none, throttle_time=ZERO, topics=topics)


# --- DescribeGroups / ListGroups / DeleteGroups ----------------------------------------------

AUTHORIZED_OPERATIONS_OMITTED = -(2**31)


def describe_groups(request, ctx):
    out = []
    # DESCRIBE on each group; the others are answered GROUP_AUTHORIZATION_FAILED
    include_ops = bool(getattr(request, "include_authorized_operations", False))
    denied = [g for g in request.groups if not acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, g)]
    for g in denied:
        out.append(ctx.build(
            "DescribedGroup", error_code=E.group_authorization_failed, group_id=g, group_state="",
            protocol_type="", protocol_data="", members=(),
            authorized_operations=AUTHORIZED_OPERATIONS_OMITTED, error_message="Authorization failed.",
        ))
    wanted = [g for g in request.groups if g not in denied] if denied else request.groups
    for d in ctx.broker.groups.describe_groups(wanted):
        if ctx.api_version >= 6 and d.error == E.none and d.state == "Dead" and not d.members:
            # v6 (KIP-1043): a group that does not exist is an error, no longer a Dead group
            out.append(ctx.build(
                "DescribedGroup", error_code=E.group_id_not_found,
                error_message=f"Group {d.group_id} not found.",
                group_id=d.group_id, group_state="", protocol_type="", protocol_data="", members=(),
                authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
            ))
            continue
        members = tuple(
            ctx.build(
                "DescribedGroupMember",
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata,
                member_assignment=m.assignment,
            )
            for m in d.members
        )
        out.append(
            ctx.build(
                "DescribedGroup",
                error_code=d.error,
                group_id=d.group_id,
                group_state=d.state,
                protocol_type=d.protocol_type,
                protocol_data=d.protocol_data,
                members=members,
                authorized_operations=(
                    acls.authorized_operations(ctx, acls.GROUP, d.group_id)
                    if include_ops and ctx.broker.authorizer is not None else AUTHORIZED_OPERATIONS_OMITTED
                ),
            )
        )
    if denied:  # in the request's order
        order = {g: i for i, g in enumerate(request.groups)}
        out.sort(key=lambda d: order.get(d.group_id, 0))
    return ctx.response(throttle_time=ZERO, groups=tuple(out))


def list_groups(request, ctx):
    states = getattr(request, "states_filter", None) or None
    types = getattr(request, "types_filter", None) or None
    error, listed = ctx.broker.groups.list_groups(states, types)
    if not acls.cluster_allowed(ctx, acls.DESCRIBE):  # else only groups it may describe
        listed = [g for g in listed if acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, g.group_id)]
    return ctx.response(
        throttle_time=ZERO,
        error_code=error,
        groups=tuple(
            ctx.build(
                "ListedGroup",
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state,
                group_type=g.group_type,
            )
            for g in listed
        ),
    )


async def delete_groups(request, ctx):
    # DELETE on each group
    names = list(request.groups_names)
    denied = {g for g in names if not acls.allowed(ctx, acls.DELETE, acls.GROUP, g)}
    deleted = await ctx.broker.groups.delete_groups([g for g in names if g not in denied])
    results = {g: E.group_authorization_failed if g in denied else deleted[g] for g in names}
    return ctx.response(
        throttle_time=ZERO,
        results=tuple(
            ctx.build("DeletableGroupResult", group_id=g, error_code=error) for g, error in results.items()
        ),
    )
