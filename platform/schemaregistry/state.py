"""The registry's view of one cluster: a fold over the records of its `_schemas` topic.

Records use Confluent Platform's `_schemas` layout (JSON keys and values), so the topic reads the
same as one written by Confluent's registry:

- SCHEMA  key {"keytype","subject","version","magic":1}, value {"subject","version","id",
  "schemaType","schema","references","deleted"}; a null value (tombstone) deletes the version
  permanently;
- CONFIG  key {"keytype","subject"|null,"magic":0}, value {"compatibilityLevel"} or null;
- MODE    key {"keytype","subject"|null,"magic":0}, value {"mode"} or null;
- DELETE_SUBJECT key {"keytype","subject","magic":0}, value {"subject","version"}: soft-deletes
  every version up to "version".

Fencing lives here: every reader applies the same records in the same order, and a SCHEMA record
that would give an id to a second schema, a second id to one schema, or a different schema to an
existing version is refused by all of them alike. A writer that lost a race (its lock lapsed
while its record was in flight) sees its record refused and retries; ids never collide.
No Django here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .compatibility import DEFAULT_LEVEL

MODES = ("READWRITE", "READONLY", "IMPORT")
DEFAULT_MODE = "READWRITE"


@dataclass
class Version:
    subject: str
    version: int
    id: int
    schema_type: str
    schema: str
    references: list[dict[str, Any]]
    deleted: bool = False

    def content_key(self) -> tuple[str, str, str]:
        return content_key(self.schema_type, self.schema, self.references)


def content_key(schema_type: str, schema: str, references: list[dict[str, Any]]) -> tuple[str, str, str]:
    refs = json.dumps([[r["name"], r["subject"], r["version"]] for r in references], separators=(",", ":"))
    return (schema_type, schema, refs)


@dataclass
class RegistryState:
    subjects: dict[str, dict[int, Version]] = field(default_factory=dict)
    contents: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # id -> content key
    ids: dict[tuple[str, str, str], int] = field(default_factory=dict)  # content key -> id
    config: dict[str | None, str] = field(default_factory=dict)
    mode: dict[str | None, str] = field(default_factory=dict)
    max_id: int = 0
    refused: int = 0  # records every reader ignored (a writer that lost a race)
    #: (subject, version) keys whose latest record was refused: compaction would keep that record
    #: and drop the accepted one, so the next writer rewrites the accepted value (or a tombstone)
    dirty: set[tuple[str, int]] = field(default_factory=set)

    # --- reads ------------------------------------------------------------------------------------
    def versions(self, subject: str, *, deleted: bool = False) -> list[Version]:
        found = self.subjects.get(subject, {})
        return [v for _, v in sorted(found.items()) if deleted or not v.deleted]

    def schema_count(self) -> int:
        """Live schema versions over all subjects: what a plan caps and metering counts."""
        return sum(len(self.versions(s)) for s in self.subjects)

    def subject_names(self, *, deleted: bool = False) -> list[str]:
        return sorted(s for s in self.subjects if self.versions(s, deleted=deleted))

    def by_id(self, schema_id: int) -> list[Version]:
        return [v for s in sorted(self.subjects) for v in self.versions(s, deleted=True) if v.id == schema_id]

    def level(self, subject: str | None) -> str:
        return self.config.get(subject) or self.config.get(None) or DEFAULT_LEVEL

    def mode_of(self, subject: str | None) -> str:
        return self.mode.get(subject) or self.mode.get(None) or DEFAULT_MODE

    def referenced_by(self, subject: str, version: int) -> list[int]:
        out = set()
        for versions in self.subjects.values():
            for v in versions.values():
                if any(r["subject"] == subject and r["version"] == version for r in v.references):
                    out.add(v.id)
        return sorted(out)

    # --- the fold ---------------------------------------------------------------------------------
    def apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> bool:
        """Apply one record; False when it is refused (or not understood), as by every reader."""
        keytype = key.get("keytype")
        if keytype == "SCHEMA":
            return self._schema(key, value)
        if keytype == "CONFIG":
            return self._setting(self.config, key, value, "compatibilityLevel")
        if keytype == "MODE":
            return self._setting(self.mode, key, value, "mode")
        if keytype == "DELETE_SUBJECT":
            subject, upto = key.get("subject"), (value or {}).get("version")
            if not isinstance(subject, str) or not isinstance(upto, int):
                return False
            for v in self.subjects.get(subject, {}).values():
                if v.version <= upto:
                    v.deleted = True
            return True
        return keytype == "NOOP"

    @staticmethod
    def _setting(target: dict, key: dict, value: dict | None, field_name: str) -> bool:
        subject = key.get("subject")
        if value is None:
            target.pop(subject, None)
        elif isinstance(value.get(field_name), str):
            target[subject] = value[field_name]
        else:
            return False
        return True

    def _schema(self, key: dict, value: dict | None) -> bool:
        subject, version = key.get("subject"), key.get("version")
        if not isinstance(subject, str) or not isinstance(version, int):
            return False
        versions = self.subjects.setdefault(subject, {})
        if value is None:  # permanent delete of one version
            self.dirty.discard((subject, version))
            versions.pop(version, None)
            if not versions:
                del self.subjects[subject]
            return True
        try:
            record = Version(
                subject=subject,
                version=version,
                id=int(value["id"]),
                schema_type=value.get("schemaType") or "AVRO",
                schema=value["schema"],
                references=list(value.get("references") or []),
                deleted=bool(value.get("deleted", False)),
            )
        except (KeyError, TypeError, ValueError):
            return False
        ckey = record.content_key()
        existing = versions.get(version)
        owner = self.contents.get(record.id)
        if (
            (existing is not None and existing.id != record.id)
            or (owner is not None and owner != ckey)
            or (ckey in self.ids and self.ids[ckey] != record.id)
        ):
            self.refused += 1
            self.dirty.add((subject, version))
            if not versions:
                del self.subjects[subject]
            return False
        versions[version] = record
        self.dirty.discard((subject, version))
        self.contents[record.id] = ckey
        self.ids[ckey] = record.id
        self.max_id = max(self.max_id, record.id)
        return True


def schema_key(subject: str, version: int) -> dict[str, Any]:
    return {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}


def schema_value(v: Version) -> dict[str, Any]:
    value: dict[str, Any] = {
        "subject": v.subject,
        "version": v.version,
        "id": v.id,
        "schema": v.schema,
        "deleted": v.deleted,
    }
    if v.schema_type != "AVRO":
        value["schemaType"] = v.schema_type
    if v.references:
        value["references"] = v.references
    return value


def setting_key(keytype: str, subject: str | None) -> dict[str, Any]:
    return {"keytype": keytype, "subject": subject, "magic": 0}
