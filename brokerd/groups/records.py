"""The records of ``__consumer_offsets``, in Apache Kafka's own key and value schemas, so that
Kafka's tools (kafka-console-consumer with the offsets formatter, kcat decoders) read them.

Every key and value starts with an int16 schema version; fields are laid out as Kafka's
generated serde writes the non-flexible versions (int16-length strings, int32-length bytes):

* ``OffsetCommitKey`` v1 (v0 reads the same): group, topic, partition.
* ``OffsetCommitValue`` v3: offset, leader epoch, metadata, commit timestamp; v1 (written only
  for a commit with an explicit retention time, as Kafka does): offset, metadata, commit
  timestamp, expire timestamp. v0, v2 and the flexible v4 are read too.
* ``GroupMetadataKey`` v2: group.
* ``GroupMetadataValue`` v3: protocol type, generation, protocol, leader, current state
  timestamp, members (member id, group instance id, client id, client host, rebalance and
  session timeouts, subscription, assignment). v0-v2 are read too.

A null value is a tombstone: the offset, or the whole group's metadata, is gone.
Key versions 3 to 8 are Kafka's consumer-group protocol (KIP-848) records
(brokerd/groups/consumer_records.py). Earlier brokerd versions kept a consumer-protocol group as
one record of their own, key version 32767 (``ConsumerGroupDocumentKey``: group) with the
group's JSON document as value (version 0): still read, and tombstoned once rewritten.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from brokerd.groups import consumer_records as cr
from brokerd.groups.store import OffsetAndMetadata, TopicPartition

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_WITH_EXPIRY = 1
GROUP_METADATA_VALUE_VERSION = 3
CONSUMER_GROUP_DOCUMENT_KEY_VERSION = 32767

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordError(ValueError):
    """A key or value that is not one of the schemas above."""


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupKey:
    group: str


def decode_consumer_group_value(value: bytes) -> dict[str, Any]:
    if _version(value) != 0:
        raise RecordError(f"unknown consumer group document version {_version(value)}")
    try:
        return json.loads(value[2:])
    except ValueError as exc:
        raise RecordError(f"consumer group document: {exc}") from None


# --- writing ----------------------------------------------------------------------------------


def _str(text: str) -> bytes:
    raw = text.encode()
    return _I16.pack(len(raw)) + raw


def _nstr(text: str | None) -> bytes:
    return _I16.pack(-1) if text is None else _str(text)


def _bytes(data: bytes) -> bytes:
    return _I32.pack(len(data)) + bytes(data)


def offset_key(group: str, tp: TopicPartition) -> bytes:
    return _I16.pack(OFFSET_COMMIT_KEY_VERSION) + _str(group) + _str(tp[0]) + _I32.pack(tp[1])


def offset_value(om: OffsetAndMetadata) -> bytes:
    metadata = om.metadata or ""
    if om.expire_timestamp_ms >= 0:
        return b"".join((
            _I16.pack(OFFSET_COMMIT_VALUE_WITH_EXPIRY), _I64.pack(om.offset), _str(metadata),
            _I64.pack(om.commit_timestamp_ms), _I64.pack(om.expire_timestamp_ms),
        ))  # fmt: skip
    return b"".join((
        _I16.pack(OFFSET_COMMIT_VALUE_VERSION), _I64.pack(om.offset), _I32.pack(om.leader_epoch),
        _str(metadata), _I64.pack(om.commit_timestamp_ms),
    ))  # fmt: skip


def group_key(group: str) -> bytes:
    """The key of a classic group's metadata record."""
    return _I16.pack(GROUP_METADATA_KEY_VERSION) + _str(group)


def consumer_group_key(group: str) -> bytes:
    return _I16.pack(CONSUMER_GROUP_DOCUMENT_KEY_VERSION) + _str(group)


def group_value(document: dict[str, Any]) -> bytes:
    """GroupMetadataValue v3 from the coordinator's group document (``Group.to_document``)."""
    parts = [
        _I16.pack(GROUP_METADATA_VALUE_VERSION),
        _str(document.get("protocol_type") or ""),
        _I32.pack(int(document.get("generation", 0))),
        _nstr(document.get("protocol")),
        _nstr(document.get("leader")),
        _I64.pack(int(document.get("current_state_timestamp", -1))),
    ]
    members = document.get("members") or []
    parts.append(_I32.pack(len(members)))
    for m in members:
        parts += [
            _str(m["member_id"]), _nstr(m.get("group_instance_id")), _str(m.get("client_id", "")),
            _str(m.get("client_host", "")), _I32.pack(int(m.get("rebalance_timeout", -1))),
            _I32.pack(int(m["session_timeout"])), _bytes(bytes.fromhex(m.get("subscription", ""))),
            _bytes(bytes.fromhex(m.get("assignment", ""))),
        ]  # fmt: skip
    return b"".join(parts)


