"""Broker-side schema validation: which schema ids the cluster's Schema Registry has registered,
under which subjects, learned from the cluster's own `_schemas` topic.

The registry (the platform's schemaregistry app) is the topic's only writer, in Confluent
Platform's record layout. This broker reads the topic's partition from its own log: alone it
holds every partition; in a cluster it holds a replica of `_schemas` whenever the topic's
replication factor covers it, and since the registry appends with acks=all and reads its record
back before answering, every in-sync replica's log holds a schema before its id is handed out.
No call to the control plane: before checking a batch, produce reads the log on from where the
last read stopped (nothing when no schema changed: two offsets compared), so a schema registered
a moment ago is accepted and a deleted one refused.

The fold applies the registry's own fencing rules (platform/schemaregistry/state.py): a SCHEMA
record that would give an id to a second schema, a second id to one schema, or another id to an
existing version is ignored, as every reader of the topic ignores it.

Checking a record looks at its first five bytes only: the wire format's magic byte 0 and the
big-endian schema id (brokerd/storage/compaction.py ``record_heads``).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from brokerd.records import iter_headers
from brokerd.storage.compaction import record_heads
from brokerd.storage.log import OffsetOutOfRange

if TYPE_CHECKING:
    from brokerd.storage import LogManager, LogSettings

log = logging.getLogger("brokerd.schemas")

TOPIC = "_schemas"
WIRE_HEAD = 5  # magic byte 0 + a 4-byte schema id
READ_BYTES = 1 << 20
STRATEGY_PREFIX = "io.confluent.kafka.serializers.subject."
_PROTO_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.M)
_PROTO_MESSAGE = re.compile(r"^\s*message\s+(\w+)", re.M)


def record_name(schema_type: str, schema: str) -> str | None:
    """The full name RecordNameStrategy uses for a schema: an Avro named type's full name, a
    JSON Schema's title, a Protobuf file's first message (qualified by its package)."""
    if schema_type == "PROTOBUF":
        message = _PROTO_MESSAGE.search(schema)
        if message is None:
            return None
        package = _PROTO_PACKAGE.search(schema)
        return f"{package.group(1)}.{message.group(1)}" if package else message.group(1)
    try:
        doc = json.loads(schema)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if schema_type == "JSON":
        title = doc.get("title")
        return title if isinstance(title, str) else None
    name = doc.get("name")
    if not isinstance(name, str):
        return None
    namespace = doc.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


class SchemaIds:
    """The ids of the cluster's registry and the live subjects using each, folded from `_schemas`."""

    def __init__(self, logs: LogManager) -> None:
        self.logs = logs
        self.offset = 0  # the next `_schemas` offset to read
        self.versions: dict[tuple[str, int], tuple[int, bool]] = {}  # (subject, version) -> (id, deleted)
        self.contents: dict[int, tuple[str, str, str]] = {}  # id -> (type, schema, references)
        self.by_content: dict[tuple[str, str, str], int] = {}
        self.names: dict[int, str | None] = {}  # id -> record full name
        self.live: dict[int, frozenset[str]] = {}  # id -> subjects with a live version of it

    # --- reading the topic --------------------------------------------------------------------
    def catch_up(self) -> bool:
        """Read the local `_schemas` log from where the last read stopped; True if anything changed."""
        topic = self.logs.topics.get(TOPIC)
        if topic is None or not topic.partitions:
            return False
        plog = topic.partitions[0]
        if self.offset > plog.next_offset or self.offset < plog.start_offset:
            self._reset()  # truncated, or compacted past what was read: fold again from the start
            self.offset = plog.start_offset
        changed = False
        while self.offset < plog.next_offset:
            try:
                data = plog.read(self.offset, READ_BYTES, True)
            except OffsetOutOfRange:
                self._reset()
                self.offset = plog.start_offset
                continue
            if not data:
                break
            for _i, key, value in record_heads(data, READ_BYTES):
                changed |= self._apply(key, value)
            last = self.offset
            for _pos, _base, _size, last_offset, _ts, _attrs in iter_headers(data):
                last = last_offset
            self.offset = last + 1
        if changed:
            live: dict[int, set[str]] = {}
            for (subject, _version), (schema_id, deleted) in self.versions.items():
                if not deleted:
                    live.setdefault(schema_id, set()).add(subject)
            self.live = {i: frozenset(s) for i, s in live.items()}
        return changed

    def _reset(self) -> None:
        self.versions.clear()
        self.contents.clear()
        self.by_content.clear()
        self.names.clear()
        self.live = {}

    def _apply(self, raw_key: bytes | None, raw_value: bytes | None) -> bool:
        try:
            key = json.loads(raw_key) if raw_key else None
            value = json.loads(raw_value) if raw_value is not None else None
        except ValueError:
            return False
        if not isinstance(key, dict) or not (value is None or isinstance(value, dict)):
            return False
        subject = key.get("subject")
        if key.get("keytype") == "DELETE_SUBJECT":
            upto = (value or {}).get("version")
            if not isinstance(upto, int):
                return False
            for (s, v), (schema_id, _deleted) in list(self.versions.items()):
                if s == subject and v <= upto:
                    self.versions[(s, v)] = (schema_id, True)
            return True
        version = key.get("version")
        if key.get("keytype") != "SCHEMA" or not isinstance(subject, str) or not isinstance(version, int):
            return False
        if value is None:  # a tombstone: the version is deleted permanently
            return self.versions.pop((subject, version), None) is not None
        try:
            schema_id = int(value["id"])
            schema_type = value.get("schemaType") or "AVRO"
            schema = value["schema"]
            refs = [[r["name"], r["subject"], r["version"]] for r in value.get("references") or []]
            content = (schema_type, schema, json.dumps(refs, separators=(",", ":")))
        except (KeyError, TypeError, ValueError):
            return False
        existing = self.versions.get((subject, version))
        owner = self.contents.get(schema_id)
        if (
            (existing is not None and existing[0] != schema_id)
            or (owner is not None and owner != content)
            or self.by_content.get(content, schema_id) != schema_id
        ):
            return False  # refused by every reader of the topic (a writer that lost a race)
        self.versions[(subject, version)] = (schema_id, bool(value.get("deleted", False)))
        if owner is None:
            self.contents[schema_id] = content
            self.by_content[content] = schema_id
            self.names[schema_id] = record_name(schema_type, schema)
        return True

    # --- checking records ---------------------------------------------------------------------
    def subject_for(self, topic: str, part: str, strategy: str, schema_id: int) -> str | None:
        kind = strategy.removeprefix(STRATEGY_PREFIX)
        if kind == "TopicNameStrategy":
            return f"{topic}-{part}"
        name = self.names.get(schema_id)
        if name is None:
            return None
        return name if kind == "RecordNameStrategy" else f"{topic}-{name}"

    def problem(self, topic: str, part: str, strategy: str, head: bytes) -> str | None:
        """Why a record's key or value (its first bytes, ``head``) is refused, or None."""
        if len(head) < WIRE_HEAD or head[0] != 0:
            return (f"the record's {part} does not start with the Schema Registry wire format "
                    "(magic byte 0 and a 4-byte schema id); produce it with a schema serializer")
        schema_id = int.from_bytes(head[1:WIRE_HEAD], "big")
        subjects = self.live.get(schema_id)
        subject = self.subject_for(topic, part, strategy, schema_id) if subjects else None
        if subjects is not None and subject in subjects:
            return None
        if subjects is None:
            return (f"the record's {part} schema id {schema_id} is not registered in this cluster's "
                    "Schema Registry")
        if subject is None:
            return (f"the record's {part} schema id {schema_id} has no record name for "
                    f"{strategy.removeprefix(STRATEGY_PREFIX)}")
        return (f"the record's {part} schema id {schema_id} is not registered under subject '{subject}' "
                f"({strategy.removeprefix(STRATEGY_PREFIX)})")


