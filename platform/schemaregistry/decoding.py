"""Decoding records written in the Schema Registry wire format (magic byte 0, a 4-byte schema id,
then the payload) through a cluster's registry, for the portal's message browser.

Avro payloads are read with the writer's schema (fastavro), JSON Schema payloads are JSON text,
Protobuf payloads start with the message indexes (zig-zag varints; a lone 0 is the file's first
message) and are read with the registered descriptor. The answer is JSON text for display.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import Any

import fastavro
from google.protobuf import descriptor_pool, json_format, message_factory

from clusters.models import Cluster

from .errors import RegistryError
from .formats import InvalidSchema, ParsedSchema
from .formats.protobuf import _check_in_pool
from .selectors import parse_stored, registry_state
from .state import RegistryState

WIRE = struct.Struct(">bI")


@dataclass
class Decoded:
    schema_id: int
    subjects: list[str]
    schema_type: str
    text: str  # the record as pretty JSON, or why it could not be read
    ok: bool = True

    @property
    def subject(self) -> str:
        return ", ".join(self.subjects)

    @property
    def view(self) -> dict[str, Any]:
        return {"kind": "json" if self.ok else "text", "text": self.text, "truncated": False}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _protobuf(parsed: ParsedSchema, payload: bytes) -> Any:
    count, pos = _varint(payload, 0)
    indexes = [0]
    if count:
        indexes = []
        for _ in range(count):
            index, pos = _varint(payload, pos)
            indexes.append(index)
    proto = parsed.parsed["file"]
    pool = descriptor_pool.DescriptorPool()
    _check_in_pool(pool, parsed.parsed["deps"], proto)
    message = proto.message_type[indexes[0]]
    path = [message.name]
    for index in indexes[1:]:
        message = message.nested_type[index]
        path.append(message.name)
    descriptor = pool.FindMessageTypeByName(".".join(filter(None, [proto.package, *path])))
    record = message_factory.GetMessageClass(descriptor)()
    record.ParseFromString(payload[pos:])
    return json_format.MessageToDict(record, preserving_proto_field_name=True)


def _read(parsed: ParsedSchema, payload: bytes) -> Any:
    if parsed.schema_type == "AVRO":
        return fastavro.schemaless_reader(io.BytesIO(payload), parsed.parsed["root"], None)
    if parsed.schema_type == "JSON":
        return json.loads(payload)
    return _protobuf(parsed, payload)


def decode(state: RegistryState, data: bytes | None) -> Decoded | None:
    """The record read through the registry, or None when `data` is not in the wire format or its
    id is unknown (it is then shown as bytes)."""
    if data is None or len(data) < WIRE.size or data[0] != 0:
        return None
    _magic, schema_id = WIRE.unpack_from(data)
    versions = state.by_id(schema_id)
    if not versions:
        return None
    version = versions[0]
    subjects = sorted({v.subject for v in versions})
    try:
        value = _read(parse_stored(state, version), data[WIRE.size :])
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        return Decoded(schema_id, subjects, version.schema_type, text)
    except (InvalidSchema, Exception) as exc:  # a codec's own error on data not matching its schema
        return Decoded(schema_id, subjects, version.schema_type, f"cannot read the record: {exc}", ok=False)


def decode_all(*, cluster: Cluster, values: list[bytes | None]) -> list[Decoded | None]:
    """Each value decoded through the cluster's registry (one catch-up on `_schemas` for all)."""
    if not any(v is not None and v[:1] == b"\x00" for v in values):
        return [None] * len(values)
    try:
        state = registry_state(cluster=cluster)
    except RegistryError:  # the registry cannot be read now: the values are shown as bytes
        return [None] * len(values)
    return [decode(state, v) for v in values]
