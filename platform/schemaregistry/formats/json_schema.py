"""JSON Schema: jsonschema validates the schema; compatibility follows Confluent's documented rules.

The question asked is "does every document the writer's schema accepts pass the reader's?". The
answers carry Confluent's difference names: TYPE_NARROWED, TYPE_CHANGED,
REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL, PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL (an open
content model's documents may already hold that property with any value),
PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL, ADDITIONAL_PROPERTIES_REMOVED/NARROWED,
MAX_*_DECREASED/ADDED, MIN_*_INCREASED/ADDED, ENUM_ARRAY_NARROWED, COMBINED_TYPE_SUBSCHEMAS_CHANGED, …
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
from jsonschema.exceptions import SchemaError
from referencing.jsonschema import DRAFT7

from .base import InvalidSchema, ParsedSchema, Reference, flatten

TYPE = "JSON"
_ALL_TYPES = {"null", "boolean", "object", "array", "number", "integer", "string"}


def _load(text: str) -> Any:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InvalidSchema(f"Invalid schema: the JSON schema is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict | bool):
        raise InvalidSchema("Invalid schema: a JSON schema is an object or a boolean")
    return raw


def parse(text: str, references: tuple[Reference, ...] = ()) -> ParsedSchema:
    resources = []
    for ref in flatten(references):
        if ref.schema_type != TYPE:
            raise InvalidSchema(f"Invalid schema: reference {ref.name!r} is {ref.schema_type}, not JSON")
        resources.append((ref.name, referencing.Resource.from_contents(_load(ref.schema), DRAFT7)))
    raw = _load(text)
    validator_cls = jsonschema.validators.validator_for(raw, default=jsonschema.Draft7Validator)
    try:
        validator_cls.check_schema(raw)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the root"
        raise InvalidSchema(f"Invalid schema: {exc.message} (at {where})") from exc
    registry = referencing.Registry().with_resources(resources)
    canonical = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    return ParsedSchema(TYPE, canonical, {"root": raw, "registry": registry}, tuple(references))


def record_names(schema: ParsedSchema) -> list[str]:
    root = schema.parsed["root"]
    return [root["title"]] if isinstance(root, dict) and isinstance(root.get("title"), str) else []


def validator(schema: ParsedSchema) -> jsonschema.protocols.Validator:
    """A validator for documents (the registry itself only checks schemas; kept for callers)."""
    raw = schema.parsed["root"]
    cls = jsonschema.validators.validator_for(raw, default=jsonschema.Draft7Validator)
    return cls(raw, registry=schema.parsed["registry"])


# --- compatibility --------------------------------------------------------------------------------
class _Checker:
    def __init__(self, reader: ParsedSchema, writer: ParsedSchema) -> None:
        self.reader, self.writer = reader, writer
        self.messages: list[str] = []
        self.in_progress: set[tuple[int, int]] = set()

    def fail(self, kind: str, path: str, detail: str) -> None:
        self.messages.append(f"{{errorType:'{kind}', description:'{detail}', location:'{path or '#'}'}}")

    def _resolve(self, schema: Any, side: ParsedSchema) -> Any:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            seen += 1
            resolver = side.parsed["registry"].resolver_with_root(
                referencing.Resource.from_contents(side.parsed["root"], DRAFT7)
            )
            try:
                schema = resolver.lookup(schema["$ref"]).contents
            except referencing.exceptions.Unresolvable:
                return schema
        return schema

    @staticmethod
    def _types(schema: Any) -> set[str]:
        if schema is True or schema == {}:
            return set(_ALL_TYPES)
        if schema is False:
            return set()
        declared = schema.get("type")
        if declared is None:
            return set(_ALL_TYPES)
        return {declared} if isinstance(declared, str) else set(declared)

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader, writer = self._resolve(reader, self.reader), self._resolve(writer, self.writer)
        pair = (id(reader), id(writer))
        if pair in self.in_progress:
            return
        self.in_progress.add(pair)
        try:
            self._check(reader, writer, path)
        finally:
            self.in_progress.discard(pair)

    def _check(self, reader: Any, writer: Any, path: str) -> None:
        if reader is True or reader == {} or writer is False:
            return
        if reader is False:
            self.fail("SCHEMA_NARROWED", path, f"The new schema at '{path or '#'}' accepts nothing")
            return
        if writer is True:
            writer = {}
        for combo in ("oneOf", "anyOf", "allOf"):
            if combo in reader or combo in writer:
                self._combined(combo, reader, writer, path)
        rtypes, wtypes = self._types(reader), self._types(writer)
        widened_rtypes = rtypes | ({"integer"} if "number" in rtypes else set())
        lost = wtypes - widened_rtypes
        if lost:
            narrowed = rtypes & wtypes or ("integer" in rtypes and "number" in wtypes)
            kind = "TYPE_NARROWED" if narrowed else "TYPE_CHANGED"
            self.fail(
                kind, path, f"The type at '{path or '#'}' was {sorted(wtypes)} and is now {sorted(rtypes)}"
            )
            return
        if "enum" in reader:
            missing = [v for v in writer.get("enum", [None, "*any*"]) if v not in reader["enum"]]
            if "enum" not in writer or missing:
                self.fail(
                    "ENUM_ARRAY_NARROWED",
                    f"{path}/enum",
                    f"The enum at '{path}/enum' no longer allows {missing}",
                )
        if "const" in reader and writer.get("const", object()) != reader["const"]:
            self.fail("CONST_CHANGED", f"{path}/const", f"The const at '{path}/const' changed")
        self._bounds(reader, writer, path)
        if "object" in rtypes & wtypes:
            self._object(reader, writer, path)
        if "array" in rtypes & wtypes:
            self._array(reader, writer, path)

    _LIMITS = (
        ("maxLength", "MAX_LENGTH", max),
        ("minLength", "MIN_LENGTH", min),
        ("maximum", "MAXIMUM", max),
        ("minimum", "MINIMUM", min),
        ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM", max),
        ("exclusiveMinimum", "EXCLUSIVE_MINIMUM", min),
        ("maxItems", "MAX_ITEMS", max),
        ("minItems", "MIN_ITEMS", min),
        ("maxProperties", "MAX_PROPERTIES", max),
        ("minProperties", "MIN_PROPERTIES", min),
    )

    def _bounds(self, reader: dict, writer: dict, path: str) -> None:
        for keyword, name, looser in self._LIMITS:
            if keyword not in reader or isinstance(reader[keyword], bool):
                continue
            here = f"{path}/{keyword}"
            if keyword not in writer:
                self.fail(f"{name}_ADDED", here, f"'{keyword}' was added at '{here}'")
            elif looser(reader[keyword], writer[keyword]) != reader[keyword]:
                change = "DECREASED" if looser is max else "INCREASED"
                self.fail(
                    f"{name}_{change}",
                    here,
                    f"'{keyword}' at '{here}' went from {writer[keyword]} to {reader[keyword]}",
                )
        for keyword, name in (("pattern", "PATTERN"), ("multipleOf", "MULTIPLE_OF")):
            if keyword in reader and reader[keyword] != writer.get(keyword):
                kind = f"{name}_ADDED" if keyword not in writer else f"{name}_CHANGED"
                self.fail(
                    kind, f"{path}/{keyword}", f"'{keyword}' at '{path}/{keyword}' was added or changed"
                )
        if reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True:
            self.fail("UNIQUE_ITEMS_ADDED", f"{path}/uniqueItems", f"'uniqueItems' was added at '{path}'")

    @staticmethod
    def _additional(schema: dict) -> Any:
        return schema.get("additionalProperties", True)

    def _object(self, reader: dict, writer: dict, path: str) -> None:
        rprops, wprops = reader.get("properties", {}), writer.get("properties", {})
        rreq, wreq = set(reader.get("required", [])), set(writer.get("required", []))
        radd, wadd = self._additional(reader), self._additional(writer)
        writer_open = wadd is not False
        for name, rprop in rprops.items():
            here = f"{path}/properties/{name}"
            if name in wprops:
                self.check(rprop, wprops[name], here)
            elif name in rreq:
                self.fail(
                    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                    here,
                    f"The required property '{name}' was added at '{here}'; old documents lack it",
                )
            elif writer_open:
                if wadd is True or wadd == {}:
                    if not (rprop is True or rprop == {}):
                        self.fail(
                            "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                            here,
                            f"The property '{name}' was added at '{here}' to an open content model: old "
                            "documents may hold it with any value (close the model or use "
                            "additionalProperties in the old schema)",
                        )
                else:
                    self.check(rprop, wadd, here)
        for name in rreq - wreq:
            if name in wprops and name in rprops:
                self.fail(
                    "REQUIRED_ATTRIBUTE_ADDED",
                    f"{path}/required",
                    f"The property '{name}' at '{path}/properties/{name}' became required",
                )
        for name, wprop in wprops.items():
            if name in rprops:
                continue
            here = f"{path}/properties/{name}"
            if radd is False:
                self.fail(
                    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    here,
                    f"The property '{name}' was removed at '{here}' from a closed content model",
                )
            elif radd is not True and radd != {}:
                self.check(radd, wprop, here)
        if radd is False and writer_open:
            self.fail(
                "ADDITIONAL_PROPERTIES_REMOVED",
                f"{path}/additionalProperties",
                f"additionalProperties at '{path}' went from allowed to false",
            )
        elif isinstance(radd, dict) and radd != {} and writer_open:
            if wadd is True or wadd == {}:
                self.fail(
                    "ADDITIONAL_PROPERTIES_NARROWED",
                    f"{path}/additionalProperties",
                    f"additionalProperties at '{path}' was narrowed",
                )
            else:
                self.check(radd, wadd, f"{path}/additionalProperties")

    def _array(self, reader: dict, writer: dict, path: str) -> None:
        ritems, witems = reader.get("items", True), writer.get("items", True)
        if isinstance(ritems, list) or isinstance(witems, list):
            if ritems != witems:
                self.fail("ITEMS_CHANGED", f"{path}/items", f"The tuple items at '{path}/items' changed")
            return
        self.check(ritems, witems, f"{path}/items")

    def _combined(self, combo: str, reader: dict, writer: dict, path: str) -> None:
        rsubs, wsubs = reader.get(combo), writer.get(combo)
        here = f"{path}/{combo}"
        if rsubs is None:
            if combo != "allOf":
                for i, sub in enumerate(wsubs):
                    self.check(
                        {k: v for k, v in reader.items() if k not in ("oneOf", "anyOf")}, sub, f"{here}/{i}"
                    )
            return
        if wsubs is None:
            if combo == "allOf":
                for i, sub in enumerate(rsubs):
                    self.check(sub, {k: v for k, v in writer.items() if k != "allOf"}, f"{here}/{i}")
            elif not any(self._can(sub, writer) for sub in rsubs):
                self.fail("TYPE_CHANGED", here, f"No branch of '{here}' accepts the old schema's documents")
            return
        if combo == "allOf":
            if len(rsubs) > len(wsubs):
                self.fail("PRODUCT_TYPE_EXTENDED", here, f"'{here}' gained subschemas")
            return
        if len(rsubs) < len(wsubs):
            self.fail("SUM_TYPE_NARROWED", here, f"'{here}' lost subschemas ({len(wsubs)} -> {len(rsubs)})")
            return
        for i, wsub in enumerate(wsubs):
            if not any(self._can(rsub, wsub) for rsub in rsubs):
                self.fail(
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                    f"{here}/{i}",
                    f"No subschema of the new '{here}' accepts the old one's subschema {i}",
                )

    def _can(self, reader: Any, writer: Any) -> bool:
        saved, self.messages = self.messages, []
        try:
            self.check(reader, writer, "")
            return not self.messages
        finally:
            self.messages = saved


def incompatibilities(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    checker = _Checker(reader, writer)
    checker.check(reader.parsed["root"], writer.parsed["root"], "")
    return checker.messages
