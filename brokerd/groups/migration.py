"""Online migration of a group between the classic and the consumer protocol (Kafka 4's
``group.consumer.migration.policy``), and the classic consumer protocol's bytes it reads.

* *Upgrade*: a consumer-protocol member joins a classic group that has members. The group
  becomes a consumer group at the classic generation; every classic member stays in it, at that
  epoch, owning the partitions of its last assignment (Kafka's ConsumerGroup.fromClassicGroup).
* *Downgrade*: the last consumer-protocol member leaves a group whose other members all speak
  the classic protocol. It becomes a classic group at the group epoch, each member holding its
  target assignment, and rebalances (Kafka's ClassicGroup.fromConsumerGroup).

A classic member inside a consumer group (see ``ConsumerProtocol.classic_*``) is told to rejoin
through REBALANCE_IN_PROGRESS whenever its target moved, and receives its share in SyncGroup.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from brokerd.groups.consumer import (
    Assignment,
    ClassicMetadata,
    ConsumerGroup,
    ConsumerMember,
    TopicsView,
    encode_assignment,
)
from brokerd.groups.group import CONSUMER_PROTOCOL_TYPE, Group, Member

POLICIES = ("disabled", "upgrade", "downgrade", "bidirectional")


def upgrade_enabled(policy: str) -> bool:
    return policy.lower() in ("upgrade", "bidirectional")


def downgrade_enabled(policy: str) -> bool:
    return policy.lower() in ("downgrade", "bidirectional")


# --- the classic consumer protocol's embedded bytes ---------------------------------------------


@dataclass(slots=True)
class Subscription:
    """A ConsumerProtocolSubscription (v0-v3: topics, user data, owned partitions, generation, rack)."""

    topics: list[str] = field(default_factory=list)
    owned: dict[str, list[int]] = field(default_factory=dict)
    rack_id: str | None = None


class _Bytes:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _unpack(self, fmt: str) -> int:
        try:
            (value,) = struct.unpack_from(fmt, self.data, self.pos)
        except struct.error as exc:
            raise ValueError(f"truncated consumer protocol bytes: {exc}") from None
        self.pos += struct.calcsize(fmt)
        return value

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def i16(self) -> int:
        return self._unpack(">h")

    def i32(self) -> int:
        return self._unpack(">i")

    def nstr(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        if self.pos + n > len(self.data):
            raise ValueError("truncated consumer protocol string")
        text = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return text

    def skip_bytes(self) -> None:
        n = self.i32()
        self.pos += max(n, 0)

    def partitions(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for _ in range(max(self.i32(), 0)):
            topic = self.nstr() or ""
            out.setdefault(topic, []).extend(self.i32() for _ in range(max(self.i32(), 0)))
        return out


def parse_subscription(data: bytes) -> Subscription:
    r = _Bytes(data)
    version = r.i16()
    topics = [r.nstr() or "" for _ in range(max(r.i32(), 0))]
    out = Subscription(topics)
    if r.done():
        return out
    r.skip_bytes()  # user data
    if version >= 1 and not r.done():
        out.owned = r.partitions()
    if version >= 2 and not r.done():
        r.i32()  # generation
    if version >= 3 and not r.done():
        out.rack_id = r.nstr()
    return out


def parse_assignment(data: bytes) -> dict[str, list[int]]:
    """The partitions of a ConsumerProtocolAssignment (v0-v3 share the layout); {} for no bytes."""
    if not data:
        return {}
    r = _Bytes(data)
    r.i16()
    return r.partitions()


def by_topic_id(partitions: Mapping[str, Iterable[int]], topics: TopicsView) -> Assignment:
    """Named partitions as topic id -> partitions (topics unknown to the broker are left out)."""
    out: Assignment = {}
    for name, ps in partitions.items():
        if name in topics and ps:
            out.setdefault(topics[name][0], set()).update(ps)
    return out


def by_topic_name(assignment: Assignment, topics: TopicsView) -> dict[str, list[int]]:
    names = {tid: name for name, (tid, _count) in topics.items()}
    return {names[t]: sorted(ps) for t, ps in assignment.items() if t in names and ps}


def assignment_bytes(assignment: Assignment, topics: TopicsView) -> bytes:
    """What a classic member receives in SyncGroup: its partitions as a ConsumerProtocolAssignment."""
    return encode_assignment(by_topic_name(assignment, topics))


# --- conversions ----------------------------------------------------------------------------------


def consumer_group_from_classic(group: Group, topics: TopicsView) -> ConsumerGroup:
    """The consumer group a classic group becomes (ValueError for malformed embedded bytes).

    Every member is stable at the classic generation with its last assignment as its target: a
    group caught mid-rebalance has its members rejoin, which gives them their share."""
    out = ConsumerGroup(group.group_id)
    out.group_epoch = out.assignment_epoch = group.generation_id
    for m in group.members.values():
        name = group.protocol_name if group.protocol_name in m.protocol_names() else m.protocol_names()[0]
        subscription = parse_subscription(m.metadata(name))
        assigned = by_topic_id(parse_assignment(m.assignment), topics)
        member = ConsumerMember(
            m.member_id,
            m.group_instance_id,
            subscription.rack_id,
            m.client_id,
            m.client_host,
            m.rebalance_timeout_ms,
            tuple(sorted(set(subscription.topics))),
            member_epoch=group.generation_id,
            previous_epoch=group.generation_id,
            assigned=assigned,
            classic=ClassicMetadata(m.session_timeout_ms, list(m.protocols)),
        )
        out.add_member(member)
        out.target[m.member_id] = {t: set(ps) for t, ps in assigned.items()}
    out.subscription_metadata = {n: topics[n] for n in sorted(out.subscribed_topic_names(topics))}
    return out


def classic_members_from_consumer(consumer: ConsumerGroup, leaving: str, topics: TopicsView) -> list[Member]:
    """The classic members a consumer group becomes once ``leaving`` is gone: each holds its
    target assignment (the rebalance that follows hands out the real one)."""
    members = []
    for m in consumer.members.values():
        if m.member_id == leaving or m.classic is None:
            continue
        members.append(
            Member(
                m.member_id,
                m.instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.classic.session_timeout_ms,
                CONSUMER_PROTOCOL_TYPE,
                list(m.classic.protocols),
                assignment_bytes(consumer.target.get(m.member_id, m.assigned), topics),
            )
        )
    return members


def only_classic_remain(consumer: ConsumerGroup, leaving: str) -> bool:
    """Whether the group holds members besides ``leaving`` and all of them are classic ones."""
    others = [m for m in consumer.members.values() if m.member_id != leaving]
    return bool(others) and all(m.classic is not None for m in others)
