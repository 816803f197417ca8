"""The consumer group protocol (ConsumerGroupHeartbeat / ConsumerGroupDescribe), wire-independent.

The coordinator computes each group's target assignment with a server-side assignor and moves
every member towards its share one heartbeat at a time, as Kafka's GroupMetadataManager and
CurrentAssignmentBuilder do:

* the *group epoch* goes up whenever membership, subscriptions or the subscribed topics'
  partition counts change; the *assignment epoch* is the group epoch the target was computed
  at; a member's *member epoch* reaches the assignment epoch once it runs its target share;
* a partition moving between members is first revoked by its owner (the owner stays at its
  epoch, told to keep only the rest) and only given to the new member once the owner's
  heartbeat no longer lists it: a partition is never owned twice, and a member keeps every
  partition that stays its own throughout;
* a heartbeat carrying an epoch other than the member's (or its previous one, with owned
  partitions it still has: a lost response) is FENCED_MEMBER_EPOCH; a member missing its
  session timeout, or not revoking within its rebalance timeout, is removed.

This module keeps no storage: :meth:`ConsumerGroup.to_document` and :func:`group_from_document`
turn the state into the coordinator's group document, which the coordinator persists with the
classic groups and committed offsets (shared with the classic protocol).
"""

from __future__ import annotations

import asyncio
import enum
import struct
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2
from kio.schema.errors import ErrorCode

from brokerd.groups.assignors import ASSIGNORS, Assignment, MemberSpec, assign

E = ErrorCode
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2
#: topic name -> (topic id, partition count), as the broker's metadata has them
TopicsView = Mapping[str, tuple[uuid.UUID, int]]
INTERNAL_TOPIC_PREFIX = "__"
#: the protocol type of a classic consumer's JoinGroup
CLASSIC_PROTOCOL_TYPE = "consumer"


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class HeartbeatError(Exception):
    def __init__(self, error: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or error.name)
        self.error = error
        self.message = message


@dataclass(slots=True)
class HeartbeatRequest:
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: list[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    #: owned partitions (topic id -> partitions); None when unchanged since the last heartbeat
    owned: Assignment | None = None
    client_id: str = ""
    client_host: str = ""


@dataclass(slots=True)
class HeartbeatResult:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = -1
    heartbeat_interval_ms: int = 0
    #: the member's assignment, sent when it changed (or the member just joined)
    assignment: Assignment | None = None


@dataclass(slots=True)
class ClassicJoin:
    """A JoinGroup into a consumer group, its embedded subscription already read."""

    member_id: str
    unknown_member: bool
    instance_id: str | None
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    topics: list[str]
    owned: Assignment
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    #: a dynamic member without a member id (JoinGroup v4+) is first given one: MEMBER_ID_REQUIRED
    require_known_id: bool = False


def _supports_classic(group: ConsumerGroup, protocol_type: str, names: list[str]) -> bool:
    """The classic members must share a protocol (Kafka's ConsumerGroup.supportsClassicProtocols)."""
    if protocol_type != CLASSIC_PROTOCOL_TYPE or not names:
        return False
    classic = [m.classic for m in group.members.values() if m.classic is not None]
    return any(all(name in c.names() for c in classic) for name in names)


def _waits_for_release(group: ConsumerGroup, member: ConsumerMember) -> bool:
    """Whether a partition of the member's target is still owned by another member."""
    pending = _minus(group.target.get(member.member_id, {}), member.assigned)
    return any(group.owners.get(tp, member.member_id) != member.member_id for tp in _pairs(pending))


def _copy(a: Mapping[uuid.UUID, Iterable[int]]) -> Assignment:
    return {t: set(ps) for t, ps in a.items() if ps}


def _minus(a: Assignment, b: Assignment) -> Assignment:
    return {t: ps - b.get(t, set()) for t, ps in a.items() if ps - b.get(t, set())}


def _and(a: Assignment, b: Assignment) -> Assignment:
    return {t: ps & b[t] for t, ps in a.items() if t in b and ps & b[t]}


def _pairs(a: Assignment) -> Iterable[tuple[uuid.UUID, int]]:
    for t, ps in a.items():
        for p in ps:
            yield t, p


def _doc(a: Assignment) -> dict[str, list[int]]:
    return {str(t): sorted(ps) for t, ps in a.items() if ps}


def _undoc(d: Mapping[str, Iterable[int]] | None) -> Assignment:
    return {uuid.UUID(t): set(ps) for t, ps in (d or {}).items() if ps}


@dataclass(slots=True)
class ClassicMetadata:
    """A member speaking the classic protocol inside a consumer group: its JoinGroup session
    timeout and protocols (name, embedded subscription bytes)."""

    session_timeout_ms: int
    protocols: list[tuple[str, bytes]]

    def names(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.protocols))

    def metadata(self, name: str) -> bytes:
        """The subscription bytes the member joined with for protocol ``name`` (its first
        protocol's when it does not support ``name``)."""
        for protocol, data in self.protocols:
            if protocol == name:
                return bytes(data)
        return bytes(self.protocols[0][1]) if self.protocols else b""

    def to_document(self) -> dict[str, Any]:
        return {
            "session_timeout_ms": self.session_timeout_ms,
            "protocols": [[name, bytes(data).hex()] for name, data in self.protocols],
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any] | None) -> ClassicMetadata | None:
        if not doc:
            return None
        protocols = [(name, bytes.fromhex(data)) for name, data in doc.get("protocols") or []]
        return cls(int(doc["session_timeout_ms"]), protocols)


