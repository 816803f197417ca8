"""ApiVersions 0-4, answered from the broker's table of APIs (brokerd/handlers/__init__.py)."""

from __future__ import annotations

import datetime
from functools import cache, lru_cache

from kio.schema.errors import ErrorCode

from brokerd.protocol import kio_adapter

API_KEY = 18
_ZERO = datetime.timedelta(0)


@cache
def _body(version: int, table: tuple[tuple[int, int, int], ...]) -> bytes:
    mod = kio_adapter.response_module(API_KEY, version)
    keys = tuple(mod.ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, lo, hi in table)
    resp = kio_adapter.build(
        kio_adapter.response_class(API_KEY, version),
        error_code=ErrorCode.none,
        api_keys=keys,
        throttle_time=_ZERO,
    )
    return kio_adapter.encode(resp)


@lru_cache(maxsize=1)
def unsupported_body(table: tuple[tuple[int, int, int], ...]) -> bytes:
    """KIP-511: an unsupported version gets a v0 response with UNSUPPORTED_VERSION and our range."""
    mod = kio_adapter.response_module(API_KEY, 0)
    spec = next(t for t in table if t[0] == API_KEY)
    resp = mod.ApiVersionsResponse(
        error_code=ErrorCode.unsupported_version,
        api_keys=(mod.ApiVersion(api_key=API_KEY, min_version=spec[1], max_version=spec[2]),),
    )
    return kio_adapter.encode(resp)


def handle(request, ctx) -> bytes:
    return _body(ctx.api_version, ctx.broker.api_table)
