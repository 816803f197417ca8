"""ApiVersions 0-4, answered from the broker's table of APIs (brokerd/handlers/__init__.py)."""

from __future__ import annotations

import datetime
from functools import cache, lru_cache

from kio.schema.errors import ErrorCode

from brokerd.protocol import kio_adapter

API_KEY = 18
_ZERO = datetime.timedelta(0)
#: Kafka feature flags brokerd serves: (name, lowest, highest supported level, finalized level).
#: group.version 1 is the consumer group protocol (ConsumerGroupHeartbeat); a cluster of brokerd
#: brokers always runs it.
FEATURES = (("group.version", 0, 1, 1),)
#: The finalized features never change, so their epoch is the first one.
FINALIZED_EPOCH = 0


@cache
def _body(version: int, table: tuple[tuple[int, int, int], ...]) -> bytes:
    mod = kio_adapter.response_module(API_KEY, version)
    keys = tuple(mod.ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, lo, hi in table)
    features = {}
    if version >= 3:
        features = {
            # before v4, features whose lowest level is 0 are left out (old clients reject 0)
            "supported_features": tuple(
                mod.SupportedFeatureKey(name=name, min_version=lo, max_version=hi)
                for name, lo, hi, _ in FEATURES
                if version >= 4 or lo > 0
            ),
            "finalized_features_epoch": FINALIZED_EPOCH,
            "finalized_features": tuple(
                mod.FinalizedFeatureKey(name=name, max_version_level=level, min_version_level=level)
                for name, _, _, level in FEATURES
            ),
        }
    resp = kio_adapter.build(
        kio_adapter.response_class(API_KEY, version),
        error_code=ErrorCode.none,
        api_keys=keys,
        throttle_time=_ZERO,
        **features,
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
    if ctx.api_version >= 3:
        ctx.conn.client_software_name = request.client_software_name or ""
        ctx.conn.client_software_version = request.client_software_version or ""
    return _body(ctx.api_version, ctx.broker.api_table)