@dataclass(slots=True, eq=False)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 300_000
    subscribed_names: tuple[str, ...] = ()
    subscribed_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    revoking: Assignment = field(default_factory=dict)
    #: set for a member that joined with JoinGroup (the classic protocol)
    classic: ClassicMetadata | None = None
    session_timer: asyncio.TimerHandle | None = None
    rebalance_timer: asyncio.TimerHandle | None = None
    #: a classic member told to rejoin must JoinGroup, and once joined SyncGroup, within its
    #: rebalance timeout
    join_timer: asyncio.TimerHandle | None = None
    sync_timer: asyncio.TimerHandle | None = None

    def cancel_timers(self) -> None:
        for handle in (self.session_timer, self.rebalance_timer, self.join_timer, self.sync_timer):
            if handle is not None:
                handle.cancel()
        self.session_timer = self.rebalance_timer = self.join_timer = self.sync_timer = None

    def cancel_join_timer(self) -> None:
        if self.join_timer is not None:
            self.join_timer.cancel()
            self.join_timer = None

    def cancel_sync_timer(self) -> None:
        if self.sync_timer is not None:
            self.sync_timer.cancel()
            self.sync_timer = None

    def to_document(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "instance_id": self.instance_id,
            "rack_id": self.rack_id,
            "client_id": self.client_id,
            "client_host": self.client_host,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "subscribed_names": list(self.subscribed_names),
            "subscribed_regex": self.subscribed_regex,
            "server_assignor": self.server_assignor,
            "member_epoch": self.member_epoch,
            "previous_epoch": self.previous_epoch,
            "state": self.state.value,
            "assigned": _doc(self.assigned),
            "revoking": _doc(self.revoking),
            "classic": self.classic.to_document() if self.classic is not None else None,
        }


