"""Client telemetry: GetTelemetrySubscriptions 0 and PushTelemetry 0, on ``broker.telemetry``."""

from __future__ import annotations

import datetime

from brokerd.telemetry.service import ACCEPTED_COMPRESSION

ZERO = datetime.timedelta(0)


def _source(ctx) -> tuple[str, str]:
    peer = getattr(ctx.conn, "peer", "") or ""
    host, _, port = peer.rpartition(":")
    return (host, port) if host else (peer, "")


def get_telemetry_subscriptions(request, ctx):
    address, port = _source(ctx)
    answer = ctx.broker.telemetry.get_subscriptions(
        request.client_instance_id,
        client_id=ctx.client_id or "",
        software_name=ctx.conn.client_software_name,
        software_version=ctx.conn.client_software_version,
        source_address=address,
        source_port=port,
        principal=ctx.principal or "",
    )
    return ctx.response(
        throttle_time=ZERO,
        error_code=answer.error,
        client_instance_id=answer.client_instance_id,
        subscription_id=answer.subscription_id,
        accepted_compression_types=ACCEPTED_COMPRESSION,
        push_interval=datetime.timedelta(milliseconds=answer.push_interval_ms),
        telemetry_max_bytes=answer.telemetry_max_bytes,
        delta_temporality=True,
        requested_metrics=tuple(answer.requested_metrics),
    )


def push_telemetry(request, ctx):
    outcome = ctx.broker.telemetry.push(
        request.client_instance_id,
        request.subscription_id,
        terminating=request.terminating,
        compression=int(request.compression_type),
        payload=bytes(request.metrics),
    )
    return ctx.response(throttle_time=ZERO, error_code=outcome.error)
