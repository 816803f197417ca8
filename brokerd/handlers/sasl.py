"""SaslHandshake 0-1 and SaslAuthenticate 0-2 (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).

After SaslHandshake v0 the client sends raw SASL tokens without Kafka framing (legacy); the
server loop hands those to :func:`legacy_step`.
"""

from __future__ import annotations

import datetime
import logging

from kio.schema.errors import ErrorCode

from brokerd.auth import AuthenticationFailed, SaslSession

log = logging.getLogger("brokerd.auth")


def handshake(request, ctx):
    conn = ctx.conn
    enabled = list(ctx.broker.config["sasl.enabled.mechanisms"])
    if not conn.listener.sasl:
        return ctx.response(error_code=ErrorCode.illegal_sasl_state, mechanisms=tuple(enabled))
    if conn.authenticated or conn.sasl_mechanism is not None:
        ctx.close_after = True
        return ctx.response(error_code=ErrorCode.illegal_sasl_state, mechanisms=tuple(enabled))
    if request.mechanism not in enabled:
        ctx.close_after = True
        return ctx.response(error_code=ErrorCode.unsupported_sasl_mechanism, mechanisms=tuple(enabled))
    conn.sasl_mechanism = request.mechanism
    conn.sasl_session = SaslSession(request.mechanism, ctx.broker.credentials)
    if ctx.api_version == 0:
        conn.legacy_sasl = True
    return ctx.response(error_code=ErrorCode.none, mechanisms=tuple(enabled))


async def authenticate(request, ctx):
    conn = ctx.conn
    session = conn.sasl_session
    if session is None or conn.authenticated:
        ctx.close_after = True
        return ctx.response(
            error_code=ErrorCode.illegal_sasl_state,
            error_message="SaslAuthenticate without a SaslHandshake",
            auth_bytes=b"",
            session_lifetime=datetime.timedelta(0),
        )
    try:
        reply, done = await session.step(bytes(request.auth_bytes))
    except AuthenticationFailed as exc:
        log.info("SASL %s authentication failed from %s: %s", session.mechanism, conn.peer, exc)
        ctx.close_after = True
        return ctx.response(
            error_code=ErrorCode.sasl_authentication_failed,
            error_message=str(exc),
            auth_bytes=b"",
            session_lifetime=datetime.timedelta(0),
        )
    if done:
        conn.authenticated_as(session.principal)
    return ctx.response(
        error_code=ErrorCode.none,
        error_message=None,
        auth_bytes=reply,
        session_lifetime=datetime.timedelta(0),
    )
