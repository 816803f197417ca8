"""The registry's format engine: parsing, canonical forms and compatibility per format and level.

No database and no broker: these are the rules themselves (Avro's schema resolution, Confluent's
JSON Schema and Protobuf rules), each allowed change accepted and each forbidden one named.
"""

from __future__ import annotations

import json

import pytest

from schemaregistry import compatibility
from schemaregistry.formats import InvalidSchema, Reference, parse, protobuf
from schemaregistry.state import RegistryState, schema_key


def avro(*fields: dict, name: str = "Order") -> object:
    return parse(
        "AVRO", json.dumps({"type": "record", "name": name, "namespace": "shop", "fields": list(fields)})
    )


def jsn(schema: dict) -> object:
    return parse("JSON", json.dumps(schema))


def proto(body: str, package: str = "shop") -> object:
    return parse("PROTOBUF", f'syntax = "proto3";\npackage {package};\n{body}\n')


def check(level: str, new, *previous) -> list[str]:
    return compatibility.check(level, new, list(previous))


# --- Avro ---------------------------------------------------------------------------------------------
ID = {"name": "id", "type": "string"}


def test_avro_parse_canonical_and_invalid():
    pretty = parse(
        "AVRO", '{\n  "type": "record",\n  "name": "R",\n  "fields": [{"name": "a", "type": "int"}]\n}'
    )
    compact = parse("AVRO", '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}')
    assert pretty.canonical == compact.canonical  # same schema, same id
    assert parse("AVRO", '"string"').canonical == '"string"'
    with pytest.raises(InvalidSchema, match="unknown Avro type 'Missing'"):
        parse("AVRO", '{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}')
    with pytest.raises(InvalidSchema, match="not valid JSON"):
        parse("AVRO", "{nope")
    with pytest.raises(InvalidSchema, match="Default value"):
        parse("AVRO", '{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}')


def test_avro_references_resolve_named_types():
    money = Reference(
        "shop.Money",
        "money",
        1,
        "AVRO",
        '{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}',
    )
    parsed = parse(
        "AVRO",
        json.dumps(
            {
                "type": "record",
                "name": "Order",
                "namespace": "shop",
                "fields": [{"name": "total", "type": "shop.Money"}],
            }
        ),
        (money,),
    )
    assert parsed.references == (money,)
    with pytest.raises(InvalidSchema, match="add a reference"):
        parse("AVRO", '{"type":"record","name":"O","fields":[{"name":"t","type":"shop.Money"}]}')


def test_avro_backward_forward_full():
    v1 = avro(ID)
    with_default = avro(ID, {"name": "note", "type": "string", "default": ""})
    without_default = avro(ID, {"name": "note", "type": "string"})
    # Adding a field: with a default the new schema reads old data; without one it cannot.
    assert check("BACKWARD", with_default, v1) == []
    (message,) = check("BACKWARD", without_default, v1)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message and "'note'" in message
    # FORWARD: old readers ignore the added field; removing a field without a default breaks them.
    assert check("FORWARD", without_default, v1) == []
    (message,) = check("FORWARD", v1, without_default)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message
    assert check("FULL", with_default, v1) == []
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in check("FULL", without_default, v1)[0]
    assert check("NONE", avro({"name": "x", "type": "int"}), v1) == []


def test_avro_promotions_unions_enums_and_names():
    ints, longs = avro({"name": "n", "type": "int"}), avro({"name": "n", "type": "long"})
    assert check("BACKWARD", longs, ints) == []  # int is promotable to long
    (message,) = check("BACKWARD", ints, longs)
    assert "TYPE_MISMATCH" in message and "(int)" in message and "(long)" in message
    nullable = avro({"name": "n", "type": ["null", "int"], "default": None})
    assert check("BACKWARD", nullable, ints) == []  # a union branch reads the old int
    (message,) = check("FORWARD", nullable, ints)  # an old int reader meets the new null branch
    assert message.startswith("old schema reading data of the new one") and "TYPE_MISMATCH" in message
    assert "(int)" in message and "(null)" in message
    assert (
        "MISSING_UNION_BRANCH"
        in check("BACKWARD", avro({"name": "n", "type": ["null", "string"]}), nullable)[0]
    )

    def enum(*symbols, **extra):
        return avro({"name": "s", "type": {"type": "enum", "name": "S", "symbols": list(symbols), **extra}})

    assert check("BACKWARD", enum("A", "B"), enum("A")) == []
    assert "MISSING_ENUM_SYMBOLS" in check("BACKWARD", enum("A"), enum("A", "B"))[0]
    assert check("BACKWARD", enum("A", default="A"), enum("A", "B")) == []
    assert "NAME_MISMATCH" in check("BACKWARD", avro(ID, name="Other"), avro(ID))[0]
    fixed = lambda size: avro({"name": "f", "type": {"type": "fixed", "name": "F", "size": size}})  # noqa: E731
    assert "FIXED_SIZE_MISMATCH" in check("BACKWARD", fixed(8), fixed(16))[0]


