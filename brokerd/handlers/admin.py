"""Admin APIs, topic configs, retention, quotas and metrics: the broker-side state and hooks.

This module owns :class:`AdminState`, which the broker creates at start-up
(``broker.admin_state = AdminState(broker)``), plus the hooks the core paths call:

- ``before_append`` / ``append_failed`` from Produce: the usage journal entry is written
  *before* the batch is appended (see brokerd/metrics.py for why);
- ``after_fetch`` from Fetch: bytes out;
- ``throttle`` / ``throttle_fetch`` / ``request_throttle``: KIP-219 throttle times from
  brokerd/quotas.py (byte rates, and the request-time quota recorded once per request before its
  response is encoded, so that every response carries the larger throttle);
- ``fetch_quota_window_bytes``: Kafka's cap on one fetch under a consumer_byte_rate quota;
- ``sync_usage`` in the group fsync, before the logs are fsynced;
- ``retention_loop``: runs storage's size/time retention periodically.

Importing it registers the admin request types (one module per family).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from pathlib import Path
from typing import Any

from brokerd.kafka_configs import (
    QUOTA_SETTINGS,
    TopicConfig,
)
from brokerd.metrics import ANONYMOUS, BrokerMetrics, UsageJournal, batch_stats, error_counts
from brokerd.quotas import ConnectionLimiter, ConnectionLimitExceeded, QuotaManager, QuotaStore

log = logging.getLogger("brokerd.admin")

def _super_users(value: str) -> frozenset[str]:
    out = set()
    for item in value.replace(",", ";").split(";"):
        item = item.strip()
        if item:
            out.add(item.removeprefix("User:"))
    return frozenset(out)


class AdminState:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        config = broker.config
        data_dir = Path(config["data.dir"])
        self.data_dir = data_dir
        self.configs = broker.configs
        static_quotas = []
        for key, quota_key in QUOTA_SETTINGS.items():
            value = config.get(key)
            if value:
                static_quotas.append({"entity": {"user": "<default>"}, quota_key: value})
        self.quota_store = QuotaStore(static_quotas, path=data_dir / "quotas.json")
        self.quotas = QuotaManager(self.quota_store, window_num=self.configs.get("quota.window.num"),
                                   window_size_seconds=self.configs.get("quota.window.size.seconds"))
        self.limiter = ConnectionLimiter(
            max_connections=self.configs.get("max.connections"),
            max_per_ip=self.configs.get("max.connections.per.ip"),
            max_per_principal=self.configs.get("kastle.max.connections.per.principal"))
        self.super_users = _super_users(self.configs.get("super.users"))
        self.usage = UsageJournal(data_dir / "usage")
        self.metrics = BrokerMetrics(self.usage, storage=self._storage_rows)

    # ------------------------------------------------------------------ start / stop
    def recover(self) -> None:
        """After storage recovery, before serving: topic settings, usage."""
        logs = self.broker.logs
        by_id = {t.id.bytes: t for t in logs.topics.values()}

        def end_offset(topic_id: bytes, partition: int) -> int | None:
            topic = by_id.get(topic_id)
            if topic is None or partition >= len(topic.partitions):
                return None
            return topic.partitions[partition].next_offset

        voided = self.usage.reconcile(end_offset)
        if voided:
            log.info("usage journal: voided %d produce entries the log does not hold", voided)

    def close(self) -> None:
        """Clean shutdown: fold the usage journal into a snapshot."""
        self.usage.close()

    def usage_fds(self) -> list[int]:
        """The usage journal's fd, for the group fsync (fsynced before the logs)."""
        fd = self.usage._fd
        return [] if fd is None else [fd]

    def metrics_route(self) -> tuple[int, str, bytes]:
        return 200, self.metrics.content_type, self.metrics.render()

    # ------------------------------------------------------------------ configs
    def topic_config(self, topic: Any) -> TopicConfig:
        return TopicConfig(self.configs, topic.configs)

    def refresh_all(self) -> None:
        for topic in self.broker.logs.topics.values():
            self.broker.logs.refresh_settings(topic)

    def save_topic_configs(self, topic: Any, configs: dict[str, str]) -> None:
        self.broker.logs.set_topic_configs(topic, configs)

    def is_super_user(self, principal: str | None) -> bool:
        """Only the principals listed in ``super.users`` may alter broker configs (including the
        plan's caps) and client quotas. An empty ``super.users`` makes nobody a super user: a
        tenant's API key must never lift its plan's quotas or caps. (On a PLAINTEXT development
        listener the principal is ANONYMOUS; list ``User:ANONYMOUS`` to allow it.)"""
        return (principal or ANONYMOUS) in self.super_users

    # ------------------------------------------------------------------ usage hooks
    def before_append(self, ctx: Any, topic: Any, partition: int, base: int, records: bytes,
                      count: int) -> None:
        principal = ctx.principal or ANONYMOUS
        self.usage.record_in(principal, [(topic.name, topic.id.bytes, partition, base, count, len(records))])

    def append_failed(self, ctx: Any, topic: Any, partition: int, base: int, records: bytes,
                      count: int) -> None:
        principal = ctx.principal or ANONYMOUS
        self.usage.void_in(principal, topic.name, topic.id.bytes, partition, base, count, len(records))

    def after_fetch(self, ctx: Any, topics: list) -> int:
        """Count bytes out of an encoded-to-be Fetch response; returns the total record bytes."""
        entries = []
        total = 0
        for name, _topic_id, parts in topics:
            records_n = 0
            nbytes = 0
            for part in parts:
                data = part[5]
                if data:
                    n, size = batch_stats(data)
                    records_n += n
                    nbytes += size
            if nbytes:
                entries.append((name, records_n, nbytes))
                total += nbytes
        if entries:
            self.usage.record_out(ctx.principal or ANONYMOUS, entries)
        return total

    def throttle(self, ctx: Any, quota: str, value: float) -> int:
        principal = ctx.principal or ANONYMOUS
        ms = self.quotas.record(quota, principal, ctx.client_id or "", value)
        if ms:
            self.metrics.observe_throttle(principal, quota, ms)
        return ms

    def throttle_fetch(self, ctx: Any, nbytes: int) -> int:
        """Kafka's fetch quota: if over, un-record (the response goes out empty) and throttle."""
        principal = ctx.principal or ANONYMOUS
        client_id = ctx.client_id or ""
        ms = self.quotas.record("consumer_byte_rate", principal, client_id, nbytes)
        if ms:
            self.quotas.unrecord("consumer_byte_rate", principal, client_id, nbytes)
            self.metrics.observe_throttle(principal, "consumer_byte_rate", ms)
        return ms

    def fetch_quota_window_bytes(self, ctx: Any) -> int | None:
        """Kafka's cap on one fetch under a consumer_byte_rate quota: quota x (samples - 1) x size."""
        bound = self.quotas.quota("consumer_byte_rate", ctx.principal or ANONYMOUS, ctx.client_id or "")
        if bound is None:
            return None
        return max(1, int(bound * (self.quotas.window_num - 1) * self.quotas.window_ms / 1000))

    def sync_usage(self) -> None:
        self.usage.sync()

    # ------------------------------------------------------------------ connections / requests
    def on_connect(self, conn: Any) -> bool:
        """A socket was accepted; False means refuse it (a connection limit)."""
        ip = conn.peer.rpartition(":")[0]
        try:
            self.limiter.open(ip)
        except ConnectionLimitExceeded as exc:
            self.metrics.connections_rejected.labels("limit").inc()
            log.warning("refusing connection from %s: %s", conn.peer, exc)
            return False
        conn._admin_ip = ip
        self.metrics.connections.labels(conn.listener.name).inc()
        self.metrics.connections_opened.labels(conn.listener.name).inc()
        return True

    def on_disconnect(self, conn: Any) -> None:
        ip = getattr(conn, "_admin_ip", None)
        if ip is None:
            return
        conn._admin_ip = None
        counted = getattr(conn, "_admin_principal", None)
        self.limiter.close(ip, counted)
        if counted is not None:
            self.metrics.principal_connections.labels(counted).dec()
        self.metrics.connections.labels(conn.listener.name).dec()

    def on_authenticated(self, conn: Any, principal: str) -> str | None:
        """SASL succeeded. Returns an error (close the connection) if over the per-principal limit."""
        try:
            self.limiter.authenticate(principal)
        except ConnectionLimitExceeded as exc:
            self.metrics.connections_rejected.labels("principal").inc()
            return str(exc)
        conn._admin_principal = principal
        self.metrics.principal_connections.labels(principal).inc()
        self.usage.touch(principal)
        return None

    def request_throttle(self, ctx: Any) -> int:
        """KIP-219 request-time quota: record ``ctx``'s handler time so far (once); return the throttle ms.

        Fast-path handlers (Produce, Fetch) call it before encoding, so the throttle goes into
        their ``throttle_time_ms``; the server calls it for every other request before encoding
        the response (:func:`with_throttle`). A throttle mutes the connection that long.
        """
        ms = ctx.request_throttle_ms
        if ms >= 0:
            return ms
        principal = ctx.principal or ANONYMOUS
        seconds = time.perf_counter() - ctx.started
        ms = ctx.request_throttle_ms = self.quotas.record(
            "request_percentage", principal, ctx.client_id or "", seconds * 100.0)
        if ms:
            self.metrics.observe_throttle(principal, "request_percentage", ms)
            ctx.conn.mute(ms)
        return ms

    @staticmethod
    def with_throttle(result: Any, throttle_ms: int) -> Any:
        return with_throttle(result, throttle_ms)

    def on_request(self, ctx: Any, started: float, result: Any) -> None:
        """A request was answered: metrics (latency, error codes) and last-seen."""
        errors = ctx.errors
        if errors is None and result is not None and hasattr(type(result), "__dataclass_fields__"):
            errors = error_counts(result)
        self.metrics.observe_request(_api_name(ctx.api_key), time.perf_counter() - started, errors)
        self.usage.touch(ctx.principal or ANONYMOUS)

    # ------------------------------------------------------------------ storage
    def _storage_rows(self) -> list[tuple[str, int, int]]:
        rows = []
        for topic in list(self.broker.logs.topics.values()):
            for plog in topic.partitions:
                rows.append((topic.name, plog.partition, plog.size_bytes()))
        return rows

    async def retention_loop(self) -> None:
        while True:
            interval = self.configs.get("log.retention.check.interval.ms") / 1000.0
            await asyncio.sleep(interval)
            try:
                self.broker.logs.apply_retention()
                self.usage.maybe_rotate()
            except Exception:
                log.exception("retention pass failed")


_API_NAMES: dict[int, str] = {}


def _api_name(api_key: int) -> str:
    name = _API_NAMES.get(api_key)
    if name is None:
        from kio.schema.index import api_key_map

        words = api_key_map.get(api_key, str(api_key)).split("_")
        name = _API_NAMES[api_key] = "".join(w.title() for w in words)
    return name


def with_throttle(result: Any, throttle_ms: int) -> Any:
    """A kio response with ``throttle_time`` raised to ``throttle_ms`` (if it has that field)."""
    if throttle_ms <= 0:
        return result
    fields = getattr(type(result), "__dataclass_fields__", None)
    if fields is None or "throttle_time" not in fields:
        return result
    throttle = datetime.timedelta(milliseconds=throttle_ms)
    current = result.throttle_time
    if current is not None and current >= throttle:
        return result
    return dataclasses.replace(result, throttle_time=throttle)


def state(ctx: Any) -> AdminState:
    return ctx.broker.admin_state


# Register the admin request types.
from brokerd.handlers import (  # noqa: E402
    admin_cluster,  # noqa: F401
    admin_configs,  # noqa: F401
    admin_partitions,  # noqa: F401
    admin_quotas,  # noqa: F401
)
