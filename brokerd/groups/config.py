"""Group coordinator settings, with Kafka's names and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: Kafka setting name -> GroupConfig field.
KAFKA_NAMES: dict[str, str] = {
    "group.min.session.timeout.ms": "min_session_timeout_ms",
    "group.max.session.timeout.ms": "max_session_timeout_ms",
    "group.initial.rebalance.delay.ms": "initial_rebalance_delay_ms",
    "group.max.size": "max_size",
    "offsets.retention.minutes": "offsets_retention_minutes",
    "offsets.retention.check.interval.ms": "offsets_retention_check_interval_ms",
    "offset.metadata.max.bytes": "offset_metadata_max_bytes",
    "offsets.commit.flush.window.ms": "commit_flush_window_ms",
    "offsets.compaction.min.records": "compaction_min_records",
    "producer.id.expiration.ms": "producer_id_expiration_ms",
    "group.consumer.session.timeout.ms": "consumer_session_timeout_ms",
    "group.consumer.heartbeat.interval.ms": "consumer_heartbeat_interval_ms",
    "group.consumer.max.size": "consumer_max_size",
    "group.consumer.assignors": "consumer_assignors",
    "group.consumer.migration.policy": "consumer_migration_policy",
}

#: group.consumer.migration.policy values, as Kafka's: whether a group with members changes
#: protocol (upgrade: a consumer-protocol member joins a classic group; downgrade: the last one
#: leaves a group of classic members). Empty groups change protocol under every policy.
MIGRATION_POLICIES = ("disabled", "upgrade", "downgrade", "bidirectional")

#: (Kafka name, type, default, doc, minimum) for registration with brokerd.settings.
SETTINGS_DOC: tuple[tuple[str, str, Any, str, int | None], ...] = (
    ("group.min.session.timeout.ms", "int", 6000, "smallest session timeout a group member may ask for", 1),
    ("group.max.session.timeout.ms", "int", 1800000, "largest session timeout a group member may ask for", 1),
    (
        "group.initial.rebalance.delay.ms",
        "int",
        3000,
        "wait for more members before a new group's first rebalance",
        0,
    ),
    ("group.max.size", "int", 2147483647, "members allowed in one group", 1),
    ("offsets.retention.minutes", "int", 10080, "keep an empty group's committed offsets this long", 1),
    ("offsets.retention.check.interval.ms", "int", 600000, "how often offset expiry runs", 1),
    ("offset.metadata.max.bytes", "int", 4096, "largest commit metadata string", 0),
    ("offsets.commit.flush.window.ms", "int", 0, "extra wait to batch offset-commit fsyncs", 0),
    (
        "offsets.compaction.min.records",
        "int",
        10000,
        "compact the offsets log beyond this many dead records",
        1,
    ),
    (
        "producer.id.expiration.ms",
        "int",
        86400000,
        "forget an idle producer's sequence state after this long",
        1,
    ),
    (
        "group.consumer.session.timeout.ms",
        "int",
        45000,
        "a consumer-protocol member not heard from this long is removed from its group",
        1,
    ),
    (
        "group.consumer.heartbeat.interval.ms",
        "int",
        5000,
        "how often consumer-protocol members heartbeat (told in every heartbeat response)",
        1,
    ),
    ("group.consumer.max.size", "int", 2147483647, "members allowed in one consumer-protocol group", 1),
    (
        "group.consumer.assignors",
        "list",
        ["uniform", "range"],
        "server-side assignors; the first is the default",
        None,
    ),
    (
        "group.consumer.migration.policy",
        "str",
        "bidirectional",
        "online protocol changes of groups with members: disabled, upgrade, downgrade or bidirectional",
        None,
    ),
)


@dataclass(frozen=True, slots=True)
class GroupConfig:
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3000
    max_size: int = 2**31 - 1
    #: KIP-394: a new member parked in JoinGroup is dropped after this long (Kafka: 5 minutes).
    new_member_join_timeout_ms: int = 300_000
    offsets_retention_minutes: int = 7 * 24 * 60
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    #: Extra wait before an fsync so more commits share it (commits arriving during an fsync
    #: always share the next one; 0 measured best).
    commit_flush_window_ms: float = 0
    #: Compact the offsets log when it holds this many more records than live ones.
    compaction_min_records: int = 10_000
    producer_id_expiration_ms: int = 86_400_000
    consumer_session_timeout_ms: int = 45_000
    consumer_heartbeat_interval_ms: int = 5_000
    consumer_max_size: int = 2**31 - 1
    consumer_assignors: tuple[str, ...] = ("uniform", "range")
    consumer_migration_policy: str = "bidirectional"

    def __post_init__(self) -> None:
        if self.consumer_migration_policy.lower() not in MIGRATION_POLICIES:
            raise ValueError(
                f"group.consumer.migration.policy={self.consumer_migration_policy}: one of "
                f"{', '.join(MIGRATION_POLICIES)}"
            )
        if not self.consumer_assignors or any(a not in ("uniform", "range") for a in self.consumer_assignors):
            raise ValueError(
                f"group.consumer.assignors={','.join(self.consumer_assignors)}: uniform and range only"
            )

    @property
    def offsets_retention_ms(self) -> int:
        return self.offsets_retention_minutes * 60_000

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> GroupConfig:
        """Build from a mapping of Kafka setting names (unknown names are ignored)."""
        kwargs: dict[str, Any] = {}
        valid = {f.name for f in fields(cls)}
        for name, value in settings.items():
            attr = KAFKA_NAMES.get(name, name if name in valid else None)
            if attr is not None and value is not None:
                kwargs[attr] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def register_settings() -> None:
    """Add the group settings to brokerd.settings's registry (idempotent)."""
    from brokerd import settings

    for name, type_, default, doc, minimum in SETTINGS_DOC:
        if name not in settings.SETTINGS:
            settings.register(name, type_, default, doc, minimum=minimum)
