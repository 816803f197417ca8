"""What a handler sees: the broker, the connection and the request's version."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from brokerd.protocol import kio_adapter

if TYPE_CHECKING:
    from brokerd.broker import Broker
    from brokerd.server import Connection


REQUEST_QUOTA = "request_percentage"


class RequestContext:
    __slots__ = (
        "api_key", "api_version", "broker", "client_id", "close_after", "conn", "correlation_id", "errors",
        "request_throttle_ms", "started",
    )

    def __init__(
        self,
        broker: Broker,
        conn: Connection,
        api_key: int,
        api_version: int,
        correlation_id: int,
        client_id: str | None,
    ) -> None:
        self.broker = broker
        self.conn = conn
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id
        # set by a handler to close the connection once its response is written
        self.close_after = False
        # set by fast-path handlers (Produce, Fetch) whose responses are pre-encoded bytes: the
        # kastle_requests_total labels, one per error-code field ({"NONE": 1} when left None)
        self.errors: dict[str, int] | None = None
        # perf_counter() when the frame was taken off the buffer (request latency, request quota)
        self.started = 0.0
        # the request-time quota's throttle (ms) once recorded for this request; -1 before
        # (request_throttle records each request once)
        self.request_throttle_ms = -1

    @property
    def principal(self) -> str | None:
        return self.conn.principal

    def request_throttle(self) -> int:
        """KIP-219 request-time quota: record this request's handler time so far (once); the throttle ms.

        Fast-path handlers (Produce, Fetch) call it before encoding, so the throttle goes into
        their ``throttle_time_ms``; the connection loop calls it for every other request before
        encoding the response. A throttle mutes the connection that long.
        """
        ms = self.request_throttle_ms
        if ms >= 0:
            return ms
        seconds = time.perf_counter() - self.started
        ms = self.request_throttle_ms = self.broker.quotas.throttle(
            self.principal, self.client_id, REQUEST_QUOTA, seconds * 100.0
        )
        if ms:
            self.conn.mute(ms)
        return ms

    @property
    def mod(self) -> Any:
        """The kio response module of this request's version (for nested classes)."""
        return kio_adapter.response_module(self.api_key, self.api_version)

    def build(self, class_name: str, /, **kwargs: Any) -> Any:
        """Build a nested response entity by class name, dropping fields this version lacks."""
        return kio_adapter.build(getattr(self.mod, class_name), **kwargs)

    def response(self, **kwargs: Any) -> Any:
        return kio_adapter.build(kio_adapter.response_class(self.api_key, self.api_version), **kwargs)
