"""Client quotas and connection limits, as Apache Kafka does them.

Quota types (Kafka's keys, DescribeClientQuotas/AlterClientQuotas):

``producer_byte_rate``  bytes/s of Produce record batches a client may append.
``consumer_byte_rate``  bytes/s of Fetch record data a client may receive.
``request_percentage``  share of the broker's *handler time* a client may use, as a percentage
                        of one thread per window (Kafka's definition: 100 = one full thread).
                        brokerd is one event loop, so handler time is the wall time the loop
                        spends decoding, handling and encoding the client's requests (long-poll
                        waiting in Fetch and fsync waiting in Produce excluded: they do not
                        occupy the loop). It is *not* requests per second.

Entities are ``user`` (the SASL principal; ANONYMOUS on PLAINTEXT) and ``client-id``, or the
pair. ``None`` (shown as ``<default>`` in config files and kafka-configs) is the default
entity. A client's quota for each key is the first defined in Kafka's order (KIP-55):

    user+client-id, user+<default client-id>, user, <default user>+client-id,
    <default user>+<default client-id>, <default user>, client-id, <default client-id>

and, as in Kafka, clients matched by an explicit entity share one meter, while clients matched
by a *default* entity each get their own (the default is a per-user/per-client limit).

Measurement follows Kafka's sampled rate: ``quota.window.num`` samples (11) of
``quota.window.size.seconds`` (1 s); the rate is the total over live samples divided by the
elapsed window, which is at least ``(num - 1) * size``. When the rate after recording exceeds
the quota, the throttle time is Kafka's (KIP-219)::

    throttle_ms = (rate - quota) / quota * window_ms

capped at the full window (``num * size``). The broker returns it as ``throttle_time_ms`` and
mutes the connection for that long after sending the response. Nothing is dropped.

Limits come from two places: the broker config file (``[[quotas]]`` entries written by the
provisioning code from the plan; read-only on the wire) and AlterClientQuotas (persisted
atomically in ``<data-dir>/quotas.json`` on a broker alone; in a cluster, in etcd, the same on
every broker: brokerd/coordination/metadata.py). A dynamic value overrides the static value of the
same entity and key; removing it restores the static one.

Connection limits: ``max.connections`` (per broker), ``max.connections.per.ip`` and
``kastle.max.connections.per.principal`` (checked once the principal is known, i.e. after SASL).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokerd.durable import atomic_write_json
from brokerd.kafka_configs import QUOTA_SETTINGS, BrokerConfigs
from brokerd.metrics import ANONYMOUS, BrokerMetrics
from brokerd.settings import Settings

log = logging.getLogger("brokerd.quotas")

USER = "user"
CLIENT_ID = "client-id"
IP = "ip"
DEFAULT_NAME = "<default>"

PRODUCE = "producer_byte_rate"
FETCH = "consumer_byte_rate"
REQUEST = "request_percentage"
QUOTA_KEYS = (PRODUCE, FETCH, REQUEST)
INTEGRAL_KEYS = frozenset({PRODUCE, FETCH})

MATCH_EXACT = 0
MATCH_DEFAULT = 1
MATCH_ANY = 2

#: An entity: sorted ((entity_type, name-or-None), ...).
Entity = tuple[tuple[str, str | None], ...]


NONE = 0
INVALID_REQUEST = 42  # Kafka error codes, as ints: this module does not import kio


class QuotaError(ValueError):
    error_code: int = INVALID_REQUEST

    def __init__(self, message: str, error_code: int = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


def make_entity(parts: Mapping[str, str | None] | Iterable[tuple[str, str | None]]) -> Entity:
    """Validate and normalise an entity. Raises QuotaError (INVALID_REQUEST)."""
    items = list(parts.items()) if isinstance(parts, Mapping) else list(parts)
    seen: dict[str, str | None] = {}
    for etype, name in items:
        if etype in seen:
            raise QuotaError(f"Duplicate entity type {etype} in quota entity")
        if etype == IP:
            raise QuotaError("ip quota entities are not supported by this broker")
        if etype not in (USER, CLIENT_ID):
            raise QuotaError(f"Unknown quota entity type {etype}; allowed: user, client-id")
        seen[etype] = name
    if not seen:
        raise QuotaError("A quota entity needs a user and/or a client-id")
    return tuple(sorted(seen.items()))


def entity_from_config(parts: Mapping[str, str]) -> Entity:
    return make_entity({k: (None if v == DEFAULT_NAME else v) for k, v in parts.items()})


def validate_quota_value(key: str, value: float) -> float:
    if key not in QUOTA_KEYS:
        raise QuotaError(f"Invalid quota configuration key {key}; allowed: {', '.join(QUOTA_KEYS)}")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise QuotaError(f"Quota {key} must be a number")
    if value <= 0:
        raise QuotaError(f"Quota {key} must be greater than 0, got {value}")
    if key in INTEGRAL_KEYS and float(value) != int(value):
        raise QuotaError(f"Quota {key} must be an integer, got {value}")
    return float(value)


# ----------------------------------------------------------------------------- sampled rate

class Rate:
    """Kafka's ``Rate`` over a ``SampledStat``: fixed windows, oldest expire after num*size."""

    __slots__ = ("current", "num", "starts", "values", "window_ms")

    def __init__(self, num: int, window_ms: int, now_ms: float) -> None:
        self.num = num
        self.window_ms = window_ms
        self.starts = [now_ms] + [-math.inf] * (num - 1)
        self.values = [0.0] * num
        self.current = 0

    def _purge(self, now_ms: float) -> None:
        expire = self.num * self.window_ms
        for i in range(self.num):
            if now_ms - self.starts[i] >= expire:
                self.starts[i] = -math.inf
                self.values[i] = 0.0

    def record(self, value: float, now_ms: float) -> None:
        if now_ms - self.starts[self.current] >= self.window_ms:
            self.current = (self.current + 1) % self.num
            self.starts[self.current] = now_ms
            self.values[self.current] = 0.0
        self.values[self.current] += value

    def window_size_ms(self, now_ms: float) -> float:
        self._purge(now_ms)
        live = [s for s in self.starts if s != -math.inf]
        oldest = min(live) if live else now_ms
        elapsed = now_ms - oldest
        full = int(elapsed // self.window_ms)
        if full < self.num - 1:
            elapsed += (self.num - 1 - full) * self.window_ms
        return elapsed

    def measure(self, now_ms: float) -> float:
        """Rate per second."""
        window = self.window_size_ms(now_ms)
        return sum(self.values) / (window / 1000.0)


# ----------------------------------------------------------------------------- the store

def _encode_entity(entity: Entity) -> dict[str, str | None]:
    return dict(entity)


@dataclass(frozen=True, slots=True)
class AlterResult:
    entity: Entity
    error_code: int = NONE
    error_message: str | None = None


class QuotaStore:
    """Quota limits: static (config file) and dynamic (AlterClientQuotas, persisted)."""

    def __init__(self, static: Iterable[Mapping[str, Any]] = (), *, path: Path | str | None = None) -> None:
        self.static: dict[Entity, dict[str, float]] = {}
        for entry in static:
            entry = dict(entry)
            parts = entry.pop("entity", None)
            if not isinstance(parts, Mapping):
                raise QuotaError("a [[quotas]] entry needs an entity table, e.g. {user = \"<default>\"}")
            entity = entity_from_config(parts)
            values = self.static.setdefault(entity, {})
            for key, value in entry.items():
                values[key] = validate_quota_value(key, value)
        self.path = Path(path) if path else None
        self.dynamic: dict[Entity, dict[str, float]] = {}
        if self.path and self.path.exists():
            for row in json.loads(self.path.read_text()).get("entries", []):
                entity = make_entity(row["entity"].items())
                self.dynamic[entity] = {k: float(v) for k, v in row["values"].items()}
        self.generation = 0
        self._merged: dict[Entity, dict[str, float]] = {}
        self._remerge()

    def _remerge(self) -> None:
        merged: dict[Entity, dict[str, float]] = {}
        for source in (self.static, self.dynamic):
            for entity, values in source.items():
                merged.setdefault(entity, {}).update(values)
        self._merged = {e: v for e, v in merged.items() if v}
        self.generation += 1

    def entries(self) -> dict[Entity, dict[str, float]]:
        return self._merged

    def get(self, entity: Entity, key: str) -> float | None:
        values = self._merged.get(entity)
        return None if values is None else values.get(key)

    # -- DescribeClientQuotas
    def describe(self, components: Iterable[tuple[str, int, str | None]], strict: bool
                 ) -> list[tuple[Entity, dict[str, float]]]:
        """Kafka's filter semantics. Raises QuotaError (INVALID_REQUEST) for a bad filter."""
        exact: dict[str, str | None] = {}
        typed: set[str] = set()
        seen: set[str] = set()
        for etype, match_type, match in components:
            if etype in seen:
                raise QuotaError(f"Entity type {etype} cannot appear more than once in the filter.")
            seen.add(etype)
            if etype not in (USER, CLIENT_ID, IP):
                raise QuotaError(f"Unknown quota entity type {etype}")
            if match_type == MATCH_EXACT:
                if match is None:
                    raise QuotaError(f"Request specified MATCH_TYPE_EXACT, but set match string to null "
                                     f"for entity type {etype}")
                exact[etype] = match
            elif match_type == MATCH_DEFAULT:
                if match is not None:
                    raise QuotaError(f"Request specified MATCH_TYPE_DEFAULT, but also specified a "
                                     f"match string for entity type {etype}")
                exact[etype] = None
            elif match_type == MATCH_ANY:
                if match is not None:
                    raise QuotaError(f"Request specified MATCH_TYPE_SPECIFIED, but also specified a "
                                     f"match string for entity type {etype}")
                typed.add(etype)
            else:
                raise QuotaError(f"Unknown match type {match_type}")
        if IP in seen and len(seen) > 1:
            raise QuotaError("Invalid entity filter component combination, IP filter component should "
                             "not be used with user or clientId filter component.")
        out = []
        for entity, values in sorted(self._merged.items(), key=lambda kv: str(kv[0])):
            parts = dict(entity)
            if strict and len(parts) != len(exact) + len(typed):
                continue
            if any(t not in parts or parts[t] != n for t, n in exact.items()):
                continue
            if any(t not in parts for t in typed):
                continue
            out.append((entity, dict(values)))
        return out

    # -- AlterClientQuotas
    def alter(self, entries: Iterable[tuple[Iterable[tuple[str, str | None]],
                                            Iterable[tuple[str, float, bool]]]],
              validate_only: bool = False) -> list[AlterResult]:
        """Each entry: (entity parts, [(key, value, remove)]). Per-entry results, as Kafka."""
        results, changes = plan_alter(self.dynamic, entries)
        if changes and not validate_only:
            new_dynamic = {e: dict(v) for e, v in self.dynamic.items()}
            for entity, values in changes.items():
                if values:
                    new_dynamic[entity] = values
                else:
                    new_dynamic.pop(entity, None)
            self.dynamic = new_dynamic
            self._remerge()
            if self.path:
                atomic_write_json(self.path, {"entries": [
                    {"entity": _encode_entity(e), "values": v} for e, v in sorted(
                        self.dynamic.items(), key=lambda kv: str(kv[0]))]}, sort_keys=True, indent=1)
        return results

    def replace_dynamic(self, dynamic: Mapping[Entity, Mapping[str, float]]) -> None:
        """Hold exactly these dynamic quotas (a cluster's, as etcd has them now)."""
        new = {entity: dict(values) for entity, values in dynamic.items() if values}
        if new != self.dynamic:
            self.dynamic = new
            self._remerge()


def plan_alter(dynamic: Mapping[Entity, Mapping[str, float]],
               entries: Iterable[tuple[Iterable[tuple[str, str | None]], Iterable[tuple[str, float, bool]]]],
               ) -> tuple[list[AlterResult], dict[Entity, dict[str, float]]]:
    """AlterClientQuotas against the ``dynamic`` quotas: per-entry results, as Kafka, and the new
    values of each entity changed (empty: its dynamic quotas are all removed)."""
    results: list[AlterResult] = []
    changes: dict[Entity, dict[str, float]] = {}
    for parts, ops in entries:
        parts = list(parts)
        try:
            entity = make_entity(parts)
            staged = dict(changes.get(entity, dynamic.get(entity, {})))
            keys: set[str] = set()
            for key, value, remove in ops:
                if key in keys:
                    raise QuotaError(f"Duplicate quota key {key} for entity {_describe(entity)}")
                keys.add(key)
                if remove:
                    if key not in QUOTA_KEYS:
                        raise QuotaError(f"Invalid quota configuration key {key}")
                    staged.pop(key, None)
                else:
                    staged[key] = validate_quota_value(key, value)
        except QuotaError as exc:
            results.append(AlterResult(_safe_entity(parts), exc.error_code, exc.message))
            continue
        results.append(AlterResult(entity))
        changes[entity] = staged
    return results, changes


def _safe_entity(parts: list[tuple[str, str | None]]) -> Entity:
    return tuple(parts)


def _describe(entity: Entity) -> str:
    return ",".join(f"{t}={DEFAULT_NAME if n is None else n}" for t, n in entity)


# ----------------------------------------------------------------------------- enforcement

@dataclass(frozen=True, slots=True)
class Resolved:
    """The quota that applies to a client for one key, and the meter it shares."""

    bound: float
    meter: tuple[str, str, str]  # (key, user tag, client-id tag), Kafka's metric tags


def _resolve(store: QuotaStore, key: str, user: str, client_id: str) -> Resolved | None:
    order: list[tuple[Entity, str, str]] = [
        (((CLIENT_ID, client_id), (USER, user)), user, client_id),
        (((CLIENT_ID, None), (USER, user)), user, client_id),
        (((USER, user),), user, ""),
        (((CLIENT_ID, client_id), (USER, None)), user, client_id),
        (((CLIENT_ID, None), (USER, None)), user, client_id),
        (((USER, None),), user, ""),
        (((CLIENT_ID, client_id),), "", client_id),
        (((CLIENT_ID, None),), "", client_id),
    ]
    for entity, user_tag, client_tag in order:
        bound = store.get(entity, key)
        if bound is not None:
            return Resolved(bound, (key, user_tag, client_tag))
    return None


class QuotaManager:
    """Records usage against quotas and returns Kafka throttle times (ms)."""

    def __init__(self, store: QuotaStore, *, window_num: int = 11, window_size_seconds: int = 1,
                 clock: Any = None) -> None:
        self.store = store
        self.window_num = window_num
        self.window_ms = window_size_seconds * 1000
        self.max_throttle_ms = window_num * self.window_ms
        self._clock = clock or (lambda: time.monotonic() * 1000.0)
        self._meters: dict[tuple[str, str, str], Rate] = {}
        self._resolved: dict[tuple[str, str, str], Resolved | None] = {}
        self._generation = -1

    def resolve(self, key: str, user: str, client_id: str) -> Resolved | None:
        if self._generation != self.store.generation:
            self._resolved.clear()
            self._generation = self.store.generation
        cache_key = (key, user, client_id)
        try:
            return self._resolved[cache_key]
        except KeyError:
            pass
        if len(self._resolved) > 100_000:
            self._resolved.clear()
        resolved = self._resolved[cache_key] = _resolve(self.store, key, user, client_id)
        return resolved

    def quota(self, key: str, user: str, client_id: str) -> float | None:
        resolved = self.resolve(key, user, client_id)
        return None if resolved is None else resolved.bound

    def record(self, key: str, user: str, client_id: str, value: float, now_ms: float | None = None) -> int:
        """Record ``value`` (bytes, or percent-seconds for requests); return throttle ms (0 if within)."""
        resolved = self.resolve(key, user, client_id)
        if resolved is None:
            return 0
        now = self._clock() if now_ms is None else now_ms
        meter = self._meters.get(resolved.meter)
        if meter is None:
            if len(self._meters) > 100_000:
                self._meters.clear()
            meter = self._meters[resolved.meter] = Rate(self.window_num, self.window_ms, now)
        meter.record(value, now)
        rate = meter.measure(now)
        if rate <= resolved.bound:
            return 0
        throttle = (rate - resolved.bound) / resolved.bound * meter.window_size_ms(now)
        return int(min(round(throttle), self.max_throttle_ms))

    def unrecord(self, key: str, user: str, client_id: str, value: float,
                 now_ms: float | None = None) -> None:
        """Take back a recorded value (Kafka un-records a fetch it answers empty)."""
        resolved = self.resolve(key, user, client_id)
        meter = None if resolved is None else self._meters.get(resolved.meter)
        if meter is not None:
            meter.record(-value, self._clock() if now_ms is None else now_ms)

    def record_produce(self, user: str, client_id: str, nbytes: int, now_ms: float | None = None) -> int:
        return self.record(PRODUCE, user, client_id, nbytes, now_ms)

    def record_fetch(self, user: str, client_id: str, nbytes: int, now_ms: float | None = None) -> int:
        return self.record(FETCH, user, client_id, nbytes, now_ms)

    def record_request_time(self, user: str, client_id: str, seconds: float,
                            now_ms: float | None = None) -> int:
        """Handler time in seconds; the quota is a percentage of one thread (Kafka's unit)."""
        return self.record(REQUEST, user, client_id, seconds * 100.0, now_ms)


class ConnectionLimitExceeded(Exception):
    pass


class ConnectionLimiter:
    """Connection counts per broker, per IP and per principal."""

    def __init__(self, *, max_connections: int = 2**31 - 1, max_per_ip: int = 2**31 - 1,
                 max_per_principal: int = 2**31 - 1) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.max_per_principal = max_per_principal
        self.total = 0
        self.per_ip: dict[str, int] = {}
        self.per_principal: dict[str, int] = {}

    def open(self, ip: str) -> None:
        """A socket was accepted. Raises ConnectionLimitExceeded (close it) when over a limit."""
        if self.total >= self.max_connections:
            raise ConnectionLimitExceeded(f"broker connection limit {self.max_connections} reached")
        if self.per_ip.get(ip, 0) >= self.max_per_ip:
            raise ConnectionLimitExceeded(f"connection limit {self.max_per_ip} per ip reached for {ip}")
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def close(self, ip: str, principal: str | None = None) -> None:
        self.total = max(0, self.total - 1)
        n = self.per_ip.get(ip, 0) - 1
        if n > 0:
            self.per_ip[ip] = n
        else:
            self.per_ip.pop(ip, None)
        if principal is not None:
            self.release_principal(principal)

    def authenticate(self, principal: str) -> None:
        """The connection authenticated as ``principal``. Raises when over the per-principal limit."""
        if self.per_principal.get(principal, 0) >= self.max_per_principal:
            raise ConnectionLimitExceeded(
                f"connection limit {self.max_per_principal} per principal reached for {principal}")
        self.per_principal[principal] = self.per_principal.get(principal, 0) + 1

    def release_principal(self, principal: str) -> None:
        n = self.per_principal.get(principal, 0) - 1
        if n > 0:
            self.per_principal[principal] = n
        else:
            self.per_principal.pop(principal, None)


class Quotas:
    """The broker's quota subsystem: client quotas (KIP-13, KIP-124, KIP-219) and connection limits.

    Throttle times come from :class:`QuotaManager`; every throttle is also counted in the
    broker's metrics. Connections are counted per IP and, once SASL succeeds, per principal.
    """

    def __init__(
        self, configs: BrokerConfigs, metrics: BrokerMetrics, *, settings: Settings, data_dir: Path | None
    ) -> None:
        static = []  # the plan's per-user default quotas, as provisioning writes them in the settings
        for key, quota_key in QUOTA_SETTINGS.items():
            value = settings.get(key)
            if value:
                static.append({"entity": {"user": "<default>"}, quota_key: value})
        # data_dir None: a cluster's dynamic quotas are in etcd (``QuotaStore.replace_dynamic``)
        self.store = QuotaStore(static, path=None if data_dir is None else data_dir / "quotas.json")
        self.manager = QuotaManager(self.store, window_num=configs.get("quota.window.num"),
                                    window_size_seconds=configs.get("quota.window.size.seconds"))
        self.limiter = ConnectionLimiter(
            max_connections=configs.get("max.connections"),
            max_per_ip=configs.get("max.connections.per.ip"),
            max_per_principal=configs.get("kastle.max.connections.per.principal"))
        self.metrics = metrics

    # --- byte rates and request time ------------------------------------------------------
    def throttle(self, principal: str | None, client_id: str | None, quota: str, value: float) -> int:
        """Record ``value`` against ``quota``; the throttle time (ms) it earns, 0 if within it."""
        user = principal or ANONYMOUS
        ms = self.manager.record(quota, user, client_id or "", value)
        if ms:
            self.metrics.observe_throttle(user, quota, ms)
        return ms

    def throttle_fetch(self, principal: str | None, client_id: str | None, nbytes: int) -> int:
        """Kafka's fetch quota: if over, un-record (the response goes out empty) and throttle."""
        user, client = principal or ANONYMOUS, client_id or ""
        ms = self.manager.record(FETCH, user, client, nbytes)
        if ms:
            self.manager.unrecord(FETCH, user, client, nbytes)
            self.metrics.observe_throttle(user, FETCH, ms)
        return ms

    def fetch_window_bytes(self, principal: str | None, client_id: str | None) -> int | None:
        """Kafka's cap on one fetch under a consumer_byte_rate quota: quota x (samples - 1) x size."""
        bound = self.manager.quota(FETCH, principal or ANONYMOUS, client_id or "")
        if bound is None:
            return None
        return max(1, int(bound * (self.manager.window_num - 1) * self.manager.window_ms / 1000))

    # --- connections ----------------------------------------------------------------------
    def connection_opened(self, ip: str, listener: str) -> bool:
        """A socket was accepted; False means refuse it (a connection limit)."""
        try:
            self.limiter.open(ip)
        except ConnectionLimitExceeded as exc:
            self.metrics.connections_rejected.labels("limit").inc()
            log.warning("refusing connection from %s: %s", ip, exc)
            return False
        self.metrics.connections.labels(listener).inc()
        self.metrics.connections_opened.labels(listener).inc()
        return True

    def connection_closed(self, ip: str, listener: str, principal: str | None) -> None:
        self.limiter.close(ip, principal)
        if principal is not None:
            self.metrics.principal_connections.labels(principal).dec()
        self.metrics.connections.labels(listener).dec()

    def authenticated(self, principal: str) -> str | None:
        """SASL succeeded. An error (close the connection) if over the per-principal limit."""
        try:
            self.limiter.authenticate(principal)
        except ConnectionLimitExceeded as exc:
            self.metrics.connections_rejected.labels("principal").inc()
            return str(exc)
        self.metrics.principal_connections.labels(principal).inc()
        return None
