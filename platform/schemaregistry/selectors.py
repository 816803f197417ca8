"""Reads of a cluster's registry, from this process's view caught up to the end of `_schemas`."""

from __future__ import annotations

import functools
from typing import Any

from clusters.models import Cluster

from . import compatibility, errors
from .formats import FORMATS, InvalidSchema, ParsedSchema, Reference, parse, protobuf
from .state import RegistryState, Version
from .storage import cluster_log


def registry_state(*, cluster: Cluster) -> RegistryState:
    return cluster_log(cluster).catch_up()


def parse_version_id(subject: str, raw: str | int) -> int | None:
    """A version path segment: a positive int, or "latest"/-1 (None)."""
    if raw in ("latest", "-1", -1):
        return None
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise errors.invalid_version(raw) from None
    if number < 1 or number > 2**31 - 1:
        raise errors.invalid_version(raw)
    return number


def version_get(state: RegistryState, subject: str, raw: str | int, *, deleted: bool = False) -> Version:
    if subject not in state.subjects:
        raise errors.subject_not_found(subject)
    number = parse_version_id(subject, raw)
    live = state.versions(subject, deleted=deleted)
    if number is None:
        if not live:
            raise errors.subject_not_found(subject)
        return live[-1]
    found = state.subjects[subject].get(number)
    if found is None or (found.deleted and not deleted):
        raise errors.version_not_found(subject, raw)
    return found


def live_subject(state: RegistryState, subject: str) -> list[Version]:
    if not state.versions(subject):
        raise errors.subject_not_found(subject)
    return state.versions(subject)


# --- parsing stored and offered schemas -------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def _parse_cached(schema_type: str, text: str, references: tuple[Reference, ...]) -> ParsedSchema:
    return parse(schema_type, text, references)


def resolve_references(state: RegistryState, raw: Any, *, depth: int = 0) -> tuple[Reference, ...]:
    """The offered references ([{name, subject, version}]) with their schemas, transitively."""
    if raw in (None, []):
        return ()
    if not isinstance(raw, list) or depth > 32:
        raise errors.invalid_schema("Invalid schema: references must be a list of {name, subject, version}")
    out = []
    for ref in raw:
        if not isinstance(ref, dict) or not all(isinstance(ref.get(k), str) for k in ("name", "subject")):
            raise errors.invalid_schema(
                "Invalid schema: each reference needs a name, a subject and a version"
            )
        version = ref.get("version", -1)
        try:
            target = version_get(state, ref["subject"], version if version != -1 else "latest")
        except errors.RegistryError as exc:
            raise errors.invalid_schema(
                f"Invalid schema: reference {ref['name']!r} names subject {ref['subject']!r} version "
                f"{version}, which does not exist ({exc.message})"
            ) from exc
        out.append(
            Reference(
                name=ref["name"],
                subject=target.subject,
                version=target.version,
                schema_type=target.schema_type,
                schema=target.schema,
                references=resolve_references(state, target.references, depth=depth + 1),
            )
        )
    return tuple(out)


def parse_offered(state: RegistryState, body: Any) -> ParsedSchema:
    """The schema of a register/lookup/compatibility body, parsed (42201 when invalid)."""
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise errors.invalid_schema('Invalid schema: the body must be a JSON object with a "schema" string')
    schema_type = body.get("schemaType") or "AVRO"
    if schema_type not in FORMATS:
        raise errors.invalid_schema(f"Invalid schema type {schema_type!r}; use one of {sorted(FORMATS)}")
    references = resolve_references(state, body.get("references"))
    try:
        return _parse_cached(schema_type, body["schema"], references)
    except InvalidSchema as exc:
        raise errors.invalid_schema(str(exc)) from exc


def parse_stored(state: RegistryState, version: Version) -> ParsedSchema:
    references = resolve_references(state, version.references)
    return _parse_cached(version.schema_type, version.schema, references)


def reference_dicts(references: tuple[Reference, ...]) -> list[dict[str, Any]]:
    return [{"name": r.name, "subject": r.subject, "version": r.version} for r in references]


# --- response bodies -------------------------------------------------------------------------------
def schema_text(state: RegistryState, version: Version, fmt: str | None) -> str:
    if fmt == "serialized" and version.schema_type == "PROTOBUF":
        return protobuf.serialized(parse_stored(state, version))
    return version.schema


def schema_body(state: RegistryState, version: Version, *, fmt: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": schema_text(state, version, fmt)}
    if version.schema_type != "AVRO":
        body["schemaType"] = version.schema_type
    if version.references:
        body["references"] = version.references
    return body


def version_body(state: RegistryState, version: Version, *, fmt: str | None = None) -> dict[str, Any]:
    return {
        "subject": version.subject,
        "version": version.version,
        "id": version.id,
        **schema_body(state, version, fmt=fmt),
    }


def compatibility_test(
    state: RegistryState, subject: str, body: Any, version: str | None = None
) -> list[str]:
    """The incompatibilities of the body's schema with `subject` (all its live versions at its
    level, or one version); an empty list when compatible."""
    parsed = parse_offered(state, body)
    if version is None:
        against, level = state.versions(subject), state.level(subject)
    else:
        against = [version_get(state, subject, version)]
        level = state.level(subject).removesuffix("_TRANSITIVE")
    return compatibility.check(level, parsed, [parse_stored(state, v) for v in against])