def test_avro_recursive_types_resolve():
    node = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    grown = json.loads(json.dumps(node))
    grown["fields"].append({"name": "label", "type": "string", "default": ""})
    assert (
        compatibility.check("FULL", parse("AVRO", json.dumps(grown)), [parse("AVRO", json.dumps(node))]) == []
    )


def test_transitive_levels_check_every_version():
    # BACKWARD: v2 dropped n; v3 brings it back as a string. v3 reads v2's data, not v1's ints.
    v1 = avro(ID, {"name": "n", "type": "int"})
    v2 = avro(ID)
    v3 = avro(ID, {"name": "n", "type": "string", "default": ""})
    assert check("BACKWARD", v3, v1, v2) == []
    (message,) = check("BACKWARD_TRANSITIVE", v3, v1, v2)
    assert "TYPE_MISMATCH" in message and "(string)" in message and "(int)" in message
    # FORWARD: v2 gave a a default, v3 drops a. v2 readers cope, v1 readers (no default) do not.
    f1 = avro(ID, {"name": "a", "type": "int"})
    f2 = avro(ID, {"name": "a", "type": "int", "default": 0})
    f3 = avro(ID)
    assert check("FORWARD", f3, f1, f2) == []
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in check("FORWARD_TRANSITIVE", f3, f1, f2)[0]
    assert check("FULL", f3, f1, f2) == []
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in check("FULL_TRANSITIVE", f3, f1, f2)[0]


# --- JSON Schema -----------------------------------------------------------------------------------
def obj(props: dict, *, required=(), additional=None) -> object:
    schema: dict = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if additional is not None:
        schema["additionalProperties"] = additional
    return jsn(schema)


def test_json_parse_and_invalid():
    assert jsn({"type": "string"}).canonical == '{"type":"string"}'
    with pytest.raises(InvalidSchema, match=r"is not valid under any of the given schemas|is not of type"):
        jsn({"type": "strin"})
    with pytest.raises(InvalidSchema, match="not valid JSON"):
        parse("JSON", "{")
    with pytest.raises(InvalidSchema, match="an object or a boolean"):
        parse("JSON", "[1]")


def test_json_content_models():
    base = obj({"id": {"type": "string"}})
    # Open content model: old documents may carry any extra property, so adding one is not backward.
    (message,) = check("BACKWARD", obj({"id": {"type": "string"}, "n": {"type": "integer"}}), base)
    assert "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL" in message and "'n'" in message
    # Closed model: old documents never had it, so an optional property may be added ...
    closed = obj({"id": {"type": "string"}}, additional=False)
    assert (
        check("BACKWARD", obj({"id": {"type": "string"}, "n": {"type": "integer"}}, additional=False), closed)
        == []
    )
    # ... but not a required one, and nothing may be removed from it.
    (message,) = check(
        "BACKWARD",
        obj({"id": {"type": "string"}, "n": {"type": "integer"}}, required=["n"], additional=False),
        closed,
    )
    assert "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" in message
    assert (
        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"
        in check("BACKWARD", obj({}, additional=False), closed)[0]
    )
    # Removing a property from an open model is backward compatible.
    assert check("BACKWARD", obj({}), base) == []


def test_json_types_and_bounds():
    integer, number = obj({"n": {"type": "integer"}}), obj({"n": {"type": "number"}})
    assert check("BACKWARD", number, integer) == []  # number accepts every integer
    assert "TYPE_NARROWED" in check("BACKWARD", integer, number)[0]
    assert "TYPE_CHANGED" in check("BACKWARD", obj({"n": {"type": "string"}}), integer)[0]
    assert check("FULL", number, integer)  # FULL needs both directions
    short = obj({"s": {"type": "string", "maxLength": 5}})
    longer = obj({"s": {"type": "string", "maxLength": 10}})
    assert check("BACKWARD", longer, short) == []
    assert "MAX_LENGTH_DECREASED" in check("BACKWARD", short, longer)[0]
    enum = lambda *values: obj({"e": {"enum": list(values)}})  # noqa: E731
    assert check("BACKWARD", enum("a", "b"), enum("a")) == []
    assert "ENUM_ARRAY_NARROWED" in check("BACKWARD", enum("a"), enum("a", "b"))[0]
    one = jsn({"oneOf": [{"type": "string"}, {"type": "integer"}]})
    two = jsn({"oneOf": [{"type": "string"}]})
    assert check("BACKWARD", one, two) == []
    assert "SUM_TYPE_NARROWED" in check("BACKWARD", two, one)[0]


