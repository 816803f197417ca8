"""Records of the ``__transaction_state`` topic, in Kafka's TransactionLogKey/Value layout.

Key (version 0): ``version int16, transactional_id string``.
Value (version 0, written here; version 1, flexible, read as well): ``version int16,
producer_id int64, producer_epoch int16, transaction_timeout_ms int32, transaction_status int8,
transaction_partitions [topic string, partition_ids [int32]] (nullable), last_update_ms int64,
start_ms int64``. A null value (a tombstone) removes an expired transactional id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from brokerd.protocol.framing import read_uvarint

TOPIC = "__transaction_state"

# Kafka's TransactionState ids, as the log stores them
EMPTY, ONGOING, PREPARE_COMMIT, PREPARE_ABORT, COMPLETE_COMMIT, COMPLETE_ABORT, DEAD, PREPARE_EPOCH_FENCE = (
    range(8)
)
STATE_NAMES = {
    EMPTY: "Empty",
    ONGOING: "Ongoing",
    PREPARE_COMMIT: "PrepareCommit",
    PREPARE_ABORT: "PrepareAbort",
    COMPLETE_COMMIT: "CompleteCommit",
    COMPLETE_ABORT: "CompleteAbort",
    DEAD: "Dead",
    PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
STATES_BY_NAME = {name: state for state, name in STATE_NAMES.items()}

_H = struct.Struct(">h")
_I = struct.Struct(">i")
_VALUE_HEAD = struct.Struct(">hqhib")
_VALUE_TAIL = struct.Struct(">qq")


@dataclass(slots=True)
class TxnLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: int
    partitions: set[tuple[str, int]] = field(default_factory=set)
    last_update_ms: int = -1
    start_ms: int = -1


def _string(raw: str) -> bytes:
    data = raw.encode()
    return _H.pack(len(data)) + data


def encode_key(transactional_id: str) -> bytes:
    return _H.pack(0) + _string(transactional_id)


def decode_key(data: bytes) -> str | None:
    """The transactional id of a key; None for another record type (a future key version)."""
    (version,) = _H.unpack_from(data, 0)
    if version not in (0, 1):
        return None
    (n,) = _H.unpack_from(data, 2)
    return data[4 : 4 + n].decode()


def encode_value(v: TxnLogValue) -> bytes:
    out = bytearray(_VALUE_HEAD.pack(0, v.producer_id, v.producer_epoch, v.timeout_ms, v.state))
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(v.partitions):
        by_topic.setdefault(topic, []).append(partition)
    out += _I.pack(len(by_topic))
    for topic, ids in by_topic.items():
        out += _string(topic)
        out += _I.pack(len(ids))
        for i in ids:
            out += _I.pack(i)
    out += _VALUE_TAIL.pack(v.last_update_ms, v.start_ms)
    return bytes(out)


def decode_value(data: bytes) -> TxnLogValue:
    version, pid, epoch, timeout, state = _VALUE_HEAD.unpack_from(data, 0)
    pos = _VALUE_HEAD.size
    flexible = version >= 1

    def length(pos: int) -> tuple[int, int]:
        if flexible:
            n, pos = _uvarint(data, pos)
            return n - 1, pos
        (n,) = _I.unpack_from(data, pos)
        return n, pos + 4

    def string(pos: int) -> tuple[str, int]:
        if flexible:
            n, pos = length(pos)
        else:
            (n,) = _H.unpack_from(data, pos)
            pos += 2
        return data[pos : pos + n].decode(), pos + n

    partitions: set[tuple[str, int]] = set()
    topics, pos = length(pos)
    for _ in range(max(topics, 0)):
        topic, pos = string(pos)
        count, pos = length(pos)
        for _ in range(count):
            (p,) = _I.unpack_from(data, pos)
            pos += 4
            partitions.add((topic, p))
        if flexible:
            pos = _skip_tags(data, pos)
    last_update, start = _VALUE_TAIL.unpack_from(data, pos)
    return TxnLogValue(pid, epoch, timeout, state, partitions, last_update, start)


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value, size = read_uvarint(data, pos)
    return value, pos + size


def _skip_tags(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _tag, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos
