"""The classic-protocol group coordinator: Kafka's semantics, asyncio timers, a durable store.

Wire-independent. Long-waiting calls (:meth:`GroupCoordinator.join`, :meth:`~GroupCoordinator.sync`)
are coroutines that await futures completed by the state machine; the rest answer at once
(commits and deletions await the offsets log's fsync). Assignment bytes are relayed untouched,
so every client-side assignor works. The only bytes ever read are the topic names of a
``consumer`` subscription (for OffsetDelete and offset expiry), as Kafka does.

The state machine follows Kafka's GroupCoordinator / ClassicGroupMetadataManager; comments name
the Kafka behaviour where it is not obvious.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kio.schema.errors import ErrorCode

from brokerd.groups.config import GroupConfig
from brokerd.groups.consumer import (
    ConsumerGroup,
    ConsumerProtocol,
    ConsumerProtocolConfig,
    HeartbeatRequest,
    HeartbeatResult,
    TopicsView,
    encode_subscription,
    group_from_document,
)
from brokerd.groups.consumer import GroupDescription as ConsumerDescription
from brokerd.groups.consumer import describe as describe_consumer_group
from brokerd.groups.group import (
    CONSUMER_PROTOCOL_TYPE,
    Group,
    GroupState,
    JoinResult,
    Member,
    SyncResult,
    new_member_id,
)
from brokerd.groups.migration import assignment_bytes
from brokerd.groups.mixed import MixedGroups
from brokerd.groups.store import (
    LoadedState,
    OffsetAndMetadata,
    OffsetsStore,
    StoreError,
    TopicPartition,
    write_error,
)
from brokerd.groups.topic_store import OffsetsTopicStore, fold

GroupStore = OffsetsStore | OffsetsTopicStore

log = logging.getLogger("brokerd.groups")

E = ErrorCode
OFFSETS_DIR = "__consumer_offsets"
COORDINATOR_TYPE_GROUP = 0
COORDINATOR_TYPE_TRANSACTION = 1


@dataclass(slots=True)
class CommitEntry:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""


@dataclass(slots=True)
class FetchedOffset:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode


@dataclass(slots=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(slots=True)
class GroupDescription:
    error: ErrorCode
    group_id: str
    state: str
    protocol_type: str
    protocol_data: str
    members: list[MemberDescription] = field(default_factory=list)


@dataclass(slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


@dataclass(slots=True)
class LeaveMemberResult:
    member_id: str
    group_instance_id: str | None
    error: ErrorCode


@dataclass(slots=True)
class GroupMetrics:
    groups_by_state: dict[str, int]
    members_by_group: dict[str, int]


@dataclass(slots=True)
class _JoinRequest:
    """A JoinGroup request as the state machine reads it (``member_id`` "" for an unknown member)."""

    member_id: str
    instance_id: str | None
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_ms: int
    rebalance_ms: int
    client_id: str
    client_host: str
    api_version: int
    reason: str | None


def _wall_ms() -> int:
    return int(time.time() * 1000)


class GroupCoordinator(MixedGroups):
    """One broker's group coordinator (single node: coordinator for every group)."""

    #: loading a partition needs its batches: transactions and their markers decide offsets
    reads_batches = True

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        config: GroupConfig | None = None,
        *,
        node_id: int = 0,
        is_coordinator_for: Callable[[str], bool] | None = None,
        clock: Callable[[], int] = _wall_ms,
        fsync: bool = True,
        topics: Callable[[], TopicsView] | None = None,
        store: GroupStore | None = None,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        """Without ``store``, every group lives in the broker's own offsets file, loaded at
        start. With a ``store`` over ``__consumer_offsets`` and ``partition_of`` (a group's
        partition), this coordinator serves only the groups of the partitions loaded into it
        (:meth:`begin_load`, :meth:`load`, :meth:`unload`: the partitions this broker leads)."""
        self.config = config or GroupConfig()
        cfg = self.config
        self.consumer = ConsumerProtocol(
            ConsumerProtocolConfig(
                cfg.consumer_session_timeout_ms,
                cfg.consumer_heartbeat_interval_ms,
                cfg.consumer_max_size,
                tuple(cfg.consumer_assignors),
            ),
            topics or dict,
            self._consumer_group_changed,
        )
        self.consumer.downgrade = self._downgrade
        self._consumer_writes: dict[str, asyncio.Future[None]] = {}
        self.node_id = node_id
        self.directory = Path(data_dir) / OFFSETS_DIR
        self.store: GroupStore = store if store is not None else OffsetsStore(
            self.directory,
            flush_window_ms=self.config.commit_flush_window_ms,
            compaction_min_records=self.config.compaction_min_records,
            fsync=fsync,
        )
        self._partition_of = partition_of
        self._owned: set[int] = set()  # partitions whose groups this coordinator serves
        self._loading_partitions: set[int] = set()
        #: groups of the broker's own offsets file from before ``__consumer_offsets``, written into
        #: their partition when it is first loaded here without them
        self.legacy: LoadedState | None = None
        self._is_coordinator_for = is_coordinator_for
        self._clock = clock
        self._groups: dict[str, Group] = {}
        self._active = False
        self._loading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expiry_handle: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.load_seconds = 0.0
        #: (group, partition) -> whether a transaction holds an offset for it not yet committed or
        #: aborted: OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT (KIP-447)
        self.transactional_pending: Callable[[str, TopicPartition], bool] | None = None
        #: producer id -> group -> offsets committed inside its open transaction (TxnOffsetCommit),
        #: in __consumer_offsets as its transactional records until its marker decides them
        self._txn_offsets: dict[int, dict[str, dict[TopicPartition, OffsetAndMetadata]]] = {}
        #: partition -> markers written to it while it loads (producer id, commit, offset)
        self._markers_while_loading: dict[int, list[tuple[int, bool, int]]] = {}

    # ==== lifecycle ===========================================================================

    async def start(self) -> None:
        """Load groups and committed offsets, then start serving (and the expiry timer)."""
        self.start_nowait()

    def start_nowait(self) -> None:
        """:meth:`start` without awaiting (it never blocks on the loop); needs a running loop."""
        if self._active:
            return
        self._loop = asyncio.get_running_loop()
        if self._partition_of is not None:  # groups arrive partition by partition
            self._active = True
            self._schedule_expiry()
            return
        self._loading = True
        started = time.perf_counter()
        assert isinstance(self.store, OffsetsStore)
        state = self.store.load()
        self._adopt(state)
        self.load_seconds = time.perf_counter() - started
        self._loading = False
        self._active = True
        log.info(
            "group coordinator loaded %d groups (%d log records) in %.1f ms",
            len(self._groups),
            state.records,
            self.load_seconds * 1000,
        )
        self._schedule_expiry()

    def _adopt(self, state: LoadedState) -> None:
        """Serve the groups and offsets of ``state`` (read from a log); members restored from
        it must heartbeat within their session timeout."""
        now = self._clock()
        adopted = []
        for group_id, doc in state.groups.items():
            group = self._groups[group_id] = self._group_from_document(group_id, doc, now)
            adopted.append(group)
        for group_id, offsets in state.offsets.items():
            group = self._groups.get(group_id)
            if group is None:
                group = self._groups[group_id] = Group(group_id, GroupState.EMPTY, now)
                adopted.append(group)
            group.offsets = offsets
        for group in adopted:
            for member in group.members.values():
                self._reschedule_heartbeat(group, member)
        self.consumer.start(self._loop, [g.consumer for g in adopted if g.consumer is not None])

    # ==== partitions of __consumer_offsets (brokerd/coordination/internal_topics.py) ==========

    def begin_load(self, partition: int) -> None:
        """This broker leads ``partition`` now: its groups answer COORDINATOR_LOAD_IN_PROGRESS
        until :meth:`load` has read them."""
        self._loading_partitions.add(partition)
        self._markers_while_loading[partition] = []

    async def load(self, partition: int, records: AsyncIterator[tuple[bytes | None, bytes | None]]) -> None:
        """Rebuild the groups of ``partition`` from its records, then serve them."""
        started = time.perf_counter()
        state = await fold(records)
        if partition not in self._loading_partitions:
            return  # unloaded meanwhile
        self._import_legacy(partition, state)
        self._adopt(state)
        for producer_id, groups in state.txn_offsets.items():
            for group_id, offsets in groups.items():
                self._get_or_create(group_id)
                self._txn_offsets.setdefault(producer_id, {}).setdefault(group_id, {}).update(offsets)
        self._loading_partitions.discard(partition)
        self._owned.add(partition)
        for producer_id, commit, offset in self._markers_while_loading.pop(partition, ()):
            if offset >= state.end_offset:  # past what the load read: decide it now
                self.transaction_marker(partition, producer_id, commit, offset)
        self.load_seconds = time.perf_counter() - started
        log.info(
            "group coordinator: partition %d loaded, %d groups (%d records) in %.1f ms",
            partition, len(set(state.groups) | set(state.offsets)), state.records, self.load_seconds * 1000,
        )  # fmt: skip

    def _import_legacy(self, partition: int, state: LoadedState) -> None:
        """Groups of the broker's former offsets file that map to ``partition`` and that the
        topic does not hold yet are written into it (once) and served from it."""
        legacy = self.legacy
        if legacy is None or self._partition_of is None:
            return
        for group_id in sorted(set(legacy.groups) | set(legacy.offsets)):
            if self._partition_of(group_id) != partition:
                continue
            doc = legacy.groups.pop(group_id, None)
            offsets = legacy.offsets.pop(group_id, None)
            if group_id in state.groups or group_id in state.offsets:
                continue  # the topic knows the group already: it is the newer truth
            if doc is not None:
                doc = {**doc, "members": []}  # members rejoin; their sessions did not survive
                state.groups[group_id] = doc
                self._track(self.store.put_group(group_id, doc))
            if offsets:
                state.offsets[group_id] = offsets
                self._track(self.store.commit(group_id, list(offsets.items())))
            log.info("group %s: moved from the broker's offsets file into __consumer_offsets", group_id)

    def unload(self, partition: int) -> None:
        """This broker no longer leads ``partition``: forget its groups. Requests parked in a
        join or sync get NOT_COORDINATOR and the clients find the new coordinator."""
        self._loading_partitions.discard(partition)
        self._owned.discard(partition)
        self._markers_while_loading.pop(partition, None)
        if self._partition_of is None:
            return
        for producer_id, groups in list(self._txn_offsets.items()):
            for group_id in [g for g in groups if self._partition_of(g) == partition]:
                del groups[group_id]
            if not groups:
                del self._txn_offsets[producer_id]
        leaving = [g for g in self._groups if self._partition_of(g) == partition]
        forget = getattr(self.store, "forget", None)
        if forget is not None:
            forget(leaving)
        for group_id in leaving:
            group = self._groups.pop(group_id)
            if group.consumer is not None:
                self.consumer.stop([group.consumer])
            self._cancel_timers(group)
            for member in group.members.values():
                member.cancel_heartbeat()
                group.complete_join(member, JoinResult(E.not_coordinator, member.member_id))
                member.complete_sync(SyncResult(E.not_coordinator))
            group.pending_members.clear()
            group.transition(GroupState.DEAD, self._now())

    def owns(self, group_id: str) -> bool:
        return self._partition_of is None or self._partition_of(group_id) in self._owned

    def _group_from_document(self, group_id: str, doc: dict, now: int) -> Group:
        if doc.get("type") == "consumer":
            group = Group(group_id, GroupState.EMPTY, now)
            group.consumer = group_from_document(group_id, doc)
            return group
        members_doc = doc.get("members") or []
        group = Group(group_id, GroupState.STABLE if members_doc else GroupState.EMPTY, now)
        group.generation_id = int(doc.get("generation", 0))
        group.protocol_type = doc.get("protocol_type") or None
        group.protocol_name = doc.get("protocol")
        ts = doc.get("current_state_timestamp", -1)
        group.state_timestamp_ms = None if ts is None or ts < 0 else int(ts)
        for md in members_doc:
            protocols = []
            if group.protocol_name is not None:
                protocols = [(group.protocol_name, bytes.fromhex(md.get("subscription", "")))]
            rebalance_timeout = md.get("rebalance_timeout", -1)
            member = Member(
                md["member_id"],
                md.get("group_instance_id"),
                md.get("client_id", ""),
                md.get("client_host", ""),
                rebalance_timeout if rebalance_timeout != -1 else md["session_timeout"],
                md["session_timeout"],
                group.protocol_type or "",
                protocols,
                bytes.fromhex(md.get("assignment", "")),
            )
            group.add(member, None)
        leader = doc.get("leader")
        if leader in group.members:
            group.leader_id = leader
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    async def close(self) -> None:
        """Stop serving: fail parked requests with NOT_COORDINATOR, flush and close the store."""
        self._active = False
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        self.consumer.stop([g.consumer for g in self._groups.values() if g.consumer is not None])
        for group in self._groups.values():
            self._cancel_timers(group)
            for member in group.members.values():
                member.cancel_heartbeat()
                group.complete_join(member, JoinResult(E.not_coordinator, member.member_id))
                member.complete_sync(SyncResult(E.not_coordinator))
        if self._background:
            await asyncio.wait(list(self._background))
        await self.store.close()

    @property
    def active(self) -> bool:
        return self._active

    # ==== common ==============================================================================

    def _now(self) -> int:
        return self._clock()

    def _unavailable(self) -> ErrorCode | None:
        """The error while not serving: still loading, or not started (or closed)."""
        if self._active:
            return None
        return E.coordinator_load_in_progress if self._loading else E.coordinator_not_available

    def _not_serving(self, key: str) -> ErrorCode | None:
        """The error while not serving, or while ``key`` belongs to another coordinator."""
        error = self._unavailable()
        if error is None and self._partition_of is not None:
            partition = self._partition_of(key)
            if partition in self._loading_partitions:
                return E.coordinator_load_in_progress
            if partition not in self._owned:
                return E.not_coordinator
        if error is None and self._is_coordinator_for is not None and not self._is_coordinator_for(key):
            return E.not_coordinator
        return error

    def _validate(self, group_id: str | None, *, allow_empty_id: bool) -> ErrorCode | None:
        if group_id is None or (not allow_empty_id and group_id == ""):
            return E.invalid_group_id
        return self._not_serving(group_id)

    def _get_or_create(self, group_id: str) -> Group:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = Group(group_id, GroupState.EMPTY, self._now())
        return group

    def _cancel_timers(self, group: Group) -> None:
        """The group's join and sync timers and its pending members' expiry."""
        self._cancel_join_timer(group)
        self._cancel_sync_timer(group)
        for handle in group.pending_members.values():
            if handle is not None:
                handle.cancel()

    def _track(self, fut: asyncio.Future[None]) -> None:
        """Keep a fire-and-forget store append referenced and its failure logged."""
        self._background.add(fut)

        def done(f: asyncio.Future[None]) -> None:
            self._background.discard(f)
            if not f.cancelled() and f.exception() is not None:
                log.error("offsets log append failed: %s", f.exception())

        fut.add_done_callback(done)

    # ==== FindCoordinator =====================================================================

    def find_coordinator(self, key: str, key_type: int = COORDINATOR_TYPE_GROUP) -> tuple[ErrorCode, int]:
        """(error, node id) for one key; the caller maps the node id to its listener address."""
        if key_type != COORDINATOR_TYPE_GROUP:
            # Transactions are not supported (and not advertised).
            return E.invalid_request, -1
        error = self._not_serving(key)
        if error is not None:
            return error, -1
        return E.none, self.node_id

    # ==== JoinGroup ===========================================================================

    async def join(
        self,
        group_id: str,
        member_id: str,
        protocol_type: str,
        protocols: Iterable[tuple[str, bytes]],
        *,
        session_timeout_ms: int,
        rebalance_timeout_ms: int = -1,
        group_instance_id: str | None = None,
        client_id: str = "",
        client_host: str = "",
        api_version: int = 9,
        reason: str | None = None,
    ) -> JoinResult:
        """JoinGroup. ``api_version`` decides MEMBER_ID_REQUIRED (v4+) and skip_assignment (v9+)."""
        assert self._loop is not None, "start() the coordinator first"
        fut: asyncio.Future[JoinResult] = self._loop.create_future()
        if rebalance_timeout_ms is None or rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms  # JoinGroup v0 has no rebalance timeout
        request = _JoinRequest(
            member_id or "",
            group_instance_id,
            protocol_type,
            [(name, bytes(meta)) for name, meta in protocols],
            session_timeout_ms,
            rebalance_timeout_ms,
            client_id,
            client_host,
            api_version,
            reason,
        )
        self._handle_join(fut, group_id, request)
        return await fut

    def _handle_join(self, fut: asyncio.Future[JoinResult], group_id: str, req: _JoinRequest) -> None:
        member_id = req.member_id

        def respond(result: JoinResult) -> None:
            if not fut.done():
                fut.set_result(result)

        error = self._validate(group_id, allow_empty_id=False)
        if error is not None:
            return respond(JoinResult(error, member_id))
        cfg = self.config
        if not cfg.min_session_timeout_ms <= req.session_ms <= cfg.max_session_timeout_ms:
            return respond(JoinResult(E.invalid_session_timeout, member_id))
        is_unknown = member_id == ""
        group = self._groups.get(group_id)
        created = False
        if group is not None and group.consumer is not None:
            if group.consumer.members:
                return self._classic_join_to_consumer(group, req, respond)
            # An empty consumer group becomes a classic one, keeping its committed offsets.
            log.info("group %s: empty consumer group becomes a classic group", group_id)
            group.consumer = None
            group.protocol_type = None
        if group is None:
            if not is_unknown:
                return respond(JoinResult(E.unknown_member_id, member_id))
            group = self._get_or_create(group_id)
            created = True

        if not self._accept_joining_member(group, member_id):
            removed = group.remove(member_id)
            if removed is not None:
                removed.cancel_heartbeat()
            respond(JoinResult(E.group_max_size_reached, ""))
        elif is_unknown:
            self._join_new_member(group, fut, req)
        else:
            self._join_existing_member(group, fut, req)
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)
        if (
            created
            and not group.members
            and not group.pending_members
            and self._groups.get(group_id) is group
        ):
            del self._groups[group_id]

    def _accept_joining_member(self, group: Group, member_id: str) -> bool:
        max_size = self.config.max_size
        state = group.state
        if state in (GroupState.EMPTY, GroupState.DEAD):
            return True
        if state is GroupState.PREPARING_REBALANCE:
            member = group.members.get(member_id)
            return (member is not None and member.is_awaiting_join) or group.num_awaiting_join < max_size
        return member_id in group.members or len(group.members) < max_size

    def _join_new_member(self, group: Group, fut: asyncio.Future[JoinResult], req: _JoinRequest) -> None:
        if group.is_(GroupState.DEAD):
            fut.set_result(JoinResult(E.coordinator_not_available, ""))
            return
        if not group.supports_protocols(req.protocol_type, req.protocols):
            fut.set_result(JoinResult(E.inconsistent_group_protocol, ""))
            return
        instance_id = req.instance_id
        member_id = new_member_id(req.client_id, instance_id)
        if instance_id is not None:
            existing = group.static_member_id(instance_id)
            if existing is not None:
                log.info(
                    "group %s: static member %s rejoins as %s (was %s) in state %s",
                    group.group_id,
                    instance_id,
                    member_id,
                    existing,
                    group.state.value,
                )
                self._update_static_member_and_rebalance(group, existing, member_id, instance_id, req, fut)
            else:
                self._add_member_and_rebalance(group, member_id, req, fut)
        elif req.api_version >= 4:
            # KIP-394: hand out a member id and ask the client to rejoin with it.
            assert self._loop is not None
            group.pending_members[member_id] = self._loop.call_later(
                req.session_ms / 1000, self._on_pending_member_expired, group, member_id
            )
            fut.set_result(JoinResult(E.member_id_required, member_id))
        else:
            self._add_member_and_rebalance(group, member_id, req, fut)

    def _join_existing_member(self, group: Group, fut: asyncio.Future[JoinResult], req: _JoinRequest) -> None:
        member_id, instance_id, protocols = req.member_id, req.instance_id, req.protocols
        if group.is_(GroupState.DEAD):
            fut.set_result(JoinResult(E.coordinator_not_available, member_id))
            return
        if not group.supports_protocols(req.protocol_type, protocols):
            fut.set_result(JoinResult(E.inconsistent_group_protocol, member_id))
            return
        if group.is_pending(member_id):
            if instance_id is not None:  # a pending member is always dynamic
                fut.set_result(JoinResult(E.unknown_member_id, member_id))
                return
            self._add_member_and_rebalance(group, member_id, req, fut)
            return
        error = group.validate_member(member_id, instance_id)
        if error is not None:
            fut.set_result(JoinResult(error, member_id))
            return
        member = group.members[member_id]
        state = group.state
        if state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, req, fut)
        elif state is GroupState.COMPLETING_REBALANCE:
            if member.matches(protocols):
                # The member lost the JoinGroup response: repeat this generation's answer.
                fut.set_result(self._join_result(group, member, with_members=group.is_leader(member_id)))
            else:
                self._update_member_and_rebalance(group, member, req, fut)
        elif state is GroupState.STABLE:
            if group.is_leader(member_id) or not member.matches(protocols):
                # A rejoining leader forces a rebalance (e.g. topic metadata changed).
                self._update_member_and_rebalance(group, member, req, fut)
            else:
                fut.set_result(self._join_result(group, member, with_members=False))
        else:
            fut.set_result(JoinResult(E.unknown_member_id, member_id))

    def _join_result(
        self, group: Group, member: Member, *, with_members: bool, skip_assignment: bool = False
    ) -> JoinResult:
        """This generation's JoinGroup answer to ``member`` (the members' metadata if ``with_members``)."""
        return JoinResult(
            E.none,
            member.member_id,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            skip_assignment,
            group.current_member_metadata() if with_members else [],
        )

    def _add_member_and_rebalance(
        self, group: Group, member_id: str, req: _JoinRequest, fut: asyncio.Future[JoinResult]
    ) -> None:
        """Add ``member_id`` (with the request's static instance id, if any) and rebalance."""
        member = Member(
            member_id,
            req.instance_id,
            req.client_id,
            req.client_host,
            req.rebalance_ms,
            req.session_ms,
            req.protocol_type,
            req.protocols,
        )
        member.is_new = True
        if group.is_(GroupState.PREPARING_REBALANCE) and group.previous_state is GroupState.EMPTY:
            group.new_member_added = True  # extends the initial rebalance delay
        group.add(member, fut)
        # A parked new member cannot heartbeat; time its JoinGroup out instead (KIP-394).
        self._reschedule_heartbeat(group, member, self.config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance(group, f"adding new member {member_id}; reason: {req.reason}")

    def _update_member_and_rebalance(
        self, group: Group, member: Member, req: _JoinRequest, fut: asyncio.Future[JoinResult]
    ) -> None:
        group.update_member(member, req.protocols, req.rebalance_ms, req.session_ms, fut)
        self._maybe_prepare_rebalance(group, f"member {member.member_id} rejoins; reason: {req.reason}")

    def _update_static_member_and_rebalance(
        self,
        group: Group,
        old_id: str,
        new_id: str,
        instance_id: str,
        req: _JoinRequest,
        fut: asyncio.Future[JoinResult],
    ) -> None:
        current_leader = group.leader_id
        member = group.replace_static_member(instance_id, old_id, new_id)
        self._reschedule_heartbeat(group, member)
        old_protocols = member.protocols
        old_rebalance, old_session = member.rebalance_timeout_ms, member.session_timeout_ms
        group.update_member(member, req.protocols, req.rebalance_ms, req.session_ms, fut)

        if group.is_(GroupState.STABLE):
            if group.protocol_name == group.select_protocol():
                # The static member comes back with nothing that changes the assignment: persist
                # its new member id and answer with the current generation, no rebalance.
                generation = group.generation_id
                stored = self.store.put_group(group.group_id, group.to_document())

                def done(f: asyncio.Future[None]) -> None:
                    if group.members.get(new_id) is not member:
                        return
                    error = write_error(f)
                    if error is not None:
                        log.warning(
                            "group %s: could not persist static member %s; reverting",
                            group.group_id,
                            instance_id,
                        )
                        group.update_member(member, old_protocols, old_rebalance, old_session, None)
                        group.replace_static_member(instance_id, new_id, old_id)
                        self._reschedule_heartbeat(group, member)
                        if not fut.done():
                            fut.set_result(
                                JoinResult(
                                    error,
                                    "",
                                    generation,
                                    group.protocol_type,
                                    group.protocol_name,
                                    current_leader or "",
                                )
                            )
                        return
                    if req.api_version >= 9:
                        is_leader = group.is_leader(new_id)
                        result = self._join_result(
                            group, member, with_members=is_leader, skip_assignment=is_leader
                        )
                    else:
                        # Return the old leader id so that a returning leader does not compute an
                        # assignment a Stable group would never send out.
                        result = JoinResult(
                            E.none,
                            new_id,
                            group.generation_id,
                            group.protocol_type,
                            group.protocol_name,
                            current_leader or "",
                        )
                    group.complete_join(member, result)

                stored.add_done_callback(done)
            else:
                self._maybe_prepare_rebalance(
                    group,
                    f"static member {instance_id} rejoined with a change of protocol; reason: {req.reason}",
                )
        elif group.is_(GroupState.COMPLETING_REBALANCE):
            # The leader may have been given the old member id; rebalance so that assignments match.
            self._prepare_rebalance(group, f"static member {instance_id} rejoined during CompletingRebalance")
        # PreparingRebalance: the member simply waits for the join phase to complete.

    # ==== rebalance machinery =================================================================

    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_(GroupState.COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, E.rebalance_in_progress)
        self._cancel_sync_timer(group)
        self._cancel_join_timer(group)
        log.info(
            "group %s: preparing to rebalance (generation %d): %s",
            group.group_id,
            group.generation_id,
            reason,
        )
        if group.is_(GroupState.EMPTY):
            delay = self.config.initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms - delay, 0)
            group.transition(GroupState.PREPARING_REBALANCE, self._now())
            self._schedule_initial_join(group, delay, remaining)
        else:
            group.transition(GroupState.PREPARING_REBALANCE, self._now())
            self._schedule_join(group, group.rebalance_timeout_ms)
            self._try_complete_join(group)

    def _schedule_initial_join(self, group: Group, delay_ms: int, remaining_ms: int) -> None:
        assert self._loop is not None
        group.join_is_initial = True
        group.join_timer = self._loop.call_later(
            delay_ms / 1000, self._on_initial_join_expired, group, delay_ms, remaining_ms
        )

    def _on_initial_join_expired(self, group: Group, delay_ms: int, remaining_ms: int) -> None:
        group.join_timer = None
        if not group.is_(GroupState.PREPARING_REBALANCE):
            return
        if group.new_member_added and remaining_ms != 0:
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, remaining_ms)
            self._schedule_initial_join(group, delay, max(remaining_ms - delay_ms, 0))
        else:
            self._on_complete_join(group)

    def _schedule_join(self, group: Group, timeout_ms: int) -> None:
        assert self._loop is not None
        group.join_is_initial = False
        group.join_timer = self._loop.call_later(timeout_ms / 1000, self._on_join_expired, group)

    def _on_join_expired(self, group: Group) -> None:
        group.join_timer = None
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._on_complete_join(group)

    def _cancel_join_timer(self, group: Group) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None

    def _try_complete_join(self, group: Group) -> None:
        if (
            group.is_(GroupState.PREPARING_REBALANCE)
            and not group.join_is_initial
            and group.has_all_members_joined()
        ):
            self._on_complete_join(group)

    def _on_complete_join(self, group: Group) -> None:
        self._cancel_join_timer(group)
        # Dynamic members that did not rejoin within the rebalance timeout are dropped; static
        # members are kept (they may come back within their session timeout).
        for member in [m for m in group.not_yet_rejoined() if not m.is_static]:
            log.info(
                "group %s: member %s did not rejoin in time; removing it", group.group_id, member.member_id
            )
            group.remove(member.member_id)
            member.cancel_heartbeat()
            member.complete_sync(SyncResult(E.unknown_member_id))
        if group.is_(GroupState.DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Nobody rejoined (only absent static members remain): wait for their sessions to expire.
            self._schedule_join(group, group.rebalance_timeout_ms)
            return
        group.init_next_generation(self._now())
        if group.is_(GroupState.EMPTY):
            log.info("group %s: generation %d is empty", group.group_id, group.generation_id)
            self._track(self.store.put_group(group.group_id, group.to_document()))
            return
        log.info(
            "group %s: generation %d with %d members, protocol %s, leader %s",
            group.group_id,
            group.generation_id,
            len(group.members),
            group.protocol_name,
            group.leader_id,
        )
        for member in list(group.members.values()):
            group.complete_join(
                member, self._join_result(group, member, with_members=group.is_leader(member.member_id))
            )
            self._reschedule_heartbeat(group, member)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        self._schedule_pending_sync(group)

    def _schedule_pending_sync(self, group: Group) -> None:
        assert self._loop is not None
        self._cancel_sync_timer(group)
        group.sync_timer = self._loop.call_later(
            group.rebalance_timeout_ms / 1000, self._on_pending_sync_expired, group, group.generation_id
        )

    def _cancel_sync_timer(self, group: Group) -> None:
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _on_pending_sync_expired(self, group: Group, generation: int) -> None:
        group.sync_timer = None
        if generation != group.generation_id:
            return
        if group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE) and group.pending_sync_members:
            missing = sorted(group.pending_sync_members)
            for member_id in missing:
                member = group.remove(member_id)
                if member is not None:
                    member.cancel_heartbeat()
                    member.complete_sync(SyncResult(E.unknown_member_id))
            self._prepare_rebalance(group, f"members {missing} did not send SyncGroup in time")

    def _remove_pending_sync_member(self, group: Group, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        settled = group.state in (GroupState.DEAD, GroupState.EMPTY, GroupState.PREPARING_REBALANCE)
        if settled or not group.pending_sync_members:
            self._cancel_sync_timer(group)

    def _reset_and_propagate_assignment_error(self, group: Group, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: Group, error: ErrorCode) -> None:
        ok = error is E.none
        for member in group.members.values():
            result = SyncResult(
                error,
                group.protocol_type if ok else None,
                group.protocol_name if ok else None,
                member.assignment if ok else b"",
            )
            if member.complete_sync(result):
                # Restart the session clock now that the member has its assignment.
                self._reschedule_heartbeat(group, member)

    # -- heartbeats (session timeouts) --------------------------------------------------------

    def _reschedule_heartbeat(self, group: Group, member: Member, timeout_ms: int | None = None) -> None:
        assert self._loop is not None
        member.cancel_heartbeat()
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.heartbeat_handle = self._loop.call_later(
            timeout / 1000, self._on_heartbeat_expired, group, member
        )

    def _on_heartbeat_expired(self, group: Group, member: Member) -> None:
        member.heartbeat_handle = None
        if group.is_(GroupState.DEAD) or group.members.get(member.member_id) is not member:
            return
        if not member.has_satisfied_heartbeat():
            log.info("group %s: member %s session expired; removing it", group.group_id, member.member_id)
            self._remove_member_and_update_group(group, member, f"member {member.member_id} session expired")

    def _on_pending_member_expired(self, group: Group, member_id: str) -> None:
        if group.is_(GroupState.DEAD) or member_id not in group.pending_members:
            return
        group.pending_members.pop(member_id, None)
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _remove_member_and_update_group(self, group: Group, member: Member, reason: str) -> None:
        # A parked new member may time out during a rebalance: answer UNKNOWN_MEMBER_ID so that
        # a client that is still alive retries.
        group.complete_join(member, JoinResult(E.unknown_member_id, ""))
        member.complete_sync(SyncResult(E.unknown_member_id))
        group.remove(member.member_id)
        member.cancel_heartbeat()
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, reason)
        elif group.is_(GroupState.PREPARING_REBALANCE):
            self._try_complete_join(group)

    # ==== SyncGroup ===========================================================================

    async def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        *,
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        assignments: Mapping[str, bytes] | Iterable[tuple[str, bytes]] = (),
    ) -> SyncResult:
        assert self._loop is not None, "start() the coordinator first"
        fut: asyncio.Future[SyncResult] = self._loop.create_future()
        if isinstance(assignments, Mapping):
            assignment_map = {k: bytes(v) for k, v in assignments.items()}
        else:
            assignment_map = {k: bytes(v) for k, v in assignments}
        self._handle_sync(
            fut,
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            protocol_type,
            protocol_name,
            assignment_map,
        )
        return await fut

    def _handle_sync(
        self,
        fut: asyncio.Future[SyncResult],
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> None:
        error = self._validate(group_id, allow_empty_id=False)
        if error is not None:
            # A loading coordinator means an unstable group: have the member rejoin.
            fut.set_result(
                SyncResult(E.rebalance_in_progress if error is E.coordinator_load_in_progress else error)
            )
            return
        group = self._groups.get(group_id)
        if group is not None and group.consumer is not None:
            fut.set_result(
                self._classic_sync_to_consumer(
                    group, generation_id, member_id, instance_id, protocol_type, protocol_name
                )
            )
            return
        if group is None or group.is_(GroupState.EMPTY):
            fut.set_result(SyncResult(E.unknown_member_id))
            return
        if group.is_(GroupState.DEAD):
            fut.set_result(SyncResult(E.coordinator_not_available))
            return
        error = group.validate_member(member_id, instance_id)
        if error is None and generation_id != group.generation_id:
            error = E.illegal_generation
        if error is None and (
            (
                protocol_type is not None
                and group.protocol_type is not None
                and protocol_type != group.protocol_type
            )
            or (
                protocol_name is not None
                and group.protocol_name is not None
                and protocol_name != group.protocol_name
            )
        ):
            error = E.inconsistent_group_protocol
        if error is not None:
            fut.set_result(SyncResult(error))
            return
        if group.is_(GroupState.PREPARING_REBALANCE):
            fut.set_result(SyncResult(E.rebalance_in_progress))
            return
        member = group.members[member_id]
        if group.is_(GroupState.STABLE):
            self._remove_pending_sync_member(group, member_id)
            fut.set_result(SyncResult(E.none, group.protocol_type, group.protocol_name, member.assignment))
            self._reschedule_heartbeat(group, member)
            return
        # CompletingRebalance: park until the leader's assignment is stored.
        if member.sync_future is not None and member.sync_future is not fut:
            member.complete_sync(SyncResult(E.rebalance_in_progress))
        member.sync_future = fut
        self._remove_pending_sync_member(group, member_id)
        if not group.is_leader(member_id):
            return
        assignment = {mid: assignments.get(mid, b"") for mid in group.members}
        generation = group.generation_id
        stored = self.store.put_group(group.group_id, group.to_document(assignment))

        def done(f: asyncio.Future[None]) -> None:
            # The group may have moved on while the assignment was being stored.
            if not (group.is_(GroupState.COMPLETING_REBALANCE) and group.generation_id == generation):
                return
            error = write_error(f)
            if error is not None:
                self._reset_and_propagate_assignment_error(group, error)
                self._maybe_prepare_rebalance(group, "failed to store the group assignment")
                return
            for m in group.members.values():
                m.assignment = assignment.get(m.member_id, b"")
            self._propagate_assignment(group, E.none)
            group.transition(GroupState.STABLE, self._now())
            log.info("group %s: stable at generation %d", group.group_id, generation)

        stored.add_done_callback(done)

    # ==== Heartbeat ===========================================================================

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None = None
    ) -> ErrorCode:
        error = self._validate(group_id, allow_empty_id=False)
        if error is not None:
            return E.none if error is E.coordinator_load_in_progress else error
        group = self._groups.get(group_id)
        if group is None:
            return E.unknown_member_id
        if group.consumer is not None:
            consumer = group.consumer
            return self.consumer.classic_heartbeat(consumer, member_id, group_instance_id, generation_id)
        if group.is_(GroupState.DEAD):
            return E.coordinator_not_available
        error = group.validate_member(member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return E.illegal_generation
        if group.is_(GroupState.EMPTY):
            return E.unknown_member_id
        self._reschedule_heartbeat(group, group.members[member_id])
        if group.is_(GroupState.PREPARING_REBALANCE):
            return E.rebalance_in_progress
        return E.none

    # ==== LeaveGroup ==========================================================================

    def leave(
        self, group_id: str, members: Iterable[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[LeaveMemberResult]]:
        """LeaveGroup for (member_id, group_instance_id) pairs; member_id "" removes by instance id."""
        error = self._validate(group_id, allow_empty_id=False)
        if error is not None:
            return error, []
        group = self._groups.get(group_id)
        if group is None:
            return E.unknown_member_id, []
        if group.is_(GroupState.DEAD):
            return E.coordinator_not_available, []
        if group.consumer is not None:
            left = self._classic_leave_from_consumer(group.consumer, members)
            return E.none, [LeaveMemberResult(m, i, e) for m, i, e in left]
        results = []
        for member_id, instance_id in members:
            if member_id == "":
                current = group.static_member_id(instance_id)
                if current is not None:
                    self._remove_current_member(group, current, "removed by instance id")
                    results.append(LeaveMemberResult(member_id, instance_id, E.none))
                else:
                    results.append(LeaveMemberResult(member_id, instance_id, E.unknown_member_id))
            elif group.is_pending(member_id):
                group.remove(member_id)
                if group.is_(GroupState.PREPARING_REBALANCE):
                    self._try_complete_join(group)
                results.append(LeaveMemberResult(member_id, instance_id, E.none))
            else:
                error = group.validate_member(member_id, instance_id)
                if error is None:
                    self._remove_current_member(group, member_id, "left the group")
                results.append(LeaveMemberResult(member_id, instance_id, error or E.none))
        return E.none, results

    def _remove_current_member(self, group: Group, member_id: str, reason: str) -> None:
        member = group.members[member_id]
        log.info("group %s: member %s %s", group.group_id, member_id, reason)
        self._remove_member_and_update_group(group, member, f"member {member_id} {reason}")

    # ==== ConsumerGroupHeartbeat / ConsumerGroupDescribe (the consumer protocol) ==============

    async def consumer_heartbeat(self, group_id: str, request: HeartbeatRequest) -> HeartbeatResult:
        """ConsumerGroupHeartbeat; answers once the group's new state is durable."""
        error = self._not_serving(group_id or "")
        if error is not None:
            return HeartbeatResult(error, None, request.member_id or None)
        if not group_id:
            return HeartbeatResult(E.invalid_request, "GroupId can't be empty.", request.member_id or None)
        if request.member_epoch < -2:
            return HeartbeatResult(E.invalid_request, "MemberEpoch is invalid.", request.member_id or None)
        group = self._groups.get(group_id)
        joining = request.member_epoch == 0
        new_group = False
        if group is not None and group.is_(GroupState.DEAD):
            group = None
        if group is None:
            if not joining:
                message = f"Group {group_id} not found."
                return HeartbeatResult(E.group_id_not_found, message, request.member_id)
            group = self._get_or_create(group_id)
            group.consumer = ConsumerGroup(group_id)
            new_group = True
        elif group.consumer is None:
            # An empty classic group (no member, none joining) becomes a consumer group whatever
            # the migration policy; its committed offsets stay, so members resume from them.
            empty = not group.members and not group.pending_members and group.is_(GroupState.EMPTY)
            if not joining or (not empty and self._upgrade(group) is None):
                return HeartbeatResult(
                    E.group_id_not_found, f"Group {group_id} is not a consumer group.", request.member_id
                )
        if group.consumer is None:
            log.info("group %s: empty classic group becomes a consumer group", group_id)
            self._cancel_timers(group)
            group.generation_id = 0
            group.protocol_name = None
            group.leader_id = None
            group.consumer = ConsumerGroup(group_id)
            new_group = True
        group.protocol_type = CONSUMER_PROTOCOL_TYPE
        result = self.consumer.heartbeat(group.consumer, request, new_group=new_group)
        if result.error is not E.none and new_group and not group.consumer.members and not group.offsets:
            self._kill_group(group)
        write = self._consumer_writes.pop(group_id, None)
        if write is not None:
            try:
                await asyncio.shield(write)
            except StoreError as exc:
                return HeartbeatResult(exc.code, None, request.member_id)
        return result

    def _consumer_group_changed(self, consumer: ConsumerGroup) -> None:
        entry = self._groups.get(consumer.group_id)
        if entry is None or entry.consumer is not consumer:
            return
        document = consumer.to_document()
        document["tombstone_members"] = sorted(consumer.persisted_members - set(consumer.members))
        consumer.persisted_members = set(consumer.members)
        fut = self.store.put_group(consumer.group_id, document)
        self._track(fut)
        self._consumer_writes[consumer.group_id] = fut
        if not consumer.members:
            entry.state_timestamp_ms = self._now()

    def consumer_describe(self, group_ids: Iterable[str]) -> list[ConsumerDescription]:
        """ConsumerGroupDescribe: a classic group is GROUP_ID_NOT_FOUND, as Kafka answers."""
        topics = self.consumer.topics()
        out = []
        for group_id in group_ids:
            error = self._not_serving(group_id)
            if error is not None:
                out.append(ConsumerDescription(error, group_id))
                continue
            group = self._groups.get(group_id)
            if group is None or group.is_(GroupState.DEAD):
                message = f"Group {group_id} not found."
                out.append(ConsumerDescription(E.group_id_not_found, group_id, message))
            elif group.consumer is None:
                message = f"Group {group_id} is not a consumer group."
                out.append(ConsumerDescription(E.group_id_not_found, group_id, message))
            else:
                out.append(describe_consumer_group(group.consumer, topics))
        return out

    # ==== OffsetCommit ========================================================================

    async def commit_offsets(
        self,
        group_id: str,
        offsets: Iterable[CommitEntry],
        *,
        generation_id: int = -1,
        member_id: str = "",
        group_instance_id: str | None = None,
        retention_time_ms: int = -1,
        api_version: int = 9,
    ) -> dict[TopicPartition, ErrorCode]:
        """OffsetCommit; answers after the commit is fsynced. Per-partition error codes."""
        entries = list(offsets)
        keys = [(e.topic, e.partition) for e in entries]

        def all_(error: ErrorCode) -> dict[TopicPartition, ErrorCode]:
            return dict.fromkeys(keys, error)

        error = self._validate(group_id, allow_empty_id=True)
        if error is not None:
            return all_(error)
        group = self._groups.get(group_id)
        if group is None:
            if generation_id < 0:
                # A "simple" group: offsets stored on behalf of a consumer without group management.
                group = self._get_or_create(group_id)
            else:
                return all_(E.group_id_not_found if api_version >= 9 else E.illegal_generation)
        error = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if error is not None:
            return all_(error)
        if group.state in (GroupState.STABLE, GroupState.PREPARING_REBALANCE) and member_id in group.members:
            self._reschedule_heartbeat(group, group.members[member_id])

        now = self._now()
        expire = now + retention_time_ms if retention_time_ms is not None and retention_time_ms >= 0 else -1
        results: dict[TopicPartition, ErrorCode] = {}
        to_store: list[tuple[TopicPartition, OffsetAndMetadata]] = []
        limit = self.config.offset_metadata_max_bytes
        for entry in entries:
            tp = (entry.topic, entry.partition)
            metadata = entry.metadata if entry.metadata is not None else ""
            if len(metadata.encode()) > limit:
                results[tp] = E.offset_metadata_too_large
                continue
            to_store.append((tp, OffsetAndMetadata(entry.offset, entry.leader_epoch, metadata, now, expire)))
        if not to_store:
            return results
        pending = group.pending_offset_commits
        for tp, _ in to_store:
            pending[tp] += 1
        try:
            await self.store.commit(group_id, to_store)
        except StoreError as exc:
            for tp, _ in to_store:
                results[tp] = exc.code
        else:
            live = not group.is_(GroupState.DEAD)
            for tp, om in to_store:
                if live:
                    group.offsets[tp] = om
                results[tp] = E.none
        finally:
            for tp, _ in to_store:
                pending[tp] -= 1
                if pending[tp] <= 0:
                    del pending[tp]
        return results

    def _validate_offset_commit(
        self, group: Group, generation_id: int, member_id: str, instance_id: str | None,
        *, transactional: bool = False,
    ) -> ErrorCode | None:
        """Kafka 4's ClassicGroup / ConsumerGroup.validateOffsetCommit (``transactional``: for
        TxnOffsetCommit, KIP-447)."""
        if group.is_(GroupState.DEAD):
            return E.coordinator_not_available
        if group.consumer is not None:
            return self._validate_consumer_member(group.consumer, member_id, generation_id)
        if generation_id < 0 and group.is_(GroupState.EMPTY):
            return None  # admin client or a consumer without group management
        if generation_id >= 0 or member_id or instance_id is not None:
            error = group.validate_member(member_id, instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return E.illegal_generation
        elif not transactional and not group.is_(GroupState.EMPTY):
            return E.unknown_member_id
        if not transactional and group.is_(GroupState.COMPLETING_REBALANCE):
            return E.rebalance_in_progress
        return None

    @staticmethod
    def _validate_consumer_member(
        consumer: ConsumerGroup, member_id: str, member_epoch: int
    ) -> ErrorCode | None:
        """A consumer-protocol member commits and fetches at its current member epoch (a classic
        member of the group at its generation, which is that epoch)."""
        if member_epoch < 0 and not member_id:
            # the admin client or a consumer without group management
            return None if not consumer.members else E.unknown_member_id
        member = consumer.members.get(member_id)
        if member is None:
            return E.unknown_member_id
        if member_epoch != member.member_epoch:
            return E.illegal_generation if member.classic is not None else E.stale_member_epoch
        return None

    # ==== TxnOffsetCommit (offsets committed inside a transaction) ===============================

    def validate_txn_offset_commit(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode | None:
        """KIP-447's fencing of a transactional commit: Kafka's ClassicGroup.validateOffsetCommit
        with isTransactional (a zombie member of an older generation is refused). A group that
        does not exist is accepted without a generation (a producer outside group management)."""
        error = self._validate(group_id, allow_empty_id=True)
        if error is not None:
            return error
        group = self._groups.get(group_id)
        if group is None:
            return None if generation_id < 0 else E.illegal_generation
        return self._validate_offset_commit(group, generation_id, member_id, instance_id, transactional=True)

    async def commit_in_transaction(
        self, group_id: str, producer_id: int, producer_epoch: int,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        """TxnOffsetCommit: the offsets become the producer's transactional records in the
        group's ``__consumer_offsets`` partition (durable, and replicated in a cluster, when this
        returns; StoreError otherwise), pending until its marker there decides them."""
        if not offsets:
            return
        if isinstance(self.store, OffsetsTopicStore):
            entries = sorted(offsets.items())
            await self.store.commit_in_transaction(group_id, producer_id, producer_epoch, entries)
        self._get_or_create(group_id)
        self._txn_offsets.setdefault(producer_id, {}).setdefault(group_id, {}).update(offsets)

    def transaction_marker(self, partition: int, producer_id: int, commit: bool, offset: int) -> None:
        """A commit or abort marker of the producer was written to ``partition`` of
        ``__consumer_offsets`` at ``offset``: its pending offsets of that partition's groups
        become the groups' committed offsets, or are dropped (Kafka's onTransactionCompleted).
        While the partition loads, the marker waits for the load (which may not read it)."""
        waiting = self._markers_while_loading.get(partition)
        if waiting is not None and partition in self._loading_partitions:
            waiting.append((producer_id, commit, offset))
            return
        groups = self._txn_offsets.get(producer_id)
        if not groups:
            return
        of = self._partition_of
        for group_id in [g for g in groups if of is None or of(g) == partition]:
            offsets = groups.pop(group_id)
            if not commit:
                continue
            group = self._get_or_create(group_id)
            if group.is_(GroupState.DEAD):
                continue
            group.offsets.update(offsets)
            if not isinstance(self.store, OffsetsTopicStore):  # a file store keeps only what it is given
                self._track(self.store.commit(group_id, sorted(offsets.items())))
        if not groups:
            del self._txn_offsets[producer_id]

    def _unstable(self, group_id: str, tp: TopicPartition) -> bool:
        """Whether an open transaction holds an offset of the group's partition (KIP-447)."""
        if any(tp in groups.get(group_id, ()) for groups in self._txn_offsets.values()):
            return True
        return self.transactional_pending is not None and self.transactional_pending(group_id, tp)

    async def commit_transactional(
        self, group_id: str, offsets: list[tuple[TopicPartition, OffsetAndMetadata]]
    ) -> None:
        """A committed transaction's offsets become the group's (its commit marker reached the
        group's offsets). Raises StoreError when they could not be made durable."""
        if not offsets:
            return
        group = self._groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            group = self._get_or_create(group_id)
        await self.store.commit(group_id, offsets)
        if not group.is_(GroupState.DEAD):
            for tp, om in offsets:
                group.offsets[tp] = om

    # ==== OffsetFetch =========================================================================

    def fetch_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        require_stable: bool = False,
        member_id: str | None = None,
        member_epoch: int = -1,
    ) -> tuple[ErrorCode, list[FetchedOffset]]:
        """OffsetFetch for one group; ``partitions=None`` means every committed partition.

        A consumer-protocol member names itself (v9+): a stale member epoch is refused, as Kafka does.
        """
        error = self._validate(group_id, allow_empty_id=True)
        if error is not None:
            return error, []
        group = self._groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            if member_id:
                return E.group_id_not_found, []
            if partitions is None:
                return E.none, []
            # a transaction may hold offsets of a group that has none committed yet
            return E.none, [
                FetchedOffset(t, p, -1, -1, "", E.unstable_offset_commit)
                if require_stable and self._unstable(group_id, (t, p))
                else FetchedOffset(t, p, -1, -1, "", E.none)
                for t, p in partitions
            ]
        if member_id and group.consumer is not None:
            error = self._validate_consumer_member(group.consumer, member_id, member_epoch)
            if error is not None:
                return error, []
        tps = sorted(group.offsets) if partitions is None else list(partitions)
        out = []
        for tp in tps:
            if require_stable and (
                group.pending_offset_commits.get(tp) or self._unstable(group_id, tp)
            ):
                out.append(FetchedOffset(tp[0], tp[1], -1, -1, "", E.unstable_offset_commit))
                continue
            om = group.offsets.get(tp)
            if om is None:
                out.append(FetchedOffset(tp[0], tp[1], -1, -1, "", E.none))
            else:
                out.append(FetchedOffset(tp[0], tp[1], om.offset, om.leader_epoch, om.metadata, E.none))
        return E.none, out

    # ==== DescribeGroups / ListGroups =========================================================

    def describe_groups(self, group_ids: Iterable[str]) -> list[GroupDescription]:
        out = []
        for group_id in group_ids:
            error = self._validate(group_id, allow_empty_id=True)
            if error is not None:
                out.append(GroupDescription(error, group_id, "", "", ""))
                continue
            group = self._groups.get(group_id)
            if group is None:
                out.append(GroupDescription(E.none, group_id, GroupState.DEAD.value, "", ""))
                continue
            if group.consumer is not None:
                # As Kafka 4 (ConsumerGroup.asDescribedGroup): older admin clients see the members
                # with their subscriptions and assignments in the classic consumer protocol's bytes.
                out.append(self._describe_consumer_group_classically(group.consumer))
                continue
            stable = group.is_(GroupState.STABLE) and group.protocol_name is not None
            members = []
            for m in group.members.values():
                metadata = b""
                if stable:
                    try:
                        metadata = m.metadata(group.protocol_name)  # type: ignore[arg-type]
                    except KeyError:
                        metadata = b""
                members.append(
                    MemberDescription(
                        m.member_id,
                        m.group_instance_id,
                        m.client_id,
                        m.client_host,
                        metadata,
                        m.assignment if stable else b"",
                    )
                )
            out.append(
                GroupDescription(
                    E.none,
                    group_id,
                    group.state.value,
                    group.protocol_type or "",
                    (group.protocol_name or "") if stable else "",
                    members,
                )
            )
        return out

    def _describe_consumer_group_classically(self, consumer: ConsumerGroup) -> GroupDescription:
        """A classic member (one staying in the group while it migrates) is described with the
        subscription bytes it joined with, user data and owned partitions included; a
        consumer-protocol member with a subscription made of its topics."""
        topics = self.consumer.topics()
        protocol = consumer.assignor_name or self.consumer.config.assignors[0]
        members = []
        for m in consumer.members.values():
            if m.classic is not None:
                metadata = m.classic.metadata(protocol)
            else:
                metadata = encode_subscription(sorted(m.subscribed_names))
            members.append(
                MemberDescription(
                    m.member_id,
                    m.instance_id,
                    m.client_id,
                    m.client_host,
                    metadata,
                    assignment_bytes(m.assigned, topics),
                )
            )
        return GroupDescription(
            E.none, consumer.group_id, consumer.state.value, CONSUMER_PROTOCOL_TYPE, protocol, members
        )

    def list_groups(
        self, states: Iterable[str] | None = None, types: Iterable[str] | None = None
    ) -> tuple[ErrorCode, list[GroupListing]]:
        error = self._unavailable()
        if error is None and self._loading_partitions:
            error = E.coordinator_load_in_progress
        if error is not None:
            return error, []
        state_filter = {s.lower() for s in states or ()}
        type_filter = {t.lower() for t in types or ()}
        out = []
        for group in self._groups.values():
            if group.is_(GroupState.DEAD):
                continue
            if group.consumer is not None:
                kind, state = "consumer", group.consumer.state.value
            else:
                kind, state = "classic", group.state.value
            if type_filter and kind not in type_filter:
                continue
            if state_filter and state.lower() not in state_filter:
                continue
            out.append(GroupListing(group.group_id, group.protocol_type or "", state, kind))
        return E.none, out

    # ==== DeleteGroups / OffsetDelete =========================================================

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        results: dict[str, ErrorCode] = {}
        stores: dict[str, asyncio.Future[None]] = {}
        for group_id in group_ids:
            error = self._validate(group_id, allow_empty_id=True)
            if error is not None:
                results[group_id] = error
                continue
            group = self._groups.get(group_id)
            if group is None or group.is_(GroupState.DEAD):
                results[group_id] = E.group_id_not_found
            elif group.consumer is not None and group.consumer.members:
                results[group_id] = E.non_empty_group
            elif group.is_(GroupState.EMPTY):
                offsets = list(group.offsets)
                self._kill_group(group)
                stores[group_id] = self.store.delete_group(group_id, offsets)
                results[group_id] = E.none
            else:
                results[group_id] = E.non_empty_group
        for group_id, fut in stores.items():
            try:
                await fut
            except StoreError as exc:
                results[group_id] = exc.code
        return results

    def _kill_group(self, group: Group) -> None:
        group.transition(GroupState.DEAD, self._now())
        self._cancel_timers(group)
        group.pending_members.clear()
        group.offsets.clear()
        if self._groups.get(group.group_id) is group:
            del self._groups[group.group_id]

    async def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        tps = list(partitions)
        error = self._validate(group_id, allow_empty_id=False)
        if error is not None:
            return error, {}
        group = self._groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return E.group_id_not_found, {}
        results: dict[TopicPartition, ErrorCode] = {}
        if group.consumer is not None and group.consumer.members:
            subscribed = group.consumer.subscribed_topic_names(self.consumer.topics())
            eligible = []
            for tp in tps:
                if tp[0] in subscribed:
                    results[tp] = E.group_subscribed_to_topic
                else:
                    eligible.append(tp)
        elif group.is_(GroupState.EMPTY):
            eligible = tps
        elif group.protocol_type == CONSUMER_PROTOCOL_TYPE:
            eligible = []
            for tp in tps:
                if group.is_subscribed_to_topic(tp[0]):
                    results[tp] = E.group_subscribed_to_topic
                else:
                    eligible.append(tp)
        else:
            return E.non_empty_group, {}
        removed = [tp for tp in eligible if group.offsets.pop(tp, None) is not None]
        for tp in eligible:
            results[tp] = E.none
        if removed:
            fut = self.store.delete_offsets(group_id, removed)
            if group.is_(GroupState.EMPTY) and not group.offsets and not group.pending_members:
                self._kill_group(group)
                self._track(self.store.delete_group(group_id))
            try:
                await fut
            except StoreError as exc:
                for tp in removed:
                    results[tp] = exc.code
        return E.none, results

    # ==== offset expiry =======================================================================

    def _schedule_expiry(self) -> None:
        assert self._loop is not None
        interval = self.config.offsets_retention_check_interval_ms / 1000
        self._expiry_handle = self._loop.call_later(interval, self._expiry_tick)

    def _expiry_tick(self) -> None:
        try:
            self.expire_offsets()
        finally:
            if self._active:
                self._schedule_expiry()

    def expire_offsets(self, now_ms: int | None = None) -> int:
        """Kafka's cleanupGroupMetadata: expire offsets, drop empty groups without offsets."""
        now = self._now() if now_ms is None else now_ms
        retention = self.config.offsets_retention_ms
        removed_total = 0
        for group in list(self._groups.values()):
            expired = self._expired_offsets(group, now, retention)
            if expired:
                for tp in expired:
                    del group.offsets[tp]
                removed_total += len(expired)
                self._track(self.store.delete_offsets(group.group_id, expired))
                log.info("group %s: expired %d committed offsets", group.group_id, len(expired))
            if (
                group.is_(GroupState.EMPTY)
                and not group.offsets
                and not group.pending_members
                and not group.pending_offset_commits
                and not any(group.group_id in groups for groups in self._txn_offsets.values())
                and (group.consumer is None or not group.consumer.members)
            ):
                self._kill_group(group)
                self._track(self.store.delete_group(group.group_id))
        return removed_total

    @staticmethod
    def _expired_offsets(group: Group, now: int, retention: int) -> list[TopicPartition]:
        def pick(
            base: Callable[[OffsetAndMetadata], int], subscribed: set[str] | frozenset[str] = frozenset()
        ):
            out = []
            for tp, om in group.offsets.items():
                if tp[0] in subscribed or group.pending_offset_commits.get(tp):
                    continue
                if om.expire_timestamp_ms >= 0:
                    if now >= om.expire_timestamp_ms:
                        out.append(tp)
                elif now - base(om) >= retention:
                    out.append(tp)
            return out

        if group.consumer is not None and group.consumer.members:
            # Offsets of topics the members subscribe to never expire.
            return pick(lambda om: om.commit_timestamp_ms, frozenset(group.consumer.subscription_metadata))
        if group.protocol_type and group.is_(GroupState.EMPTY):
            # No member left: the retention clock starts when the group became empty.
            ts = group.state_timestamp_ms
            return pick(lambda om: ts if ts is not None else om.commit_timestamp_ms)
        if (
            group.protocol_type == CONSUMER_PROTOCOL_TYPE
            and group.subscribed_topics is not None
            and group.is_(GroupState.STABLE)
        ):
            return pick(lambda om: om.commit_timestamp_ms, group.subscribed_topics)
        if not group.protocol_type:
            return pick(lambda om: om.commit_timestamp_ms)
        return []

    # ==== metrics hooks =======================================================================

    def metrics(self) -> GroupMetrics:
        by_state = {state.value: 0 for state in GroupState if state is not GroupState.DEAD}
        members: dict[str, int] = {}
        for group in self._groups.values():
            if group.is_(GroupState.DEAD):
                continue
            if group.consumer is not None:
                state = group.consumer.state.value
                by_state[state] = by_state.get(state, 0) + 1
                members[group.group_id] = len(group.consumer.members)
                continue
            by_state[group.state.value] += 1
            members[group.group_id] = len(group.members)
        return GroupMetrics(by_state, members)

    def committed_offsets(self) -> Iterator[tuple[str, str, int, int]]:
        """(group, topic, partition, committed offset) for every committed offset (for lag)."""
        for group in list(self._groups.values()):
            for (topic, partition), om in list(group.offsets.items()):
                yield group.group_id, topic, partition, om.offset

    # ==== introspection (tests, admin) ========================================================

    def group(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    def group_ids(self) -> list[str]:
        return list(self._groups)
