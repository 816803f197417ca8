"""Protobuf: .proto text is compiled with the protoc packaged in grpcio-tools; a schema may also
come as a base64 FileDescriptorProto (what confluent-kafka's ProtobufSerializer registers).
Compatibility compares descriptors, message by full name and field by number, with Confluent's
difference names (MESSAGE_REMOVED, FIELD_KIND_CHANGED, FIELD_SCALAR_KIND_CHANGED,
FIELD_NAMED_TYPE_CHANGED, REQUIRED_FIELD_ADDED/REMOVED, ONEOF_FIELD_REMOVED,
FIELD_MOVED_TO_EXISTING_ONEOF, MULTIPLE_FIELDS_MOVED_TO_ONEOF, PACKAGE_CHANGED).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError

from .base import InvalidSchema, ParsedSchema, Reference, flatten

TYPE = "PROTOBUF"
MAIN_FILE = "schema.proto"
PROTOC_TIMEOUT_S = 30
F = descriptor_pb2.FieldDescriptorProto
# Scalars that share a wire encoding, so data written as one reads as another (Confluent's groups).
_WIRE_GROUPS = [
    {F.TYPE_INT32, F.TYPE_UINT32, F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_BOOL},
    {F.TYPE_SINT32, F.TYPE_SINT64},
    {F.TYPE_FIXED32, F.TYPE_SFIXED32},
    {F.TYPE_FIXED64, F.TYPE_SFIXED64},
    {F.TYPE_STRING, F.TYPE_BYTES},
]
_NAMED = {F.TYPE_MESSAGE, F.TYPE_GROUP, F.TYPE_ENUM}


def _builtin_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def _is_builtin(name: str) -> bool:
    return name.startswith(("google/protobuf/", "google/type/", "confluent/"))


def _decode_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    stripped = text.strip()
    if not stripped or any(c.isspace() for c in stripped) or "{" in stripped or ";" in stripped:
        return None
    try:
        raw = base64.b64decode(stripped, validate=True)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        return None
    return proto if proto.name or proto.message_type or proto.package else None


@functools.lru_cache(maxsize=512)
def _compile(text: str, name: str, deps: tuple[bytes, ...]) -> bytes:
    """protoc in a child process (its errors go to its stderr, which we report); cached, since a
    compatibility check compiles every earlier version too."""
    with tempfile.TemporaryDirectory(prefix="kastle-proto-") as tmp:
        src = Path(tmp, "src")
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"-I{_builtin_include()}"]
        if deps:
            dep_set = descriptor_pb2.FileDescriptorSet()
            for dep in deps:
                dep_set.file.add().ParseFromString(dep)
            Path(tmp, "deps.pb").write_bytes(dep_set.SerializeToString())
            args.append(f"--descriptor_set_in={Path(tmp, 'deps.pb')}")
        out = Path(tmp, "out.pb")
        args += [f"--descriptor_set_out={out}", name]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME", "LANG")}
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=PROTOC_TIMEOUT_S, env=env, cwd=tmp
        )
        if proc.returncode != 0:
            detail = proc.stderr.strip().replace(str(src) + "/", "") or "protoc failed"
            raise InvalidSchema(f"Invalid schema: {detail}")
        result = descriptor_pb2.FileDescriptorSet()
        result.ParseFromString(out.read_bytes())
        return result.file[-1].SerializeToString()


def _file_proto(text: str, name: str, deps: list[descriptor_pb2.FileDescriptorProto]):
    decoded = _decode_descriptor(text)
    if decoded is not None:
        decoded.name = name if not decoded.name or name != MAIN_FILE else decoded.name
        return decoded, True
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("Invalid schema: the Protobuf schema is empty")
    raw = _compile(text, name, tuple(d.SerializeToString(deterministic=True) for d in deps))
    proto = descriptor_pb2.FileDescriptorProto()
    proto.ParseFromString(raw)
    return proto, False


def parse(text: str, references: tuple[Reference, ...] = ()) -> ParsedSchema:
    pool = descriptor_pool.DescriptorPool()
    deps: list[descriptor_pb2.FileDescriptorProto] = []
    for ref in flatten(references):
        if ref.schema_type != TYPE:
            raise InvalidSchema(f"Invalid schema: reference {ref.name!r} is {ref.schema_type}, not PROTOBUF")
        dep, _ = _file_proto(ref.schema, ref.name, deps)
        deps.append(dep)
    proto, from_descriptor = _file_proto(text, MAIN_FILE, deps)
    _check_in_pool(pool, deps, proto)
    canonical = (
        base64.b64encode(proto.SerializeToString(deterministic=True)).decode()
        if from_descriptor
        else text.strip()
    )
    return ParsedSchema(TYPE, canonical, {"file": proto, "deps": deps}, tuple(references))


def _check_in_pool(pool, deps, proto) -> None:
    """Building the descriptors checks every type name and import (a descriptor may be malformed)."""
    from google.protobuf import descriptor_pb2 as builtin

    names = {d.name for d in deps}
    for missing in [d for d in proto.dependency if d not in names]:
        if not _is_builtin(missing):
            raise InvalidSchema(
                f"Invalid schema: the import {missing!r} is not among the schema's references; add a "
                "reference named like the import"
            )
    try:
        for needed in {d for d in proto.dependency if _is_builtin(d)} | {
            d for dep in deps for d in dep.dependency if _is_builtin(d)
        }:
            _add_builtin(pool, needed, builtin)
        for dep in deps:
            pool.Add(dep)
        pool.Add(proto)
        for message in proto.message_type:
            pool.FindMessageTypeByName(".".join(filter(None, [proto.package, message.name])))
    except (TypeError, KeyError, ValueError) as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from exc


def _add_builtin(pool, name: str, builtin) -> None:
    default = descriptor_pool.Default()
    try:
        found = default.FindFileByName(name)
    except KeyError:
        import importlib

        module = name.removesuffix(".proto").replace("/", ".") + "_pb2"
        try:
            importlib.import_module(module)
            found = default.FindFileByName(name)
        except (ImportError, KeyError) as exc:
            raise InvalidSchema(f"Invalid schema: unknown well-known import {name!r}") from exc
    file_proto = builtin.FileDescriptorProto()
    found.CopyToProto(file_proto)
    for dep in file_proto.dependency:
        _add_builtin(pool, dep, builtin)
    with contextlib.suppress(TypeError):  # already added through another import
        pool.Add(file_proto)


def serialized(schema: ParsedSchema) -> str:
    """The base64 FileDescriptorProto (`?format=serialized`, what confluent-kafka's clients read)."""
    return base64.b64encode(schema.parsed["file"].SerializeToString(deterministic=True)).decode()


def record_names(schema: ParsedSchema) -> list[str]:
    proto = schema.parsed["file"]
    return [".".join(filter(None, [proto.package, m.name])) for m in proto.message_type]


# --- compatibility --------------------------------------------------------------------------------
def _messages(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages) -> None:
        for message in messages:
            if message.options.map_entry:
                continue
            full = f"{prefix}.{message.name}" if prefix else message.name
            out[full] = message
            walk(full, message.nested_type)

    walk(proto.package, proto.message_type)
    return out


def _oneof(message, field) -> str | None:
    if not field.HasField("oneof_index") or field.proto3_optional:
        return None
    return message.oneof_decl[field.oneof_index].name


def _diff_message(name: str, old, new, out: list[str]) -> None:
    where = f"#/{name}"
    old_fields, new_fields = {f.number: f for f in old.field}, {f.number: f for f in new.field}
    for number, before in old_fields.items():
        after = new_fields.get(number)
        here = f"{where}/{number}"
        if after is None:
            if before.label == F.LABEL_REQUIRED:
                out.append(f"REQUIRED_FIELD_REMOVED {here}: required field '{before.name}' was removed")
            if _oneof(old, before):
                out.append(
                    f"ONEOF_FIELD_REMOVED {here}: field '{before.name}' left oneof '{_oneof(old, before)}'"
                )
            continue
        if (before.type in _NAMED) != (after.type in _NAMED) or (
            before.type in _NAMED and (before.type == F.TYPE_ENUM) != (after.type == F.TYPE_ENUM)
        ):
            out.append(f"FIELD_KIND_CHANGED {here}: field '{after.name}' changed kind")
        elif before.type in _NAMED:
            if before.type_name.lstrip(".") != after.type_name.lstrip("."):
                out.append(
                    f"FIELD_NAMED_TYPE_CHANGED {here}: field '{after.name}' changed type from "
                    f"{before.type_name.lstrip('.')} to {after.type_name.lstrip('.')}"
                )
        elif before.type != after.type and not any(
            before.type in g and after.type in g for g in _WIRE_GROUPS
        ):
            out.append(
                f"FIELD_SCALAR_KIND_CHANGED {here}: field '{after.name}' changed from "
                f"{F.Type.Name(before.type)[5:].lower()} to {F.Type.Name(after.type)[5:].lower()}"
            )
        if (before.label == F.LABEL_REPEATED) != (after.label == F.LABEL_REPEATED) and (
            before.type in _NAMED or before.type in (F.TYPE_STRING, F.TYPE_BYTES)
        ):
            out.append(
                f"FIELD_KIND_CHANGED {here}: field '{after.name}' changed between repeated and singular"
            )
        old_oneof, new_oneof = _oneof(old, before), _oneof(new, after)
        if old_oneof and not new_oneof:
            out.append(f"ONEOF_FIELD_REMOVED {here}: field '{after.name}' left oneof '{old_oneof}'")
        elif new_oneof and not old_oneof:
            if any(_oneof(old, f) == new_oneof for f in old.field if f.number != number):
                out.append(
                    f"FIELD_MOVED_TO_EXISTING_ONEOF {here}: field '{after.name}' moved into the existing "
                    f"oneof '{new_oneof}'"
                )
            else:
                moved = [
                    f
                    for f in new.field
                    if _oneof(new, f) == new_oneof
                    and f.number in old_fields
                    and not _oneof(old, old_fields[f.number])
                ]
                if len(moved) > 1 and moved[0].number == number:
                    out.append(
                        f"MULTIPLE_FIELDS_MOVED_TO_ONEOF {where}: fields {[f.name for f in moved]} moved "
                        f"into the new oneof '{new_oneof}'"
                    )
    for number, after in new_fields.items():
        if number not in old_fields and after.label == F.LABEL_REQUIRED:
            out.append(f"REQUIRED_FIELD_ADDED {where}/{number}: required field '{after.name}' was added")


def incompatibilities(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    """Differences from the writer's schema (the original) to the reader's (the update)."""
    old, new = writer.parsed["file"], reader.parsed["file"]
    out: list[str] = []
    if old.package != new.package:
        out.append(f"PACKAGE_CHANGED #/: the package changed from {old.package!r} to {new.package!r}")
        return out
    old_messages, new_messages = _messages(old), _messages(new)
    for name, message in old_messages.items():
        if name not in new_messages:
            out.append(f"MESSAGE_REMOVED #/{name}: message {name} was removed")
            continue
        _diff_message(name, message, new_messages[name], out)
    return out
