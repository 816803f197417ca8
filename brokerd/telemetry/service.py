"""GetTelemetrySubscriptions and PushTelemetry, and the recent series clients pushed.

Storage is bounded: at most ``max_clients`` client instances (the longest silent is dropped
first), ``max_series`` series per client and ``points`` points per series.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from brokerd.telemetry.otlp import BadMetrics, decode
from brokerd.telemetry.subscriptions import DEFAULT_INTERVAL_MS, SubscriptionStore, subscription_id

E = ErrorCode
#: zstd, lz4, gzip, snappy (Kafka's order of preference); none is always accepted
ACCEPTED_COMPRESSION = (4, 3, 1, 2)
ALL_METRICS = "*"


@dataclass(slots=True)
class SubscriptionAnswer:
    error: ErrorCode
    client_instance_id: uuid.UUID
    subscription_id: int = 0
    push_interval_ms: int = DEFAULT_INTERVAL_MS
    requested_metrics: list[str] = field(default_factory=list)
    telemetry_max_bytes: int = 0


@dataclass(slots=True)
class PushOutcome:
    error: ErrorCode
    message: str | None = None
    points: int = 0


@dataclass(slots=True)
class ClientInfo:
    instance_id: str
    client_id: str
    software_name: str
    software_version: str
    source_address: str
    principal: str
    subscription_id: int = 0
    push_interval_ms: int = DEFAULT_INTERVAL_MS
    requested: list[str] = field(default_factory=list)
    first_seen_ms: int = 0
    last_push_ms: int = 0
    pushes: int = 0
    terminated: bool = False
    resource: dict[str, str] = field(default_factory=dict)
    #: (metric name, attributes) -> recent (time ms, value)
    series: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], deque[tuple[int, float]]] = field(
        default_factory=OrderedDict
    )


def _wall_ms() -> int:
    return int(time.time() * 1000)


class ClientTelemetry:
    def __init__(
        self,
        subscriptions: SubscriptionStore,
        *,
        max_bytes: int = 1024 * 1024,
        max_clients: int = 1000,
        max_series: int = 500,
        points: int = 120,
        clock: Callable[[], int] = _wall_ms,
        decompress: Callable[[int, bytes], bytes] | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.max_bytes = max_bytes
        self.max_clients = max_clients
        self.max_series = max_series
        self.points = points
        self._clock = clock
        self._decompress = decompress
        self.clients: OrderedDict[str, ClientInfo] = OrderedDict()

    # -- GetTelemetrySubscriptions ---------------------------------------------------------------

    def get_subscriptions(
        self,
        instance_id: uuid.UUID | None,
        *,
        client_id: str,
        software_name: str,
        software_version: str,
        source_address: str,
        source_port: str = "",
        principal: str = "",
    ) -> SubscriptionAnswer:
        if instance_id is None or instance_id.int == 0:
            instance_id = uuid.uuid4()  # a new client: the broker names its instance
        key = str(instance_id)
        selectors = {
            "client_instance_id": key,
            "client_id": client_id,
            "client_software_name": software_name,
            "client_software_version": software_version,
            "client_source_address": source_address,
            "client_source_port": source_port,
        }
        subs = self.subscriptions.matching(selectors)
        metrics: list[str] = []
        for s in subs:
            for m in s.metrics:
                if m not in metrics:
                    metrics.append(m)
        if ALL_METRICS in metrics:
            metrics = [""]  # an empty prefix: every metric
        interval = min((s.interval_ms for s in subs), default=DEFAULT_INTERVAL_MS)
        sub_id = subscription_id(subs, key)
        now = self._clock()
        info = self.clients.get(key)
        if info is None:
            info = ClientInfo(key, client_id, software_name, software_version, source_address, principal)
            info.first_seen_ms = now
            self._remember(key, info)
        info.client_id, info.software_name, info.software_version = client_id, software_name, software_version
        info.source_address, info.principal = source_address, principal
        info.subscription_id, info.push_interval_ms, info.requested = sub_id, interval, metrics
        return SubscriptionAnswer(E.none, instance_id, sub_id, interval, metrics, self.max_bytes)

    def _remember(self, key: str, info: ClientInfo) -> None:
        self.clients[key] = info
        self.clients.move_to_end(key)
        while len(self.clients) > self.max_clients:
            self.clients.popitem(last=False)

    # -- PushTelemetry ---------------------------------------------------------------------------

    def push(
        self,
        instance_id: uuid.UUID | None,
        sub_id: int,
        *,
        terminating: bool,
        compression: int,
        payload: bytes,
    ) -> PushOutcome:
        key = str(instance_id) if instance_id is not None else ""
        info = self.clients.get(key)
        if instance_id is None or instance_id.int == 0 or info is None:
            return PushOutcome(
                E.unknown_subscription_id, "Unknown client instance id; get the subscriptions again."
            )
        if sub_id != info.subscription_id or sub_id != self._current_id(info):
            return PushOutcome(E.unknown_subscription_id, "The client's subscription changed; get it again.")
        if compression not in (0, *ACCEPTED_COMPRESSION):
            return PushOutcome(
                E.unsupported_compression_type, f"Compression type {compression} is not accepted."
            )
        if len(payload) > self.max_bytes:
            return PushOutcome(
                E.telemetry_too_large, f"Telemetry of {len(payload)} bytes exceeds {self.max_bytes}."
            )
        now = self._clock()
        # Pushes come once per interval; half an interval of early arrival is the client's jitter.
        if not terminating and info.last_push_ms and now - info.last_push_ms < info.push_interval_ms // 2:
            return PushOutcome(E.throttling_quota_exceeded, "Telemetry pushed more often than its interval.")
        try:
            raw = (
                payload
                if compression == 0 or self._decompress is None
                else self._decompress(compression, payload)
            )
            resource, points = decode(raw)
        except (BadMetrics, OSError, ValueError, RuntimeError) as exc:
            return PushOutcome(E.invalid_record, f"Metrics could not be decoded: {exc}")
        info.last_push_ms = now
        info.pushes += 1
        info.terminated = terminating
        info.resource = resource
        kept = 0
        for p in points:
            if info.requested and info.requested != [""] and not p.name.startswith(tuple(info.requested)):
                continue
            series_key = (p.name, p.attributes)
            series = info.series.get(series_key)
            if series is None:
                if len(info.series) >= self.max_series:
                    continue
                series = info.series[series_key] = deque(maxlen=self.points)
            series.append((p.time_ms or now, p.value))
            kept += 1
        self.clients.move_to_end(key)
        return PushOutcome(E.none, None, kept)

    def _current_id(self, info: ClientInfo) -> int:
        selectors = {
            "client_instance_id": info.instance_id,
            "client_id": info.client_id,
            "client_software_name": info.software_name,
            "client_software_version": info.software_version,
            "client_source_address": info.source_address,
        }
        return subscription_id(self.subscriptions.matching(selectors), info.instance_id)

    # -- what the control plane reads ------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for info in reversed(self.clients.values()):
            if not info.pushes and not info.requested:
                continue  # never asked for metrics: nothing to show
            metrics = []
            for (name, attrs), points in info.series.items():
                if points:
                    metrics.append(
                        {
                            "name": name,
                            "attributes": dict(attrs),
                            "latest": points[-1][1],
                            "points": list(points),
                        }
                    )
            out.append(
                {
                    "client_instance_id": info.instance_id,
                    "client_id": info.client_id,
                    "software_name": info.software_name,
                    "software_version": info.software_version,
                    "source_address": info.source_address,
                    "principal": info.principal,
                    "push_interval_ms": info.push_interval_ms,
                    "first_seen_ms": info.first_seen_ms,
                    "last_push_ms": info.last_push_ms,
                    "pushes": info.pushes,
                    # connected: pushing, and not past three intervals of silence (Kafka's expiry)
                    "active": not info.terminated
                    and now - max(info.last_push_ms, info.first_seen_ms) < 3 * info.push_interval_ms,
                    "resource": info.resource,
                    "metrics": metrics,
                }
            )
        return out
