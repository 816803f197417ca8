"""A consumer-protocol group's records in ``__consumer_offsets``, in Kafka's own schemas
(group-coordinator's JSON specs), so that a coordinator taking over a partition rebuilds member
epochs and assignments, and Kafka's tools read them:

==== ============================================ =====================================
key  record                                       key fields
==== ============================================ =====================================
3    ConsumerGroupMetadata (group epoch)          group
4    ConsumerGroupPartitionMetadata (topics)      group
5    ConsumerGroupMemberMetadata (subscription)   group, member
6    ConsumerGroupTargetAssignmentMetadata        group
7    ConsumerGroupTargetAssignmentMember          group, member
8    ConsumerGroupCurrentMemberAssignment         group, member
==== ============================================ =====================================

Keys start with the int16 record type and are not flexible; values start with version 0 and
are flexible (compact strings and arrays, tagged fields). A member's classic metadata (session
timeout, JoinGroup protocols) is tagged field 0 of its member metadata, as Kafka writes it.
The records are made from, and folded back into, the coordinator's group document
(``ConsumerGroup.to_document``).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from brokerd.protocol.fastpath import uvarint

METADATA, PARTITION_METADATA, MEMBER_METADATA = 3, 4, 5
TARGET_METADATA, TARGET_MEMBER, CURRENT_ASSIGNMENT = 6, 7, 8
KINDS = range(METADATA, CURRENT_ASSIGNMENT + 1)
GROUP_KINDS = (METADATA, PARTITION_METADATA, TARGET_METADATA)
MEMBER_KINDS = (MEMBER_METADATA, TARGET_MEMBER, CURRENT_ASSIGNMENT)
#: Kafka's MemberState byte values
STATES = {"stable": 0, "unrevoked_partitions": 1, "unreleased_partitions": 2}
STATE_NAMES = {v: k for k, v in STATES.items()}

_I16, _I32 = struct.Struct(">h"), struct.Struct(">i")
_uvarint = uvarint


class ConsumerRecordError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ConsumerRecordKey:
    kind: int
    group: str
    member_id: str | None = None


# --- keys -----------------------------------------------------------------------------------------


def _key_str(text: str) -> bytes:
    raw = text.encode()
    return _I16.pack(len(raw)) + raw


def key(kind: int, group: str, member_id: str | None = None) -> bytes:
    out = _I16.pack(kind) + _key_str(group)
    return out + _key_str(member_id or "") if kind in MEMBER_KINDS else out


def decode_key(kind: int, data: bytes) -> ConsumerRecordKey:
    pos = 2
    parts = []
    for _ in range(2 if kind in MEMBER_KINDS else 1):
        if pos + 2 > len(data):
            raise ConsumerRecordError("key shorter than its schema")
        (n,) = _I16.unpack_from(data, pos)
        pos += 2
        if n < 0 or pos + n > len(data):
            raise ConsumerRecordError("key shorter than its schema")
        parts.append(data[pos : pos + n].decode())
        pos += n
    return ConsumerRecordKey(kind, parts[0], parts[1] if len(parts) > 1 else None)


# --- flexible values --------------------------------------------------------------------------------


def _str(text: str | None) -> bytes:
    if text is None:
        return b"\x00"
    raw = text.encode()
    return _uvarint(len(raw) + 1) + raw


def _bytes(data: bytes) -> bytes:
    return _uvarint(len(data) + 1) + bytes(data)


def _array(items: list[bytes]) -> bytes:
    return _uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = b"\x00"


def _tagged(fields: dict[int, bytes]) -> bytes:
    out = _uvarint(len(fields))
    for tag in sorted(fields):
        out += _uvarint(tag) + _uvarint(len(fields[tag])) + fields[tag]
    return out


def _partitions(assignment: dict[str, list[int]]) -> bytes:
    """[]TopicPartitions of topic id -> partitions (the group document's form)."""
    return _array([
        uuid.UUID(t).bytes + _array([_I32.pack(p) for p in sorted(ps)]) + NO_TAGS
        for t, ps in sorted(assignment.items()) if ps
    ])  # fmt: skip


def _value(body: bytes, tags: dict[int, bytes] | None = None) -> bytes:
    return _I16.pack(0) + body + _tagged(tags or {})


def group_records(group: str, doc: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """Every record of the group's current state (members' and group's)."""
    out = [(key(METADATA, group), _value(_I32.pack(int(doc["group_epoch"]))))]
    topics = [
        uuid.UUID(tid).bytes + _str(name) + _I32.pack(int(count)) + _array([]) + NO_TAGS
        for name, (tid, count) in sorted((doc.get("subscription_metadata") or {}).items())
    ]
    out.append((key(PARTITION_METADATA, group), _value(_I32.pack(int(doc["group_epoch"])) + _array(topics))))
    out.append((key(TARGET_METADATA, group), _value(_I32.pack(int(doc["assignment_epoch"])))))
    target = doc.get("target") or {}
    for m in doc.get("members") or []:
        member_id = m["member_id"]
        out.append((key(MEMBER_METADATA, group, member_id), _member_value(m)))
        out.append((key(TARGET_MEMBER, group, member_id), _value(_partitions(target.get(member_id) or {}))))
        current = b"".join((
            _I32.pack(int(m["member_epoch"])), _I32.pack(int(m["previous_epoch"])),
            struct.pack(">b", STATES[m.get("state", "stable")]),
            _partitions(m.get("assigned") or {}), _partitions(m.get("revoking") or {}),
        ))  # fmt: skip
        out.append((key(CURRENT_ASSIGNMENT, group, member_id), _value(current)))
    return out


def _member_value(m: dict[str, Any]) -> bytes:
    body = b"".join((
        _str(m.get("instance_id")), _str(m.get("rack_id")), _str(m.get("client_id") or ""),
        _str(m.get("client_host") or ""), _array([_str(n) for n in m.get("subscribed_names") or []]),
        _str(m.get("subscribed_regex")), _I32.pack(int(m.get("rebalance_timeout_ms", -1))),
        _str(m.get("server_assignor")),
    ))  # fmt: skip
    classic = m.get("classic")
    if not classic:
        return _value(body)
    protocols = [_str(name) + _bytes(bytes.fromhex(data)) + NO_TAGS for name, data in classic["protocols"]]
    # a nullable struct is written after a presence byte
    struct_ = b"\x01" + _I32.pack(int(classic["session_timeout_ms"])) + _array(protocols) + NO_TAGS
    return _value(body, {0: struct_})


def tombstones(group: str, member_ids: Iterable[str], *, whole_group: bool) -> list[tuple[bytes, None]]:
    out: list[tuple[bytes, None]] = []
    for member_id in member_ids:
        out += [(key(kind, group, member_id), None) for kind in MEMBER_KINDS]
    if whole_group:
        out += [(key(kind, group), None) for kind in GROUP_KINDS]
    return out


# --- reading -----------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        if len(buf) < 2 or _I16.unpack_from(buf, 0)[0] != 0:
            raise ConsumerRecordError("not a version 0 value")
        self.buf, self.pos = buf, 2

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ConsumerRecordError("value shorter than its schema")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def i8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def i32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def uuid(self) -> str:
        return str(uuid.UUID(bytes=bytes(self._take(16))))

    def nstr(self) -> str | None:
        n = self.uvarint() - 1
        return None if n < 0 else bytes(self._take(n)).decode()

    def str(self) -> str:
        return self.nstr() or ""

    def bytes(self) -> bytes:
        return bytes(self._take(max(self.uvarint() - 1, 0)))

    def count(self) -> int:
        return max(self.uvarint() - 1, 0)

    def tags(self) -> dict[int, bytes]:
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = bytes(self._take(self.uvarint()))
        return out

    def partitions(self) -> dict[str, list[int]]:
        out = {}
        for _ in range(self.count()):
            tid = self.uuid()
            out[tid] = [self.i32() for _ in range(self.count())]
            self.tags()
        return out


def _member_from(value: bytes) -> dict[str, Any]:
    r = _Reader(value)
    m: dict[str, Any] = {
        "instance_id": r.nstr(), "rack_id": r.nstr(), "client_id": r.str(), "client_host": r.str(),
        "subscribed_names": [r.str() for _ in range(r.count())], "subscribed_regex": r.nstr(),
        "rebalance_timeout_ms": r.i32(), "server_assignor": r.nstr(), "classic": None,
    }  # fmt: skip
    classic = r.tags().get(0)
    if classic and classic[0] == 1:
        c = _Reader(b"\x00\x00" + classic[1:])
        session = c.i32()
        protocols = []
        for _ in range(c.count()):
            name, data = c.str(), c.bytes()
            c.tags()
            protocols.append([name, data.hex()])
        m["classic"] = {"session_timeout_ms": session, "protocols": protocols}
    return m


@dataclass(slots=True)
class _Partial:
    seq: int = 0
    epoch: int = 0
    assignment_epoch: int = 0
    topics: dict[str, list] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    current: dict[str, dict[str, Any]] = field(default_factory=dict)


class ConsumerGroupFold:
    """Consumer groups rebuilt from their records in log order (a tombstone removes its key)."""

    def __init__(self) -> None:
        self.groups: dict[str, _Partial] = {}

    def apply(self, k: ConsumerRecordKey, value: bytes | None, seq: int) -> None:
        if k.kind == METADATA and value is None:
            self.groups.pop(k.group, None)
            return
        g = self.groups.setdefault(k.group, _Partial())
        member = k.member_id or ""
        if value is None:
            {MEMBER_METADATA: g.members, TARGET_MEMBER: g.targets, CURRENT_ASSIGNMENT: g.current}.get(
                k.kind, {}
            ).pop(member, None)
            return
        r = _Reader(value)
        if k.kind == METADATA:
            g.epoch, g.seq = r.i32(), seq
        elif k.kind == PARTITION_METADATA:
            r.i32()
            topics = {}
            for _ in range(r.count()):
                tid, name, count = r.uuid(), r.str(), r.i32()
                for _ in range(r.count()):  # partition racks
                    r.i32()
                    [r.str() for _ in range(r.count())]
                    r.tags()
                r.tags()
                topics[name] = [tid, count]
            g.topics = topics
        elif k.kind == TARGET_METADATA:
            g.assignment_epoch = r.i32()
        elif k.kind == MEMBER_METADATA:
            g.members[member] = _member_from(value)
        elif k.kind == TARGET_MEMBER:
            g.targets[member] = r.partitions()
        elif k.kind == CURRENT_ASSIGNMENT:
            epoch, previous, state = r.i32(), r.i32(), r.i8()
            g.current[member] = {
                "member_epoch": epoch, "previous_epoch": previous, "state": STATE_NAMES.get(state, "stable"),
                "assigned": r.partitions(), "revoking": r.partitions(),
            }  # fmt: skip

    def documents(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """group -> (log position of its metadata record, group document)."""
        out = {}
        for group, g in self.groups.items():
            if not g.seq:
                continue  # member records without the group's: tombstoned meanwhile
            members = []
            for member_id, m in g.members.items():
                current = g.current.get(member_id) or {
                    "member_epoch": 0, "previous_epoch": -1, "state": "stable",
                    "assigned": {}, "revoking": {},
                }  # fmt: skip
                members.append({"member_id": member_id, **m, **current})
            out[group] = (g.seq, {
                "type": "consumer", "group_epoch": g.epoch, "assignment_epoch": g.assignment_epoch,
                "assignor": "", "subscription_metadata": g.topics, "members": members,
                "target": {m: t for m, t in g.targets.items() if m in g.members},
            })  # fmt: skip
        return out
