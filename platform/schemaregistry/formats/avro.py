"""Avro: fastavro parses and validates; the compatibility check is the Avro specification's
schema-resolution rules ("Schema Resolution"), written out here.

A reader can read data written with a writer when, recursively:
- both are the same primitive, or the writer's is promotable to the reader's (int to long, float
  or double; long to float or double; float to double; string to bytes and back);
- both are records with the same unqualified name (or a reader alias): every reader field
  either matches a writer field by name (or alias) whose type it can read, or has a default;
- both are enums with the same name: every writer symbol is a reader symbol, unless the reader
  has a default symbol;
- both are fixed with the same name and size; arrays whose items resolve; maps whose values do;
- the reader is a union with a branch that reads the writer; the writer is a union all of whose
  branches the reader reads.
"""

from __future__ import annotations

import json
from typing import Any

from fastavro.schema import SchemaParseException, UnknownType, parse_schema

from .base import InvalidSchema, ParsedSchema, Reference, flatten

TYPE = "AVRO"
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        # A bare primitive name ("string") is a valid Avro schema in the Java parser too.
        if isinstance(text, str) and text.strip() in PRIMITIVES:
            return text.strip()
        raise InvalidSchema(f"Invalid schema: the Avro schema is not valid JSON ({exc})") from exc


