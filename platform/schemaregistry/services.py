"""Writes to a cluster's registry: every one goes through `_schemas` under the writer lock."""

from __future__ import annotations

from typing import Any

from clusters.models import Cluster

from . import compatibility, errors
from .selectors import live_subject, parse_offered, parse_stored, reference_dicts, version_get
from .state import MODES, RegistryState, Version, content_key, schema_key, schema_value, setting_key
from .storage import cluster_log, writer_lock

#: Attempts when a record was refused by the fold (another writer won a race past its lock).
WRITE_ATTEMPTS = 3


def _check_writable(state: RegistryState, subject: str | None) -> None:
    if state.mode_of(subject) == "READONLY":
        where = f"Subject {subject}" if subject else "The registry"
        raise errors.not_permitted(f"{where} is in read-only mode")


def schema_register(*, cluster: Cluster, subject: str, body: Any) -> int:
    """Register the body's schema under `subject`; the id (the existing one if already there).

    Under IMPORT mode the body must carry its "id" (and may carry "version"), as when copying a
    registry; otherwise the registry picks the next free id and version."""
    if not isinstance(body, dict):
        raise errors.invalid_schema("Invalid schema: the body must be a JSON object")
    log = cluster_log(cluster)
    for _ in range(WRITE_ATTEMPTS):
        with writer_lock(cluster):
            state = log.catch_up_to_write()
            mode = state.mode_of(subject)
            _check_writable(state, subject)
            wanted_id, wanted_version = body.get("id"), body.get("version")
            if (wanted_id is not None or wanted_version is not None) and mode != "IMPORT":
                raise errors.not_permitted(
                    "Overriding the schema id or version is only permitted in IMPORT mode"
                )
            if mode == "IMPORT" and (not isinstance(wanted_id, int) or wanted_id < 1):
                raise errors.not_permitted('In IMPORT mode a registration must give the schema\'s "id"')
            parsed = parse_offered(state, body)
            refs = reference_dicts(parsed.references)
            key = content_key(parsed.schema_type, parsed.canonical, refs)
            for existing in state.versions(subject):
                if existing.content_key() == key:
                    return existing.id
            live = state.versions(subject)
            plan = cluster.plan_limits
            if state.schema_count() >= plan.max_schemas:
                raise errors.schema_limit(plan.display_name, plan.max_schemas)
            if mode != "IMPORT":
                previous = [parse_stored(state, v) for v in live]
                problems = compatibility.check(state.level(subject), parsed, previous)
                if problems:
                    raise errors.incompatible(problems)
            schema_id = state.ids.get(key) or (wanted_id if mode == "IMPORT" else state.max_id + 1)
            if mode == "IMPORT" and schema_id != wanted_id:
                raise errors.not_permitted(
                    f"This schema is already registered with id {schema_id}, not {wanted_id}"
                )
            taken = state.contents.get(schema_id)
            if taken is not None and taken != key:
                raise errors.not_permitted(f"Schema id {schema_id} is already used by another schema")
            version = (
                wanted_version
                if isinstance(wanted_version, int) and wanted_version > 0
                else (max(state.subjects.get(subject, {0: None})) + 1)
            )
            record = Version(subject, version, schema_id, parsed.schema_type, parsed.canonical, refs)
            after = log.append([(schema_key(subject, version), schema_value(record))])
            written = after.subjects.get(subject, {}).get(version)
            if written is not None and written.id == schema_id and written.content_key() == key:
                return schema_id
    raise errors.store_error("another writer kept winning; try again")


def _write(cluster: Cluster, records: list[tuple[dict, dict | None]]) -> RegistryState:
    return cluster_log(cluster).append(records)


def version_delete(*, cluster: Cluster, subject: str, version: str, permanent: bool) -> int:
    log = cluster_log(cluster)
    with writer_lock(cluster):
        state = log.catch_up_to_write()
        _check_writable(state, subject)
        found = version_get(state, subject, version, deleted=True)
        if version in ("latest", "-1") and permanent:
            found = version_get(state, subject, version, deleted=False)
        if permanent:
            if not found.deleted:
                raise errors.version_not_soft_deleted(subject, found.version)
        elif found.deleted:
            raise errors.version_soft_deleted(subject, found.version)
        if state.referenced_by(subject, found.version):
            raise errors.reference_exists(subject, found.version)
        if permanent:
            _write(cluster, [(schema_key(subject, found.version), None)])
        else:
            soft = Version(**{**found.__dict__, "deleted": True})
            _write(cluster, [(schema_key(subject, found.version), schema_value(soft))])
        return found.version


def subject_delete(*, cluster: Cluster, subject: str, permanent: bool) -> list[int]:
    log = cluster_log(cluster)
    with writer_lock(cluster):
        state = log.catch_up_to_write()
        _check_writable(state, subject)
        every = state.versions(subject, deleted=True)
        if not every:
            raise errors.subject_not_found(subject)
        live = state.versions(subject)
        for v in every:
            if state.referenced_by(subject, v.version):
                raise errors.reference_exists(subject, v.version)
        if permanent:
            if live:
                raise errors.subject_not_soft_deleted(subject)
            _write(cluster, [(schema_key(subject, v.version), None) for v in every])
            return [v.version for v in every]
        if not live:
            raise errors.subject_soft_deleted(subject)
        key = setting_key("DELETE_SUBJECT", subject)
        _write(cluster, [(key, {"subject": subject, "version": live[-1].version})])
        return [v.version for v in live]


def config_set(*, cluster: Cluster, subject: str | None, body: Any) -> str:
    level = body.get("compatibility") if isinstance(body, dict) else None
    if level not in compatibility.LEVELS:
        raise errors.invalid_level(level)
    with writer_lock(cluster):
        _write(cluster, [(setting_key("CONFIG", subject), {"compatibilityLevel": level})])
    return level


def config_delete(*, cluster: Cluster, subject: str | None) -> str:
    log = cluster_log(cluster)
    with writer_lock(cluster):
        state = log.catch_up_to_write()
        if subject is not None:
            live_subject(state, subject)
            if subject not in state.config:
                raise errors.subject_config_not_found(subject)
        previous = state.level(subject)
        _write(cluster, [(setting_key("CONFIG", subject), None)])
    return previous


def mode_set(*, cluster: Cluster, subject: str | None, body: Any, force: bool = False) -> str:
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in MODES:
        raise errors.invalid_mode(mode)
    log = cluster_log(cluster)
    with writer_lock(cluster):
        state = log.catch_up_to_write()
        if mode == "IMPORT" and not force:
            names = [subject] if subject is not None else state.subject_names()
            if any(state.versions(s) for s in names):
                raise errors.not_permitted(
                    "Cannot import since found existing subjects; set force=true to switch to IMPORT anyway"
                )
        _write(cluster, [(setting_key("MODE", subject), {"mode": mode})])
    return mode


def mode_delete(*, cluster: Cluster, subject: str) -> str:
    log = cluster_log(cluster)
    with writer_lock(cluster):
        state = log.catch_up_to_write()
        if subject not in state.mode:
            raise errors.subject_mode_not_found(subject)
        previous = state.mode_of(subject)
        _write(cluster, [(setting_key("MODE", subject), None)])
    return previous
