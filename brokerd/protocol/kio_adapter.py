"""A thin adapter over kio.

- Schemas are imported lazily, per (api key, version), and cached.
- kio's native reader raises ``KeyError`` on unknown tagged fields; Kafka skips them. We try
  the fast native reader first and fall back to a tolerant pure-Python reader that skips
  unknown tags (recursively, in nested structs too).
- Responses are built from keyword arguments that are filtered to the fields a given version
  has, so handlers can describe one response for every version.
"""

from __future__ import annotations

import io
import sys
from dataclasses import MISSING, fields
from functools import cache
from typing import Any


def _import_kio() -> None:
    # kio registers hypothesis strategies when hypothesis is importable, which costs ~1 s and
    # ~10 MB at startup. Hide it while kio's primitives load (only if nobody imported it yet).
    if "kio.static.primitive" in sys.modules or "hypothesis" in sys.modules:
        return
    sys.modules["hypothesis"] = None  # type: ignore[assignment]
    try:
        import kio.static.primitive  # noqa: F401
    finally:
        del sys.modules["hypothesis"]


_import_kio()

from kio.index import load_payload_module  # noqa: E402
from kio.serial import entity_reader, entity_writer  # noqa: E402
from kio.serial._introspect import (  # noqa: E402
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    is_optional,
)
from kio.serial._shared import NullableEntityMarker  # noqa: E402
from kio.serial.readers import (  # noqa: E402
    read_compact_array_length,
    read_int8,
    read_legacy_array_length,
    read_unsigned_varint,
)
from kio.static.constants import EntityType  # noqa: E402

#: kio's private names this adapter depends on (pyproject pins kio's version range for them);
#: tests/brokerd/test_brokerd_kio_contract.py fails loudly if a kio release moves one.
PRIVATE_KIO_NAMES: dict[str, tuple[str, ...]] = {
    "kio.serial._introspect": (
        "EntityField", "EntityTupleField", "PrimitiveTupleField", "classify_field", "get_field_tag",
        "is_optional",
    ),
    "kio.serial._shared": ("NullableEntityMarker",),
    "kio._kio_native": ("get_field_reader",),
}

try:  # kio's native field reader factory
    from kio._kio_native import get_field_reader
except ImportError:  # pragma: no cover
    from kio.serial._parse import get_field_reader


class ProtocolError(Exception):
    """A request that cannot be decoded."""


@cache
def request_module(api_key: int, version: int) -> Any:
    return load_payload_module(api_key, version, EntityType.request)


@cache
def response_module(api_key: int, version: int) -> Any:
    return load_payload_module(api_key, version, EntityType.response)


def _payload_class(module: Any, kind: EntityType) -> type:
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) is kind:
            return value
    raise LookupError(f"no {kind.name} class in {module.__name__}")


@cache
def request_class(api_key: int, version: int) -> type:
    return _payload_class(request_module(api_key, version), EntityType.request)


@cache
def response_class(api_key: int, version: int) -> type:
    return _payload_class(response_module(api_key, version), EntityType.response)


#: Hot-path APIs whose requests and responses are flexible from this version (Produce, Fetch):
#: known without importing their kio schemas, so that the first Produce of a version does not
#: stall the loop loading modules its hand-written codec does not use.
FLEXIBLE_FROM = {0: 9, 1: 12}


@cache
def is_flexible_request(api_key: int, version: int) -> bool:
    first = FLEXIBLE_FROM.get(api_key)
    if first is not None:
        return version >= first
    return bool(request_class(api_key, version).__flexible__)


def is_flexible_response(api_key: int, version: int) -> bool:
    """Whether the response header is flexible (v1). ApiVersions always uses v0 (KIP-511)."""
    if api_key == 18:
        return False
    first = FLEXIBLE_FROM.get(api_key)
    if first is not None:
        return version >= first
    return bool(response_class(api_key, version).__flexible__)


# ---------------------------------------------------------------------------------------
# Decoding


@cache
def _native_reader(cls: type) -> Any:
    return entity_reader(cls)


def decode_request(api_key: int, version: int, buf: bytes | memoryview, offset: int) -> Any:
    """Decode a request body starting at ``offset``; unknown tagged fields are skipped.

    Requests from the network go through the tolerant reader, which checks every array length
    against the bytes left: kio's native reader pre-allocates arrays from their length prefix,
    so one garbage length aborted the process (Rust OOM; found by the
    hostile-input test). Produce has its own fast-path decoder.
    """
    cls = request_class(api_key, version)
    try:
        value, _pos = read_entity_tolerant(cls, buf, offset)
    except ProtocolError:
        raise
    except Exception as exc:  # kio raises a variety of decode errors
        raise ProtocolError(f"cannot decode {cls.__name__}: {exc}") from exc
    return value


def decode_entity(cls: type, buf: bytes | memoryview, offset: int = 0) -> Any:
    """Decode any kio entity, tolerating unknown tagged fields (used by tests and tools)."""
    try:
        value, _size = _native_reader(cls)(buf, offset)
    except KeyError:
        value, _pos = read_entity_tolerant(cls, buf, offset)
    return value