# --- reading ----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "flexible", "pos")

    def __init__(self, buf: bytes, flexible: bool = False) -> None:
        self.buf = buf
        self.pos = 2  # after the version
        self.flexible = flexible

    def _fixed(self, st: struct.Struct) -> int:
        if self.pos + st.size > len(self.buf):
            raise RecordError("record shorter than its schema")
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def i32(self) -> int:
        return self._fixed(_I32)

    def i64(self) -> int:
        return self._fixed(_I64)

    def _uvarint(self) -> int:
        shift = result = 0
        while True:
            if self.pos >= len(self.buf):
                raise RecordError("record shorter than its schema")
            b = self.buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def _length(self, st: struct.Struct) -> int:
        return self._uvarint() - 1 if self.flexible else self._fixed(st)

    def nstr(self) -> str | None:
        n = self._length(_I16)
        if n < 0:
            return None
        raw = self.buf[self.pos : self.pos + n]
        if len(raw) != n:
            raise RecordError("record shorter than its schema")
        self.pos += n
        return raw.decode()

    def str(self) -> str:
        text = self.nstr()
        if text is None:
            raise RecordError("null where a string is required")
        return text

    def bytes(self) -> bytes:
        n = self._length(_I32)
        raw = self.buf[self.pos : self.pos + max(n, 0)]
        self.pos += max(n, 0)
        return raw

    def skip_tags(self) -> None:
        if self.flexible:
            for _ in range(self._uvarint()):
                self._uvarint()
                self.pos += self._uvarint()


def _version(buf: bytes) -> int:
    if len(buf) < 2:
        raise RecordError("record without a schema version")
    return _I16.unpack_from(buf, 0)[0]


def decode_key(key: bytes) -> OffsetKey | GroupKey | ConsumerGroupKey | cr.ConsumerRecordKey | None:
    """The key of an offsets record; None for a key version this coordinator does not keep."""
    version = _version(key)
    if version in cr.KINDS:
        return cr.decode_key(version, key)
    r = _Reader(key)
    if version in (0, 1):
        return OffsetKey(r.str(), r.str(), r.i32())
    if version == 2:
        return GroupKey(r.str())
    if version == CONSUMER_GROUP_DOCUMENT_KEY_VERSION:
        return ConsumerGroupKey(r.str())
    return None


def decode_offset_value(value: bytes) -> OffsetAndMetadata:
    version = _version(value)
    if not 0 <= version <= 4:
        raise RecordError(f"unknown OffsetCommitValue version {version}")
    r = _Reader(value, flexible=version >= 4)
    offset = r.i64()
    leader_epoch = r.i32() if version >= 3 else -1
    metadata = r.str()
    commit_ts = r.i64()
    expire_ts = r.i64() if version == 1 else -1
    return OffsetAndMetadata(offset, leader_epoch, metadata, commit_ts, expire_ts)


def decode_group_value(value: bytes) -> dict[str, Any]:
    """GroupMetadataValue v0-v4 as the coordinator's group document."""
    version = _version(value)
    if not 0 <= version <= 4:
        raise RecordError(f"unknown GroupMetadataValue version {version}")
    r = _Reader(value, flexible=version >= 4)
    doc: dict[str, Any] = {
        "protocol_type": r.str(),
        "generation": r.i32(),
        "protocol": r.nstr(),
        "leader": r.nstr(),
        "current_state_timestamp": r.i64() if version >= 2 else -1,
    }
    count = r._length(_I32)
    members = []
    for _ in range(max(count, 0)):
        member_id = r.str()
        instance_id = r.nstr() if version >= 3 else None
        client_id, client_host = r.str(), r.str()
        rebalance = r.i32() if version >= 1 else -1
        session = r.i32()
        subscription, assignment = r.bytes(), r.bytes()
        r.skip_tags()
        members.append({
            "member_id": member_id, "group_instance_id": instance_id, "client_id": client_id,
            "client_host": client_host, "rebalance_timeout": rebalance, "session_timeout": session,
            "subscription": subscription.hex(), "assignment": assignment.hex(),
        })  # fmt: skip
    doc["members"] = members
    return doc