def _parse_into(raw: Any, named: dict[str, Any]) -> Any:
    try:
        return parse_schema(raw, named_schemas=named, _write_hint=False)
    except UnknownType as exc:
        raise InvalidSchema(
            f"Invalid schema: unknown Avro type {exc.name!r}; define it, or add a reference to the "
            "subject that defines it"
        ) from exc
    except (SchemaParseException, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from exc


def parse(text: str, references: tuple[Reference, ...] = ()) -> ParsedSchema:
    named: dict[str, Any] = {}
    for ref in flatten(references):
        if ref.schema_type != TYPE:
            raise InvalidSchema(f"Invalid schema: reference {ref.name!r} is {ref.schema_type}, not AVRO")
        _parse_into(_load(ref.schema), named)
    raw = _load(text)
    parsed = _parse_into(raw, named)
    canonical = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    return ParsedSchema(TYPE, canonical, {"root": parsed, "named": dict(named)}, tuple(references))


def record_names(schema: ParsedSchema) -> list[str]:
    """Full names of the named types the schema defines at its top (RecordNameStrategy subjects)."""
    root = schema.parsed["root"]
    if isinstance(root, dict) and "name" in root:
        return [root["name"]]
    return []


# --- resolution -----------------------------------------------------------------------------------
class _Checker:
    def __init__(self, reader: ParsedSchema, writer: ParsedSchema) -> None:
        self.rnamed = reader.parsed["named"]
        self.wnamed = writer.parsed["named"]
        self.in_progress: set[tuple[str, str]] = set()
        self.messages: list[str] = []

    def _deref(self, schema: Any, named: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return named.get(schema, schema)
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            return schema["type"]  # a primitive with a logical type resolves as the primitive
        return schema

    def _kind(self, schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        return schema["type"]

    def fail(self, error_type: str, path: str, description: str) -> None:
        self.messages.append(f"{{errorType:'{error_type}', description:'{description}', location:'{path}'}}")

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader, writer = self._deref(reader, self.rnamed), self._deref(writer, self.wnamed)
        rkind, wkind = self._kind(reader), self._kind(writer)
        if wkind == "union":
            for i, branch in enumerate(writer):
                if not self._can(reader, branch):
                    if rkind == "union":
                        self.fail(
                            "MISSING_UNION_BRANCH",
                            f"{path}/{i}",
                            f"The reader's schema lacks a type inside a union field at path '{path}/{i}' "
                            f"(the writer's {self._describe(branch)})",
                        )
                    else:
                        self.check(reader, branch, path)
            return
        if rkind == "union":
            if not any(self._can(branch, writer) for branch in reader):
                self.fail(
                    "MISSING_UNION_BRANCH",
                    path,
                    f"The reader's union at path '{path}' has no branch for the writer's "
                    f"{self._describe(writer)}",
                )
            return
        if rkind in PRIMITIVES or wkind in PRIMITIVES:
            if rkind != wkind and rkind not in PROMOTIONS.get(wkind, ()):
                self.fail(
                    "TYPE_MISMATCH",
                    path,
                    f"The type (path '{path}') of a field in the reader's schema ({rkind}) does not match "
                    f"the writer's ({wkind})",
                )
            return
        if rkind != wkind:
            self.fail(
                "TYPE_MISMATCH",
                path,
                f"The type (path '{path}') in the reader's schema ({rkind}) does not match the writer's "
                f"({wkind})",
            )
            return
        getattr(self, f"_{rkind}")(reader, writer, path)

    def _describe(self, schema: Any) -> str:
        schema = self._deref(schema, self.wnamed)
        kind = self._kind(schema)
        return f"{kind} {schema['name']}" if isinstance(schema, dict) and "name" in schema else kind

    def _can(self, reader: Any, writer: Any) -> bool:
        saved = self.messages
        self.messages = []
        try:
            self.check(reader, writer, "")
            return not self.messages
        finally:
            self.messages = saved

    def _names_match(self, reader: dict, writer: dict, path: str) -> bool:
        rname, wname = reader["name"].rsplit(".", 1)[-1], writer["name"].rsplit(".", 1)[-1]
        aliases = {a.rsplit(".", 1)[-1] for a in reader.get("aliases", [])}
        if rname == wname or wname in aliases:
            return True
        self.fail(
            "NAME_MISMATCH",
            f"{path}/name",
            f"The name of the schema has changed (path '{path}/name'): the writer's is {wname!r}, "
            f"the reader's {rname!r}",
        )
        return False

    def _record(self, reader: dict, writer: dict, path: str) -> None:
        if not self._names_match(reader, writer, path):
            return
        pair = (reader["name"], writer["name"])
        if pair in self.in_progress:
            return  # a recursive type: assumed to resolve while it is being checked
        self.in_progress.add(pair)
        try:
            wfields = {f["name"]: f for f in writer["fields"]}
            for i, field in enumerate(reader["fields"]):
                candidates = [field["name"], *field.get("aliases", [])]
                match = next((wfields[n] for n in candidates if n in wfields), None)
                here = f"{path}/fields/{i}"
                if match is None:
                    if "default" not in field:
                        self.fail(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            here,
                            f"The field '{field['name']}' at path '{here}' in the reader's schema has no "
                            "default value and is missing in the writer's schema",
                        )
                    continue
                self.check(field["type"], match["type"], f"{here}/type")
        finally:
            self.in_progress.discard(pair)

    def _enum(self, reader: dict, writer: dict, path: str) -> None:
        if not self._names_match(reader, writer, path):
            return
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and reader.get("default") is None:
            self.fail(
                "MISSING_ENUM_SYMBOLS",
                f"{path}/symbols",
                f"The reader's schema is missing enum symbols {missing} at path '{path}/symbols' of the "
                "writer's schema (give the enum a default to allow it)",
            )

    def _fixed(self, reader: dict, writer: dict, path: str) -> None:
        if not self._names_match(reader, writer, path):
            return
        if reader["size"] != writer["size"]:
            self.fail(
                "FIXED_SIZE_MISMATCH",
                f"{path}/size",
                f"The size of the FIXED type at path '{path}/size' in the reader's schema ({reader['size']}) "
                f"does not match the writer's ({writer['size']})",
            )

    def _array(self, reader: dict, writer: dict, path: str) -> None:
        self.check(reader["items"], writer["items"], f"{path}/items")

    def _map(self, reader: dict, writer: dict, path: str) -> None:
        self.check(reader["values"], writer["values"], f"{path}/values")


def incompatibilities(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    checker = _Checker(reader, writer)
    checker.check(reader.parsed["root"], writer.parsed["root"], "")
    return checker.messages
