"""Consumer groups, committed offsets and idempotent producers.

FindCoordinator 0-4, JoinGroup 0-9, Heartbeat 0-4, LeaveGroup 0-5, SyncGroup 0-5,
DescribeGroups 0-5, ListGroups 0-5, OffsetCommit 2-9, OffsetFetch 1-9, DeleteGroups 0-2,
OffsetDelete 0 and InitProducerId 0-5, translated to :mod:`brokerd.groups` and
:mod:`brokerd.producers`. Also the produce-path hooks (:func:`check_produce`,
:func:`produce_appended`) for sequence checks and the test-only fault hook.

The runtime (coordinator, producer ids and sequence state) lives on ``broker.groups``; it is
started by :func:`start` at broker start-up (or on first use) and stopped by :func:`stop`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import struct
from typing import Any

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.errors import CloseConnection
from brokerd.groups import CommitEntry, GroupConfig, GroupCoordinator
from brokerd.groups.config import KAFKA_NAMES
from brokerd.handlers import register
from brokerd.producers import ProducerIdAllocator, ProducerStateManager
from brokerd.records import HEADER, HEADER_SIZE, LOG_OVERHEAD

log = logging.getLogger("brokerd.groups")

E = ErrorCode
ZERO = datetime.timedelta(0)
MS = datetime.timedelta(milliseconds=1)
SNAPSHOT_INTERVAL_S = 10.0
FAULT_SETTING = "test.fault.produce.drop.after.append"


def _ms(value: Any) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value // MS)
    return int(value)


def _client_host(ctx) -> str:
    peer = getattr(ctx.conn, "peer", "") or ""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return f"/{host}" if host else ""


# --- runtime ---------------------------------------------------------------------------------


class GroupsRuntime:
    """Per-broker state: the group coordinator and the idempotent-producer state."""

    def __init__(self, broker) -> None:
        self.broker = broker
        settings = {name: broker.config.get(name) for name in KAFKA_NAMES}
        self.config = GroupConfig.from_settings({k: v for k, v in settings.items() if v is not None})
        data_dir = broker.logs.data_dir
        self.coordinator = GroupCoordinator(data_dir, self.config, node_id=broker.node_id)
        self.producer_ids = ProducerIdAllocator(data_dir)
        self.producers = ProducerStateManager(data_dir, expiration_ms=self.config.producer_id_expiration_ms)
        self.fault_every = int(broker.config.get(FAULT_SETTING) or 0)
        self._idempotent_appends = 0
        self._snapshot_task: asyncio.Task | None = None
        self._dirty = False
        self.started = False

    def start(self) -> None:
        """Load everything (synchronous; call from the event loop)."""
        if self.started:
            return
        self.started = True
        self.coordinator.start_nowait()
        self.producer_ids.load()
        self.producers.load_snapshot()
        replayed = replay_producer_state(self.producers, self.broker.logs.all_logs())
        if replayed:
            log.info("producer state: replayed %d idempotent batches from the log", replayed)
        self._snapshot_task = asyncio.ensure_future(self._snapshot_loop())
        self._register_metrics()

    def _register_metrics(self) -> None:
        metrics = getattr(getattr(self.broker, "admin_state", None), "metrics", None)
        registry = getattr(metrics, "registry", None)
        if registry is None:
            return
        from brokerd.groups.metrics import GroupsCollector

        logs = self.broker.logs

        def end_offset(topic: str, partition: int) -> int | None:
            plog = logs.log(topic, partition)
            return None if plog is None else plog.next_offset

        registry.register(GroupsCollector(self.coordinator, end_offset))

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            self.producers.expire()
            if self._dirty:
                self._dirty = False
                try:
                    await asyncio.to_thread(self.producers.write_snapshot)
                except OSError as exc:
                    log.error("cannot write the producer state snapshot: %s", exc)

    async def stop(self) -> None:
        if not self.started:
            return
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
        try:
            self.producers.write_snapshot()
        except OSError as exc:
            log.error("cannot write the producer state snapshot: %s", exc)
        await self.coordinator.close()
        self.started = False


def runtime(broker) -> GroupsRuntime:
    rt = getattr(broker, "groups", None)
    if rt is None:
        rt = GroupsRuntime(broker)
        broker.groups = rt
    if not rt.started:
        rt.start()
    return rt


def start(broker) -> GroupsRuntime:
    """Broker start-up hook: load groups, offsets and producer state before serving."""
    return runtime(broker)


async def stop(broker) -> None:
    """Broker shutdown hook: snapshot producer state, answer parked requests, close the store."""
    rt = getattr(broker, "groups", None)
    if rt is not None:
        await rt.stop()


def coordinator(ctx) -> GroupCoordinator:
    return runtime(ctx.broker).coordinator


_PRODUCER_FIELDS = struct.Struct(">qhii")  # producer id, epoch, base sequence, record count
_PRODUCER_AT = 43


def replay_producer_state(producers: ProducerStateManager, logs) -> int:
    """Feed idempotent batch headers found after each partition's snapshot offset.

    Without a snapshot entry for a partition the active segment is replayed (Kafka snapshots at
    segment rolls; producers idle for longer than that have nothing left to retry).
    """
    applied = 0
    for plog in logs:
        tp = (plog.topic, plog.partition)
        start = producers.replay_from(tp)
        if start > plog.next_offset:
            producers.truncate(tp, plog.next_offset)
            start = plog.next_offset
        if start == 0 and plog.segments:
            start = plog.segments[-1].base
        batches = []
        for seg in plog.segments:
            if seg.size == 0 or (seg is not plog.segments[-1] and _next_base(plog, seg) <= start):
                continue
            for base, last, pid, epoch, seq, _count in _scan_headers(seg):
                if last >= start and pid >= 0:
                    # The sequence span comes from the offset span, as Kafka's lastSequence: the
                    # cleaner may have removed records (or all of them) from the batch.
                    batches.append((tp, base, last, pid, epoch, seq, last - base + 1))
        applied += producers.replay(batches)
    return applied


def _next_base(plog, seg) -> int:
    i = plog.segments.index(seg)
    return plog.segments[i + 1].base


def _scan_headers(seg):
    """(base, last offset, producer id, epoch, base sequence, count) of every batch of a segment."""
    pos = 0
    end = seg.size
    chunk_size = 1 << 20
    while pos + HEADER_SIZE <= end:
        chunk = seg.read_at(pos, min(chunk_size, end - pos))
        off = 0
        while len(chunk) - off >= HEADER_SIZE:
            fields = HEADER.unpack_from(chunk, off)
            base, length, magic, last_delta = fields[0], fields[1], fields[3], fields[6]
            if magic != 2 or length <= 0:
                return
            pid, epoch, seq, count = fields[9], fields[10], fields[11], fields[12]
            yield base, base + last_delta, pid, epoch, seq, count
            off += length + LOG_OVERHEAD
        if off == 0:
            return
        pos += off
        if off > len(chunk):
            continue


# --- produce path hooks ----------------------------------------------------------------------


class ProduceRefused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = int(code)


def check_produce(ctx, topic: str, partition: int, records) -> int | None:
    """Before appending: None to append, the original base offset of a duplicate, or raise
    :class:`ProduceRefused` (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH)."""
    view = memoryview(records)
    if len(view) < HEADER_SIZE:
        return None
    fields = HEADER.unpack_from(view, 0)
    pid = fields[9]
    if pid < 0:
        return None
    producers = runtime(ctx.broker).producers
    check = producers.check((topic, partition), pid, fields[10], fields[11], fields[12])
    if check.error is not E.none:
        raise ProduceRefused(check.error, check.message)
    if check.duplicate is not None:
        return check.duplicate.first_offset
    return None


def produce_appended(ctx, topic: str, partition: int, records, batches) -> None:
    """After appending: record idempotent batches (and run the test-only fault hook)."""
    view = memoryview(records)
    rt = runtime(ctx.broker)
    pos = 0
    idempotent = False
    for base, size, max_ts in batches:
        fields = HEADER.unpack_from(view, pos)
        pos += size
        if fields[9] < 0:
            continue
        idempotent = True
        rt.producers.on_append(
            (topic, partition), fields[9], fields[10], fields[11], fields[12], base, base + fields[6], max_ts
        )
    if idempotent:
        rt._dirty = True
        if rt.fault_every:
            rt._idempotent_appends += 1
            if rt._idempotent_appends % rt.fault_every == 0:
                log.warning("TEST FAULT: dropping the connection after appending to %s-%d", topic, partition)
                raise CloseConnection("test fault: dropped after append, before the response")


# --- FindCoordinator -------------------------------------------------------------------------


@register(10, 0, 4)
def find_coordinator(request, ctx):
    coord = coordinator(ctx)
    broker = ctx.broker
    host, port = broker.advertised(ctx.conn.listener, ctx.conn.port)
    v = ctx.api_version
    key_type = getattr(request, "key_type", 0)
    keys = list(request.coordinator_keys) if v >= 4 else [request.key]
    found = []
    for key in keys:
        # DESCRIBE on the group (or transactional id) to find its coordinator
        if key_type == 1 and not acls.allowed(ctx, acls.DESCRIBE, acls.TRANSACTIONAL_ID, key):
            found.append((key, -1, "", -1, E.transactional_id_authorization_failed, "Authorization failed."))
            continue
        if key_type != 1 and not acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, key):
            found.append((key, -1, "", -1, E.group_authorization_failed, "Authorization failed."))
            continue
        error, node = coord.find_coordinator(key, key_type)
        if error is E.none:
            found.append((key, node, host, port, error, None))
        else:
            message = "transactions are not supported" if error is E.invalid_request else error.name
            found.append((key, -1, "", -1, error, message))
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


@register(11, 0, 9)
async def join_group(request, ctx):
    v = ctx.api_version
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(
            throttle_time=ZERO, error_code=E.group_authorization_failed, generation_id=-1,
            protocol_type=None, protocol_name=None if v >= 7 else "", leader="", skip_assignment=False,
            member_id=request.member_id, members=(),
        )
    rebalance = _ms(request.rebalance_timeout) if v >= 1 else -1
    res = await coordinator(ctx).join(
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


@register(14, 0, 5)
async def sync_group(request, ctx):
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(throttle_time=ZERO, error_code=E.group_authorization_failed, protocol_type=None,
                            protocol_name=None, assignment=b"")
    res = await coordinator(ctx).sync(
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


@register(12, 0, 4)
def heartbeat(request, ctx):
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(throttle_time=ZERO, error_code=E.group_authorization_failed)
    error = coordinator(ctx).heartbeat(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
    )
    return ctx.response(throttle_time=ZERO, error_code=error)


@register(13, 0, 5)
def leave_group(request, ctx):
    v = ctx.api_version
    if not acls.allowed(ctx, acls.READ, acls.GROUP, request.group_id):
        return ctx.response(throttle_time=ZERO, error_code=E.group_authorization_failed, members=())
    if v >= 3:
        identities = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        identities = [(request.member_id, None)]
    error, results = coordinator(ctx).leave(request.group_id, identities)
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


@register(8, 2, 9)
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
        results = await coordinator(ctx).commit_offsets(
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


def _fetch_group(ctx, group_id, topics, require_stable, partition_cls, topic_cls):
    """(error, topic entities) for one group of an OffsetFetch request."""
    partitions = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    if acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, group_id):  # DESCRIBE on the group
        error, fetched = coordinator(ctx).fetch_offsets(group_id, partitions, require_stable=require_stable)
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


@register(9, 1, 9)
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


@register(47, 0, 0)
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
    error, results = await coordinator(ctx).delete_offsets(request.group_id, wanted)
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


@register(15, 0, 5)
def describe_groups(request, ctx):
    out = []
    # DESCRIBE on each group; the others are answered GROUP_AUTHORIZATION_FAILED
    include_ops = bool(getattr(request, "include_authorized_operations", False))
    denied = [g for g in request.groups if not acls.allowed(ctx, acls.DESCRIBE, acls.GROUP, g)]
    for g in denied:
        out.append(ctx.build(
            "DescribedGroup", error_code=E.group_authorization_failed, group_id=g, group_state="",
            protocol_type="", protocol_data="", members=(),
            authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        ))
    wanted = [g for g in request.groups if g not in denied] if denied else request.groups
    for d in coordinator(ctx).describe_groups(wanted):
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


@register(16, 0, 5)
def list_groups(request, ctx):
    states = getattr(request, "states_filter", None) or None
    types = getattr(request, "types_filter", None) or None
    error, listed = coordinator(ctx).list_groups(states, types)
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


@register(42, 0, 2)
async def delete_groups(request, ctx):
    # DELETE on each group
    names = list(request.groups_names)
    denied = {g for g in names if not acls.allowed(ctx, acls.DELETE, acls.GROUP, g)}
    deleted = await coordinator(ctx).delete_groups([g for g in names if g not in denied])
    results = {g: E.group_authorization_failed if g in denied else deleted[g] for g in names}
    return ctx.response(
        throttle_time=ZERO,
        results=tuple(
            ctx.build("DeletableGroupResult", group_id=g, error_code=error) for g, error in results.items()
        ),
    )


# --- InitProducerId --------------------------------------------------------------------------


@register(22, 0, 5)
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
    rt = runtime(ctx.broker)
    try:
        pid = rt.producer_ids.allocate()
    except OSError as exc:
        log.error("cannot reserve producer ids: %s", exc)
        return ctx.response(
            throttle_time=ZERO, error_code=E.coordinator_not_available, producer_id=-1, producer_epoch=-1
        )
    # Non-transactional producers always get a fresh id with epoch 0 (as Kafka does).
    return ctx.response(throttle_time=ZERO, error_code=E.none, producer_id=pid, producer_epoch=0)
