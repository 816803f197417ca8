"""Client-metrics subscriptions: Kafka's ``client-metrics`` config resources (type 16).

Each named subscription has ``metrics`` (metric name prefixes; ``*`` for all, empty for none),
``interval.ms`` (how often matching clients push) and ``match`` (``selector=regex`` pairs over
client_instance_id, client_id, client_software_name, client_software_version,
client_source_address and client_source_port; empty matches every client). Regexes use RE2
syntax, matched against the whole value. A broker alone keeps the set in
``<data dir>/client-metrics.json``; a cluster keeps it in etcd, the same on every broker (a
broker that ran alone brings its file's subscriptions into the cluster once:
brokerd/cluster_metadata.py).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import re2

from brokerd.durable import atomic_write

METRICS, INTERVAL_MS, MATCH = "metrics", "interval.ms", "match"
KEYS = (METRICS, INTERVAL_MS, MATCH)
DEFAULT_INTERVAL_MS = 300_000
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 100, 3_600_000
SELECTORS = (
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
)
DOCS = {
    METRICS: "List of telemetry metric name prefixes that match the client metrics subscription (* for all).",
    INTERVAL_MS: "The interval in milliseconds at which matching clients push their metrics.",
    MATCH: "List of client matching patterns (selector=regex): client_instance_id, client_id, "
    "client_software_name, client_software_version, client_source_address, client_source_port.",
}
FILE = "client-metrics.json"

log = logging.getLogger("brokerd.telemetry")


class SubscriptionError(ValueError):
    """An invalid subscription config: Kafka answers INVALID_CONFIG (unknown names: INVALID_REQUEST)."""

    def __init__(self, message: str, *, unknown_name: bool = False) -> None:
        super().__init__(message)
        self.unknown_name = unknown_name


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    metrics: tuple[str, ...]
    interval_ms: int
    match: tuple[tuple[str, str], ...]

    def matches(self, client: Mapping[str, str]) -> bool:
        return all(re2.fullmatch(pattern, client.get(key, "")) is not None for key, pattern in self.match)

    def configs(self) -> dict[str, str]:
        return {
            METRICS: ",".join(self.metrics),
            INTERVAL_MS: str(self.interval_ms),
            MATCH: ",".join(f"{k}={v}" for k, v in self.match),
        }


def parse(name: str, configs: Mapping[str, str]) -> Subscription:
    """Validate one resource's configs as Kafka's ClientMetricsConfigs.validate does."""
    if not name:
        raise SubscriptionError("Subscription name can't be empty")
    for key in configs:
        if key not in KEYS:
            raise SubscriptionError(f"Unknown client metrics configuration: {key}", unknown_name=True)
    try:
        interval = int(configs.get(INTERVAL_MS) or DEFAULT_INTERVAL_MS)
    except ValueError:
        raise SubscriptionError(f"Invalid value {configs.get(INTERVAL_MS)} for {INTERVAL_MS}") from None
    if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        raise SubscriptionError(
            f"Invalid value {interval} for {INTERVAL_MS}, interval must be between "
            f"{MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}"
        )
    match = []
    for pair in _split(configs.get(MATCH)):
        key, sep, pattern = pair.partition("=")
        if not sep or key not in SELECTORS:
            raise SubscriptionError(f"Illegal client matching pattern: {pair}")
        try:
            re2.compile(pattern)
        except re2.error:
            raise SubscriptionError(f"Illegal regex pattern in client matching pattern: {pair}") from None
        match.append((key, pattern))
    return Subscription(name, tuple(_split(configs.get(METRICS))), interval, tuple(match))


class SubscriptionStore:
    """The cluster's subscriptions on this broker, durable in one JSON file."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / FILE
        self.subscriptions: dict[str, Subscription] = {}
        self.version = 0
        if self.path.exists():
            for name, configs in json.loads(self.path.read_text()).items():
                self.subscriptions[name] = parse(name, configs)

    def names(self) -> list[str]:
        return sorted(self.subscriptions)

    def configs(self, name: str) -> dict[str, str] | None:
        sub = self.subscriptions.get(name)
        return None if sub is None else sub.configs()

    def alter(
        self, name: str, changes: Iterable[tuple[str, int, str | None]], *, validate_only: bool
    ) -> None:
        """IncrementalAlterConfigs: (key, op, value) with op 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT."""
        self.replace(name, altered(name, self.configs(name) or {}, changes), validate_only=validate_only)

    def replace(self, name: str, configs: Mapping[str, str | None], *, validate_only: bool) -> None:
        """AlterConfigs: the resource's configs become exactly ``configs`` (none: it is deleted)."""
        kept = validated(name, configs)
        if validate_only:
            return
        if kept:
            self.subscriptions[name] = parse(name, kept)
        else:
            self.subscriptions.pop(name, None)
        self.version += 1
        payload = {n: s.configs() for n, s in sorted(self.subscriptions.items())}
        atomic_write(self.path, json.dumps(payload, indent=1).encode())

    def follow(self, configs: Mapping[str, Mapping[str, str]]) -> None:
        """A cluster's subscriptions as etcd holds them (every broker follows the same set);
        the local file is not written: etcd is the store."""
        subs = {}
        for name, values in configs.items():
            try:
                subs[name] = parse(name, values)
            except SubscriptionError as exc:  # only brokerd writes them, validated; skip, never fail
                log.error("unreadable client-metrics subscription %s in the cluster metadata: %s", name, exc)
        if subs != self.subscriptions:
            self.subscriptions = subs
            self.version += 1

    def matching(self, client: Mapping[str, str]) -> list[Subscription]:
        return [s for _, s in sorted(self.subscriptions.items()) if s.matches(client)]


def altered(name: str, current: Mapping[str, str], changes: Iterable[tuple[str, int, str | None]]) -> dict:
    """A subscription's configs after IncrementalAlterConfigs operations (validated)."""
    current = dict(current)
    for key, op, value in changes:
        if key not in KEYS:
            raise SubscriptionError(f"Unknown client metrics configuration: {key}", unknown_name=True)
        if op == 0:
            current[key] = value or ""
        elif op == 1:
            current.pop(key, None)
        elif op in (2, 3) and key != INTERVAL_MS:
            items = _split(current.get(key))
            for v in _split(value):
                if op == 2 and v not in items:
                    items.append(v)
                elif op == 3 and v in items:
                    items.remove(v)
            current[key] = ",".join(items)
        else:
            raise SubscriptionError(f"Config operation {op} is not allowed for {key}")
    return validated(name, current)


def validated(name: str, configs: Mapping[str, str | None]) -> dict[str, str]:
    """The configs a subscription keeps (empty values dropped; none left deletes it), validated;
    as stored (normalised by the parse)."""
    kept = {k: v for k, v in configs.items() if v is not None and v != ""}
    return parse(name, kept).configs() if kept else {}


def subscription_id(subs: list[Subscription], instance_id: str) -> int:
    """A stable id of what a client is asked for: it changes whenever the matching set changes."""
    text = instance_id + "|" + "|".join(f"{s.name}:{sorted(s.configs().items())}" for s in subs)
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value