class ConsumerGroup:
    """One consumer-protocol group's membership and assignment state (offsets live with the entry)."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}
        self.target: dict[str, Assignment] = {}
        #: the subscribed topics' (id, partition count) the target was computed from
        self.subscription_metadata: dict[str, tuple[uuid.UUID, int]] = {}
        self.assignor_name = ""
        #: partition -> member owning it (assigned or still revoking)
        self.owners: dict[tuple[uuid.UUID, int], str] = {}
        #: members whose records the offsets log holds (to be tombstoned once they are gone)
        self.persisted_members: set[str] = set()

    # -- views ---------------------------------------------------------------------------------

    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for m in self.members.values():
            if m.member_epoch != self.assignment_epoch or m.state is not MemberState.STABLE:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def subscribed_topic_names(self, topics: TopicsView) -> set[str]:
        out: set[str] = set()
        for m in self.members.values():
            out.update(_resolve(m, topics))
        return out

    # -- ownership -----------------------------------------------------------------------------

    def _release(self, member: ConsumerMember) -> None:
        for tp in list(_pairs(member.assigned)) + list(_pairs(member.revoking)):
            if self.owners.get(tp) == member.member_id:
                del self.owners[tp]

    def _claim(self, member: ConsumerMember) -> None:
        for tp in _pairs(member.assigned):
            self.owners[tp] = member.member_id
        for tp in _pairs(member.revoking):
            self.owners[tp] = member.member_id

    def add_member(self, member: ConsumerMember) -> None:
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self._claim(member)

    def remove_member(self, member_id: str) -> ConsumerMember | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        member.cancel_timers()
        self._release(member)
        self.target.pop(member_id, None)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]
        return member

    # -- persistence ---------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        return {
            "type": "consumer",
            "group_epoch": self.group_epoch,
            "assignment_epoch": self.assignment_epoch,
            "assignor": self.assignor_name,
            "subscription_metadata": {n: [str(t), c] for n, (t, c) in self.subscription_metadata.items()},
            "members": [m.to_document() for m in self.members.values()],
            "target": {m: _doc(a) for m, a in self.target.items()},
        }


def group_from_document(group_id: str, doc: Mapping[str, Any]) -> ConsumerGroup:
    group = ConsumerGroup(group_id)
    group.group_epoch = int(doc.get("group_epoch", 0))
    group.assignment_epoch = int(doc.get("assignment_epoch", 0))
    group.assignor_name = doc.get("assignor") or ""
    group.subscription_metadata = {
        n: (uuid.UUID(t), int(c)) for n, (t, c) in (doc.get("subscription_metadata") or {}).items()
    }
    for md in doc.get("members") or []:
        member = ConsumerMember(
            md["member_id"],
            md.get("instance_id"),
            md.get("rack_id"),
            md.get("client_id", ""),
            md.get("client_host", ""),
            int(md.get("rebalance_timeout_ms", 300_000)),
            tuple(md.get("subscribed_names") or ()),
            md.get("subscribed_regex"),
            md.get("server_assignor"),
            int(md.get("member_epoch", 0)),
            int(md.get("previous_epoch", -1)),
            MemberState(md.get("state", "stable")),
            _undoc(md.get("assigned")),
            _undoc(md.get("revoking")),
            ClassicMetadata.from_document(md.get("classic")),
        )
        group.add_member(member)
    group.target = {m: _undoc(a) for m, a in (doc.get("target") or {}).items() if m in group.members}
    group.persisted_members = set(group.members)
    return group


def _replace_static(
    group: ConsumerGroup, current: ConsumerMember, member_id: str, client_id: str, client_host: str
) -> ConsumerMember:
    """A static member coming back (with a new member id) takes over its predecessor's
    assignment and epoch."""
    group.remove_member(current.member_id)
    replacement = ConsumerMember(
        member_id,
        current.instance_id,
        current.rack_id,
        client_id,
        client_host,
        current.rebalance_timeout_ms,
        current.subscribed_names,
        current.subscribed_regex,
        current.server_assignor,
        current.previous_epoch if current.member_epoch == STATIC_LEAVE_EPOCH else current.member_epoch,
        current.previous_epoch,
        current.state,
        _copy(current.assigned),
        _copy(current.revoking),
        current.classic,
    )
    group.add_member(replacement)
    group.target[member_id] = group.target.pop(current.member_id, _copy(current.assigned))
    return replacement


def _check_instance(group: ConsumerGroup, req: HeartbeatRequest) -> None:
    """The instance id names this member, else UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID."""
    current = group.static_members.get(req.instance_id or "")
    if current is None:
        raise HeartbeatError(E.unknown_member_id, f"Instance id {req.instance_id} is unknown.")
    if current != req.member_id:
        raise HeartbeatError(E.fenced_instance_id, f"Instance id {req.instance_id} belongs to {current}.")


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def encode_subscription(topics: list[str]) -> bytes:
    """A ConsumerProtocolSubscription v0 (what a classic consumer sends in JoinGroup)."""
    return struct.pack(">hi", 0, len(topics)) + b"".join(_string(t) for t in topics) + struct.pack(">i", -1)


def encode_assignment(partitions: Mapping[str, list[int]]) -> bytes:
    """A ConsumerProtocolAssignment v0 (what a classic leader sends in SyncGroup)."""
    out = struct.pack(">hi", 0, len(partitions))
    for topic, ps in sorted(partitions.items()):
        out += _string(topic) + struct.pack(f">i{len(ps)}i", len(ps), *ps)
    return out + struct.pack(">i", -1)


def compile_regex(regex: str):
    """RE2 syntax, as Kafka's coordinator uses (RE2/J): linear time, no backreferences."""
    try:
        return re2.compile(regex)
    except re2.error as exc:
        raise HeartbeatError(E.invalid_regular_expression, f"Invalid regular expression: {exc}") from None