@cache
def _plan(cls: type) -> tuple[list[tuple[str, Any]], dict[int, tuple[str, Any]], dict[str, Any]]:
    """(regular field readers, tagged readers by tag, defaults of tagged fields)."""
    is_header = cls.__name__ == "RequestHeader"
    flexible = cls.__flexible__
    regular: list[tuple[str, Any]] = []
    tagged: dict[int, tuple[str, Any]] = {}
    defaults: dict[str, Any] = {}
    for f in fields(cls):
        tag = get_field_tag(f)
        klass = classify_field(f)
        if isinstance(klass, EntityField):
            nullable = False if tag is not None else is_optional(f)
            reader = _tolerant_entity_reader(klass.type_, nullable)
        elif isinstance(klass, EntityTupleField):
            reader = _tolerant_array_reader(klass.type_, flexible, is_optional(f))
        elif isinstance(klass, PrimitiveTupleField):
            reader = _guarded_primitive_array(
                get_field_reader(cls, f, is_header, tag is not None), flexible, is_optional(f)
            )
        else:
            reader = get_field_reader(cls, f, is_header, tag is not None)
        if tag is None:
            regular.append((f.name, reader))
        else:
            tagged[int(tag)] = (f.name, reader)
            if f.default is not MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not MISSING:  # pragma: no cover
                defaults[f.name] = f.default_factory()
    return regular, tagged, defaults


def _tolerant_entity_reader(cls: type, nullable: bool) -> Any:
    """A reader with kio's calling convention: (buffer, offset) -> (value, bytes consumed)."""

    def read(buf: Any, start: int) -> tuple[Any, int]:
        pos = start
        if nullable:
            marker, size = read_int8(buf, pos)
            pos += size
            if marker == NullableEntityMarker.null.value:
                return None, pos - start
        value, pos = read_entity_tolerant(cls, buf, pos)
        return value, pos - start

    return read


def _guarded_primitive_array(native: Any, flexible: bool, nullable: bool = True) -> Any:
    """Refuse a primitive array whose length exceeds the buffer before kio allocates it."""

    def read(buf: Any, start: int) -> tuple[Any, int]:
        if flexible:
            length, _size = read_compact_array_length(buf, start)
        else:
            length, _size = read_legacy_array_length(buf, start)
            if length < 0:
                length = None
        if length is None and not nullable:
            raise ProtocolError("null array where the schema does not allow null")
        if length is not None and length > len(buf) - start:
            raise ProtocolError("array length exceeds the frame")
        return native(buf, start)

    return read


def _tolerant_array_reader(cls: type, flexible: bool, nullable: bool = True) -> Any:
    def read(buf: Any, start: int) -> tuple[Any, int]:
        pos = start
        if flexible:
            length, size = read_compact_array_length(buf, pos)
        else:
            length, size = read_legacy_array_length(buf, pos)
            if length < 0:
                length = None
        pos += size
        if length is None:
            if not nullable:  # Kafka refuses a null non-nullable array (handlers iterate it)
                raise ProtocolError(f"null array of {cls.__name__} where the schema does not allow null")
            return None, pos - start
        if length > len(buf):
            raise ProtocolError("array length exceeds the frame")
        items = []
        for _ in range(length):
            item, pos = read_entity_tolerant(cls, buf, pos)
            items.append(item)
        return tuple(items), pos - start

    return read


def read_entity_tolerant(cls: type, buf: Any, pos: int) -> tuple[Any, int]:
    """Read ``cls`` at ``pos``; returns (entity, new position). Unknown tags are skipped."""
    regular, tagged, defaults = _plan(cls)
    values: dict[str, Any] = {}
    for name, reader in regular:
        values[name], size = reader(buf, pos)
        pos += size
    if cls.__flexible__:
        count, size = read_unsigned_varint(buf, pos)
        pos += size
        for _ in range(count):
            tag, size = read_unsigned_varint(buf, pos)
            pos += size
            length, size = read_unsigned_varint(buf, pos)
            pos += size
            end = pos + length
            if end > len(buf):
                raise ProtocolError("tagged field overruns the buffer")
            if tag in tagged:
                name, reader = tagged[tag]
                values[name], _size = reader(buf, pos)
            pos = end
        for name, default in defaults.items():
            values.setdefault(name, default)
    return cls(**values), pos


# ---------------------------------------------------------------------------------------
# Encoding


@cache
def _writer(cls: type) -> Any:
    return entity_writer(cls)


def encode(entity: Any) -> bytes:
    buf = io.BytesIO()
    _writer(type(entity))(buf, entity)
    return buf.getvalue()


@cache
def field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def build(cls: type, /, **kwargs: Any) -> Any:
    """Instantiate ``cls`` with the kwargs it has fields for (versions differ in fields)."""
    names = field_names(cls)
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def has_field(cls: type, name: str) -> bool:
    return name in field_names(cls)