def test_json_local_refs_are_followed():
    def with_defs(kind: str) -> object:
        return jsn(
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/definitions/A"}},
                "definitions": {"A": {"type": kind}},
            }
        )

    assert check("BACKWARD", with_defs("number"), with_defs("integer")) == []
    assert "TYPE_CHANGED" in check("BACKWARD", with_defs("string"), with_defs("integer"))[0]


# --- Protobuf -------------------------------------------------------------------------------------
def test_protobuf_compile_errors_and_descriptor_form():
    parsed = proto("message Order { string id = 1; int64 cents = 2; }")
    assert protobuf.record_names(parsed) == ["shop.Order"]
    with pytest.raises(InvalidSchema, match='"Money" is not defined'):
        proto("message Order { Money total = 1; }")
    # The base64 FileDescriptorProto confluent-kafka's serializer registers parses as the same messages.
    again = parse("PROTOBUF", protobuf.serialized(parsed))
    assert protobuf.record_names(again) == ["shop.Order"] and check("FULL", again, parsed) == []
    with_import = proto(
        'import "google/protobuf/timestamp.proto";\nmessage E { google.protobuf.Timestamp at = 1; }'
    )
    assert protobuf.record_names(with_import) == ["shop.E"]


def test_protobuf_references_are_imports():
    money = Reference(
        "money.proto", "money", 1, "PROTOBUF", 'syntax = "proto3"; package m; message Money { int64 c = 1; }'
    )
    text = 'syntax = "proto3";\npackage shop;\nimport "money.proto";\nmessage Order { m.Money total = 1; }'
    assert protobuf.record_names(parse("PROTOBUF", text, (money,))) == ["shop.Order"]
    with pytest.raises(InvalidSchema, match=r"money\.proto"):
        parse("PROTOBUF", text)


def test_protobuf_compatibility():
    v1 = proto("message Order { string id = 1; int32 qty = 2; }")
    assert (
        check(
            "FULL_TRANSITIVE", proto("message Order { string id = 1; int32 qty = 2; string note = 3; }"), v1
        )
        == []
    )
    wider = proto("message Order { string id = 1; int64 qty = 2; }")
    assert check("BACKWARD", wider, v1) == []  # int32 and int64 share the varint wire type
    (message,) = check("BACKWARD", proto("message Order { string id = 1; string qty = 2; }"), v1)
    assert "FIELD_SCALAR_KIND_CHANGED" in message and "'qty'" in message
    (message,) = check("BACKWARD", proto("message Other { string id = 1; }"), v1)
    assert "MESSAGE_REMOVED" in message and "shop.Order" in message
    moved = proto("message Order { string id = 1; int32 qty = 2; }", package="x")
    assert "PACKAGE_CHANGED" in check("BACKWARD", moved, v1)[0]
    nested = proto("message Order { string id = 1; Item qty = 2; } message Item { int32 n = 1; }")
    assert "FIELD_KIND_CHANGED" in check("BACKWARD", nested, v1)[0]
    oneof = proto("message Order { oneof key { string id = 1; int32 qty = 2; } }")
    assert "MULTIPLE_FIELDS_MOVED_TO_ONEOF" in check("BACKWARD", oneof, v1)[0]


# --- the fold's fencing ------------------------------------------------------------------------------
def _value(subject: str, version: int, schema_id: int, schema: str) -> dict:
    return {"subject": subject, "version": version, "id": schema_id, "schema": schema, "deleted": False}


def test_fold_refuses_records_that_would_collide():
    state = RegistryState()
    assert state.apply(schema_key("a", 1), _value("a", 1, 1, '"int"'))
    # A writer that raced and picked id 1 for another schema is refused by every reader.
    assert not state.apply(schema_key("b", 1), _value("b", 1, 1, '"long"'))
    # ... and so is one that gives the same schema a second id, or rewrites an existing version.
    assert not state.apply(schema_key("c", 1), _value("c", 1, 2, '"int"'))
    assert not state.apply(schema_key("a", 1), _value("a", 1, 3, '"string"'))
    assert state.refused == 3 and state.subject_names() == ["a"] and state.max_id == 1
    # The same schema under another subject shares its id.
    assert state.apply(schema_key("d", 1), _value("d", 1, 1, '"int"'))
    assert [v.subject for v in state.by_id(1)] == ["a", "d"]
    # Soft delete rewrites the version with the same id; a tombstone removes it.
    assert state.apply(schema_key("a", 1), {**_value("a", 1, 1, '"int"'), "deleted": True})
    assert state.subject_names() == ["d"] and state.subject_names(deleted=True) == ["a", "d"]
    assert state.apply(schema_key("a", 1), None)
    assert state.subject_names(deleted=True) == ["d"]