def _resolve(member: ConsumerMember, topics: TopicsView) -> set[str]:
    names = {n for n in member.subscribed_names if n in topics}
    if member.subscribed_regex:
        pattern = compile_regex(member.subscribed_regex)
        names.update(
            n for n in topics if not n.startswith(INTERNAL_TOPIC_PREFIX) and pattern.fullmatch(n) is not None
        )
    return names


@dataclass(frozen=True, slots=True)
class ConsumerProtocolConfig:
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 5_000
    max_size: int = 2**31 - 1
    assignors: tuple[str, ...] = ("uniform", "range")


class ConsumerProtocol:
    """Heartbeat handling and timers for every consumer group of one coordinator.

    ``on_change(group)`` is called whenever a group's state changed (the coordinator persists
    it); ``on_removed(group)`` when a member timer emptied or changed a group outside a request.
    """

    def __init__(
        self,
        config: ConsumerProtocolConfig,
        topics: Callable[[], TopicsView],
        on_change: Callable[[ConsumerGroup], None],
    ) -> None:
        self.config = config
        self.topics = topics
        self._on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None
        #: asked before a member is removed: True when the group became a classic group
        #: without it instead (the downgrade of an online migration)
        self.downgrade: Callable[[ConsumerGroup, str], bool] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, groups: Iterable[ConsumerGroup]) -> None:
        self._loop = loop
        for group in groups:
            if not group.assignor_name and group.members:
                # Kafka's records do not keep it: the members' preferred assignor, as computed
                group.assignor_name = self._choose_assignor(group)
            for member in group.members.values():
                self._schedule_session(group, member)

    # -- heartbeat -------------------------------------------------------------------------------

    def heartbeat(self, group: ConsumerGroup, req: HeartbeatRequest, *, new_group: bool) -> HeartbeatResult:
        try:
            return self._heartbeat(group, req, new_group)
        except HeartbeatError as exc:
            return HeartbeatResult(exc.error, exc.message, req.member_id or None)

    def _heartbeat(self, group: ConsumerGroup, req: HeartbeatRequest, new_group: bool) -> HeartbeatResult:
        cfg = self.config
        if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
            raise HeartbeatError(E.unsupported_assignor, f"Assignor {req.server_assignor} is not supported.")
        if req.subscribed_topic_regex:
            compile_regex(req.subscribed_topic_regex)
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(group, req)
        changed = new_group
        bump = False
        if req.member_epoch == 0:
            member, joined = self._join(group, req)
            bump = joined
            changed = True
        else:
            member = self._existing(group, req)
        old_assigned = _copy(member.assigned)
        old_epoch = member.member_epoch
        # Subscription and assignor changes bump the group epoch.
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
            if names != member.subscribed_names:
                member.subscribed_names = names
                bump = True
        if (
            req.subscribed_topic_regex is not None
            and (req.subscribed_topic_regex or None) != member.subscribed_regex
        ):
            member.subscribed_regex = req.subscribed_topic_regex or None
            bump = True
        if req.server_assignor is not None and req.server_assignor != member.server_assignor:
            member.server_assignor = req.server_assignor
            bump = True
        if req.rebalance_timeout_ms is not None and req.rebalance_timeout_ms > 0:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.client_id:
            member.client_id = req.client_id
        if req.client_host:
            member.client_host = req.client_host
        if self._advance(group, member, bump, req.owned):
            changed = True
        if changed or member.member_epoch != old_epoch:
            self._on_change(group)
        send = req.member_epoch == 0 or member.assigned != old_assigned
        return HeartbeatResult(
            E.none,
            None,
            member.member_id,
            member.member_epoch,
            cfg.heartbeat_interval_ms,
            _copy(member.assigned) if send else None,
        )

    def _advance(
        self, group: ConsumerGroup, member: ConsumerMember, bump: bool, owned: Assignment | None
    ) -> bool:
        """Bump the group epoch if ``bump`` or the subscribed topics changed (created, deleted or
        grown), compute a new target if the epoch moved, and reconcile ``member``; True if the
        group changed."""
        topics = self.topics()
        changed = False
        metadata = {n: topics[n] for n in sorted(group.subscribed_topic_names(topics))}
        if metadata != group.subscription_metadata:
            group.subscription_metadata = metadata
            bump = True
        if bump:
            group.group_epoch += 1
            changed = True
        if group.group_epoch > group.assignment_epoch:
            self._compute_target(group)
            changed = True
        if self._reconcile(group, member, owned):
            changed = True
        self._schedule_session(group, member)
        return changed

    def _join(self, group: ConsumerGroup, req: HeartbeatRequest) -> tuple[ConsumerMember, bool]:
        """(member, whether membership changed) for a heartbeat at epoch 0."""
        if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
            raise HeartbeatError(
                E.invalid_request,
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            )
        member_id = req.member_id
        if req.instance_id is not None:
            current_id = group.static_members.get(req.instance_id)
            if current_id is not None:
                current = group.members[current_id]
                # Between consumer-protocol members the instance must have been released; a
                # classic member is replaced at once (as Kafka does).
                released = current.member_epoch == STATIC_LEAVE_EPOCH or current.classic is not None
                if not released and current_id != member_id:
                    raise HeartbeatError(
                        E.unreleased_instance_id,
                        f"Static member {current_id} with instance id {req.instance_id} is not released yet.",
                    )
                replacement = _replace_static(group, current, member_id, req.client_id, req.client_host)
                replacement.classic = None
                return replacement, False
        existing = group.members.get(member_id)
        if existing is not None:
            # A member rejoining with epoch 0 (it lost its state) starts over with nothing owned.
            group._release(existing)
            existing.assigned, existing.revoking = {}, {}
            existing.member_epoch, existing.state = 0, MemberState.STABLE
            return existing, True
        return self._add_new(
            group, member_id, req.instance_id, req.rack_id, req.client_id, req.client_host
        ), True

    def _add_new(
        self,
        group: ConsumerGroup,
        member_id: str,
        instance_id: str | None,
        rack_id: str | None,
        client_id: str,
        client_host: str,
    ) -> ConsumerMember:
        if len(group.members) >= self.config.max_size:
            raise HeartbeatError(
                E.group_max_size_reached,
                f"The consumer group has reached its maximum capacity of {self.config.max_size} members.",
            )
        member = ConsumerMember(member_id, instance_id, rack_id, client_id, client_host)
        group.add_member(member)
        return member

    def _existing(self, group: ConsumerGroup, req: HeartbeatRequest) -> ConsumerMember:
        member = group.members.get(req.member_id)
        if req.instance_id is not None:
            _check_instance(group, req)
        if member is None:
            raise HeartbeatError(
                E.unknown_member_id, f"Member {req.member_id} is not a member of group {group.group_id}."
            )
        epoch = req.member_epoch
        # The previous epoch is still fine when the response that bumped it was lost and the
        # member owns no partition it no longer has.
        if epoch > member.member_epoch or (
            epoch < member.member_epoch
            and (
                epoch != member.previous_epoch
                or (req.owned is not None and _minus(req.owned, member.assigned))
            )
        ):
            which = "greater" if epoch > member.member_epoch else "smaller"
            raise HeartbeatError(
                E.fenced_member_epoch,
                f"The consumer group member has a {which} member epoch ({epoch}) than the one known "
                f"by the group coordinator ({member.member_epoch}). The member must abandon all its "
                "partitions and rejoin.",
            )
        return member

    def _leave(self, group: ConsumerGroup, req: HeartbeatRequest) -> HeartbeatResult:
        member = group.members.get(req.member_id)
        if req.member_epoch == STATIC_LEAVE_EPOCH:
            if req.instance_id is None:
                raise HeartbeatError(
                    E.invalid_request, "InstanceId can't be null when leaving with epoch -2."
                )
            _check_instance(group, req)
            assert member is not None
            # A static member leaving keeps its partitions for its session timeout: the same
            # instance coming back with a new member id gets them without a rebalance.
            if member.member_epoch != STATIC_LEAVE_EPOCH:
                member.previous_epoch = member.member_epoch
            member.member_epoch = STATIC_LEAVE_EPOCH
            self._schedule_session(group, member)
            self._on_change(group)
            return HeartbeatResult(E.none, None, req.member_id, STATIC_LEAVE_EPOCH, 0, None)
        if member is None:
            raise HeartbeatError(
                E.unknown_member_id, f"Member {req.member_id} is not a member of group {group.group_id}."
            )
        self.remove(group, member.member_id)
        return HeartbeatResult(E.none, None, req.member_id, LEAVE_EPOCH, 0, None)

    def remove(self, group: ConsumerGroup, member_id: str) -> None:
        """Remove a member (leave, session or rebalance timeout): its partitions are free at once."""
        if member_id not in group.members:
            return
        if self.downgrade is not None and self.downgrade(group, member_id):
            return
        group.remove_member(member_id)
        group.group_epoch += 1
        if group.members:
            self._compute_target(group)
        else:
            group.target.clear()
            group.assignment_epoch = group.group_epoch
            group.subscription_metadata = {}
        self._on_change(group)

    # -- assignment ------------------------------------------------------------------------------

    def _choose_assignor(self, group: ConsumerGroup) -> str:
        votes: dict[str, int] = {}
        for m in group.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return self.config.assignors[0]
        return max(votes, key=lambda name: (votes[name], -self.config.assignors.index(name)))

    def _compute_target(self, group: ConsumerGroup) -> None:
        topics = self.topics()
        specs: dict[str, MemberSpec] = {}
        for m in group.members.values():
            ids = frozenset(topics[n][0] for n in _resolve(m, topics))
            previous = group.target.get(m.member_id)
            specs[m.member_id] = MemberSpec(
                ids, previous if previous is not None else m.assigned, m.instance_id
            )
        partitions = {tid: count for tid, count in topics.values()}
        name = self._choose_assignor(group)
        group.assignor_name = name
        group.target = assign(name, specs, partitions)
        group.assignment_epoch = group.group_epoch

    def _reconcile(self, group: ConsumerGroup, member: ConsumerMember, owned: Assignment | None) -> bool:
        """Move the member towards its target (Kafka's CurrentAssignmentBuilder); True if it moved."""
        if member.member_epoch == STATIC_LEAVE_EPOCH:
            return False
        target_epoch = group.assignment_epoch
        state = member.state
        if state is MemberState.STABLE and member.member_epoch == target_epoch:
            return False
        if state is MemberState.UNREVOKED_PARTITIONS and (owned is None or _and(owned, member.revoking)):
            return False  # still owns what it must give up
        before = (member.member_epoch, member.state, _copy(member.assigned), _copy(member.revoking))
        target = group.target.get(member.member_id, {})
        group._release(member)
        current = member.assigned
        kept = _and(current, target)
        revoke = _minus(current, target)
        pending = _minus(target, current)
        newly: Assignment = {}
        unreleased = False
        for tp in _pairs(pending):
            if tp in group.owners:
                unreleased = True
            else:
                newly.setdefault(tp[0], set()).add(tp[1])
        if revoke:
            # Revoke before assigning: the member keeps its epoch until it has let go.
            member.assigned, member.revoking = kept, revoke
            member.state = MemberState.UNREVOKED_PARTITIONS
            self._schedule_rebalance_timeout(group, member)
        else:
            for t, ps in newly.items():
                kept.setdefault(t, set()).update(ps)
            member.assigned, member.revoking = kept, {}
            if member.member_epoch != target_epoch:
                member.previous_epoch = member.member_epoch
            member.member_epoch = target_epoch
            member.state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
            if member.rebalance_timer is not None:
                member.rebalance_timer.cancel()
                member.rebalance_timer = None
        group._claim(member)
        return before != (member.member_epoch, member.state, member.assigned, member.revoking)

    # -- members speaking the classic protocol (JoinGroup / SyncGroup / Heartbeat) -----------------

    def classic_join(self, group: ConsumerGroup, req: ClassicJoin) -> ConsumerMember:
        """JoinGroup into a consumer group (Kafka's classicGroupJoinToConsumerGroup): the
        member's subscription and owned partitions move it towards its target as a heartbeat
        would; its epoch is the generation it is told."""
        names = list(dict.fromkeys(name for name, _ in req.protocols))
        if not _supports_classic(group, req.protocol_type, names):
            raise HeartbeatError(
                E.inconsistent_group_protocol, f"Member {req.member_id}'s protocols are not supported."
            )
        if req.require_known_id:
            if req.member_id not in group.members and len(group.members) >= self.config.max_size:
                raise HeartbeatError(E.group_max_size_reached)
            raise HeartbeatError(E.member_id_required)
        member, bump = self._classic_member_for_join(group, req)
        topics_names = tuple(sorted(set(req.topics)))
        if topics_names != member.subscribed_names:
            member.subscribed_names = topics_names
            bump = True
        if member.subscribed_regex is not None:
            member.subscribed_regex = None
            bump = True
        if req.rebalance_timeout_ms > 0:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        member.client_id, member.client_host = req.client_id, req.client_host
        member.classic = ClassicMetadata(req.session_timeout_ms, list(req.protocols))
        self._advance(group, member, bump, req.owned)
        member.cancel_join_timer()
        member.cancel_sync_timer()
        if self._loop is not None:
            member.sync_timer = self._loop.call_later(
                member.rebalance_timeout_ms / 1000, self._expire, group, member, "no SyncGroup in time"
            )
        self._on_change(group)
        return member

    def _classic_member_for_join(self, group: ConsumerGroup, req: ClassicJoin) -> tuple[ConsumerMember, bool]:
        """(member, whether it is new to the group)."""
        member_id = req.member_id
        if req.instance_id is not None:
            current_id = group.static_members.get(req.instance_id)
            if current_id is not None:
                if current_id == member_id:
                    return group.members[current_id], False
                if not req.unknown_member:
                    raise HeartbeatError(
                        E.fenced_instance_id, f"Instance id {req.instance_id} belongs to {current_id}."
                    )
                current = group.members[current_id]
                return _replace_static(group, current, member_id, req.client_id, req.client_host), False
        member = group.members.get(member_id)
        if member is not None:
            return member, False
        return self._add_new(
            group, member_id, req.instance_id, req.rack_id, req.client_id, req.client_host
        ), True

    def _classic_member(
        self, group: ConsumerGroup, member_id: str, instance_id: str | None, generation: int
    ) -> ConsumerMember:
        member = group.members.get(member_id)
        if member is None or member.classic is None:
            raise HeartbeatError(
                E.unknown_member_id, f"Member {member_id} is not a classic member of the group."
            )
        if instance_id is not None and group.static_members.get(instance_id) != member_id:
            raise HeartbeatError(E.fenced_instance_id, f"Instance id {instance_id} is fenced.")
        if generation != member.member_epoch:
            raise HeartbeatError(
                E.illegal_generation, f"Generation {generation} is not {member.member_epoch}."
            )
        return member

    def classic_sync(
        self,
        group: ConsumerGroup,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> Assignment:
        """SyncGroup of a classic member: its current assignment, or REBALANCE_IN_PROGRESS when
        the group moved on and the member must rejoin first."""
        member = self._classic_member(group, member_id, instance_id, generation)
        assert member.classic is not None
        if (protocol_type is not None and protocol_type != CLASSIC_PROTOCOL_TYPE) or (
            protocol_name is not None and protocol_name != member.classic.names()[0]
        ):
            raise HeartbeatError(E.inconsistent_group_protocol)
        # A member still revoking has rejoined already: it finishes this step first.
        if group.group_epoch > member.member_epoch and member.state is not MemberState.UNREVOKED_PARTITIONS:
            self._schedule_join_timeout(group, member)
            raise HeartbeatError(E.rebalance_in_progress)
        member.cancel_sync_timer()
        self._schedule_session(group, member)
        return _copy(member.assigned)

    def classic_heartbeat(
        self, group: ConsumerGroup, member_id: str, instance_id: str | None, generation: int
    ) -> ErrorCode:
        """Heartbeat of a classic member: REBALANCE_IN_PROGRESS when it must rejoin to catch up
        with the group epoch, to report partitions it revoked, or to collect released ones."""
        try:
            member = self._classic_member(group, member_id, instance_id, generation)
        except HeartbeatError as exc:
            return exc.error
        self._schedule_session(group, member)
        if (
            member.member_epoch < group.group_epoch
            or member.state is MemberState.UNREVOKED_PARTITIONS
            or (member.state is MemberState.UNRELEASED_PARTITIONS and not _waits_for_release(group, member))
        ):
            self._schedule_join_timeout(group, member)
            return E.rebalance_in_progress
        return E.none

    def _schedule_join_timeout(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if self._loop is not None and member.join_timer is None:
            member.join_timer = self._loop.call_later(
                member.rebalance_timeout_ms / 1000, self._expire, group, member, "no JoinGroup in time"
            )

    # -- timers ----------------------------------------------------------------------------------

    def _schedule_session(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if self._loop is None:
            return
        if member.session_timer is not None:
            member.session_timer.cancel()
        # A classic member keeps the session timeout it asked for in JoinGroup.
        timeout_ms = member.classic.session_timeout_ms if member.classic else self.config.session_timeout_ms
        member.session_timer = self._loop.call_later(
            timeout_ms / 1000, self._expire, group, member, "session timeout"
        )

    def _schedule_rebalance_timeout(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if self._loop is None or member.rebalance_timer is not None:
            return
        member.rebalance_timer = self._loop.call_later(
            member.rebalance_timeout_ms / 1000, self._expire, group, member, "rebalance timeout"
        )

    def _expire(self, group: ConsumerGroup, member: ConsumerMember, why: str) -> None:
        if group.members.get(member.member_id) is member:
            self.remove(group, member.member_id)

    def stop(self, groups: Iterable[ConsumerGroup]) -> None:
        for group in groups:
            for member in group.members.values():
                member.cancel_timers()


@dataclass(slots=True)
class MemberDescription:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: list[str]
    subscribed_topic_regex: str | None
    #: (topic id, topic name, partitions), sorted by name
    assignment: list[tuple[uuid.UUID, str, list[int]]]
    target_assignment: list[tuple[uuid.UUID, str, list[int]]]
    state: str
    #: a member that joined with JoinGroup (the classic protocol)
    classic: bool = False


@dataclass(slots=True)
class GroupDescription:
    error: ErrorCode
    group_id: str
    message: str | None = None
    state: str = ConsumerGroupState.DEAD.value
    group_epoch: int = -1
    assignment_epoch: int = -1
    assignor_name: str = ""
    members: list[MemberDescription] = field(default_factory=list)


def describe(group: ConsumerGroup, topics: TopicsView) -> GroupDescription:
    names = {tid: name for name, (tid, _count) in topics.items()}
    for name, (tid, _count) in group.subscription_metadata.items():
        names.setdefault(tid, name)

    def listed(a: Assignment) -> list[tuple[uuid.UUID, str, list[int]]]:
        return sorted(((t, names.get(t, ""), sorted(ps)) for t, ps in a.items() if ps), key=lambda x: x[1])

    members = [
        MemberDescription(
            m.member_id,
            m.instance_id,
            m.rack_id,
            m.member_epoch,
            m.client_id,
            m.client_host,
            list(m.subscribed_names),
            m.subscribed_regex,
            listed(m.assigned),
            listed(group.target.get(m.member_id, {})),
            m.state.value,
            m.classic is not None,
        )
        for m in group.members.values()
    ]
    return GroupDescription(
        E.none,
        group.group_id,
        None,
        group.state.value,
        group.group_epoch,
        group.assignment_epoch,
        group.assignor_name or "uniform",
        members,
    )
