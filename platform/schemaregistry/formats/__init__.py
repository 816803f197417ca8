"""Schema formats by Confluent's type names: AVRO (the default), JSON and PROTOBUF."""

from __future__ import annotations

from types import ModuleType

from . import avro, json_schema, protobuf
from .base import InvalidSchema, ParsedSchema, Reference

FORMATS: dict[str, ModuleType] = {"AVRO": avro, "JSON": json_schema, "PROTOBUF": protobuf}
DEFAULT_TYPE = "AVRO"

__all__ = ["FORMATS", "InvalidSchema", "ParsedSchema", "Reference", "incompatibilities", "parse"]


def parse(schema_type: str, text: str, references: tuple[Reference, ...] = ()) -> ParsedSchema:
    module = FORMATS.get(schema_type)
    if module is None:
        raise InvalidSchema(f"Invalid schema type {schema_type!r}; use one of {sorted(FORMATS)}")
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("Invalid schema: the schema is empty")
    return module.parse(text, references)


def incompatibilities(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (empty: it can)."""
    if reader.schema_type != writer.schema_type:
        return [
            f"{{errorType:'SCHEMA_TYPE_CHANGED', description:'The schema type changed from "
            f"{writer.schema_type} to {reader.schema_type}'}}"
        ]
    return FORMATS[reader.schema_type].incompatibilities(reader, writer)