def validates(settings: LogSettings) -> bool:
    return settings.key_schema_validation or settings.value_schema_validation


def record_problems(
    schemas: SchemaIds, topic: str, index: int, records: Any, settings: LogSettings
) -> list[tuple[int, str]]:
    """(batch index, reason) of each record produce must refuse on this topic: a record without a
    key on a compacted topic, a key or value without a schema id registered under its subject when
    validation is on. One pass over the records' first bytes."""
    compact = settings.compact
    parts = []
    if settings.key_schema_validation:
        parts.append(("key", 1, settings.key_subject_strategy))
    if settings.value_schema_validation:
        parts.append(("value", 2, settings.value_subject_strategy))
    out: list[tuple[int, str]] = []
    if parts:
        schemas.catch_up()
    passed: set[tuple[str, bytes]] = set()  # heads already checked in this batch (usually one id)
    for i, key, value in record_heads(records, WIRE_HEAD if parts else 0):
        if compact and key is None:
            out.append((i, "Compacted topic cannot accept message without key in topic partition "
                           f"{topic}-{index}."))
            continue
        for part, at, strategy in parts:
            head = key if at == 1 else value
            # a null key or value carries no schema (serializers write None as null)
            if head is None or (part, head) in passed:
                continue
            reason = schemas.problem(topic, part, strategy, head)
            if reason:
                out.append((i, reason))
                break
            passed.add((part, head))
    return out
