"""Request handlers, one module per API family, registered by api key.

A handler is ``handler(request, ctx) -> response``, where

- ``request`` is the decoded request (a kio entity, or whatever the API's fast-path ``decode``
  returns),
- ``ctx`` is a :class:`brokerd.context.RequestContext` (broker state, connection, version),
- the response is a kio response entity, a :class:`~brokerd.protocol.framing.RawBody`
  (pre-encoded body buffers), ``None`` (no response, e.g. Produce acks=0), or an awaitable
  of one of those.

Adding an API family is one line in :data:`MODULES` plus ``@register(...)`` in the module::

    @register(API_KEY, min_version, max_version)
    def handle(request, ctx): ...

The ApiVersions response is built from this registry, so it advertises exactly what is
registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Modules imported at start-up; each registers its APIs.
MODULES: tuple[str, ...] = (
    "brokerd.handlers.api_versions",
    "brokerd.handlers.metadata",
    "brokerd.handlers.produce",
    "brokerd.handlers.fetch",
    "brokerd.handlers.list_offsets",
    "brokerd.handlers.topics",
    "brokerd.handlers.sasl",
    "brokerd.handlers.admin",  # configs, partitions, records, cluster, log dirs, quotas
    "brokerd.handlers.groups",  # coordinator, offsets, InitProducerId
    "brokerd.handlers.acls",  # DescribeAcls, CreateAcls, DeleteAcls
)


@dataclass(frozen=True, slots=True)
class ApiSpec:
    api_key: int
    min_version: int
    max_version: int
    handler: Callable[[Any, Any], Any]
    # Optional fast-path decoder: decode(frame, body_offset, version) -> request.
    decode: Callable[[bytes, int, int], Any] | None = None
    # Allowed before SASL authentication completes on a SASL listener.
    pre_auth: bool = False
    # Versions below this are advertised but refused by closing the connection (Produce v0-2).
    refuse_below: int = -1
    # Process no further request of this connection until this one completes (SASL).
    barrier: bool = False


REGISTRY: dict[int, ApiSpec] = {}


def register(
    api_key: int,
    min_version: int,
    max_version: int,
    *,
    decode: Callable[[bytes, int, int], Any] | None = None,
    pre_auth: bool = False,
    refuse_below: int = -1,
    barrier: bool = False,
) -> Callable[[Callable], Callable]:
    def wrap(handler: Callable) -> Callable:
        REGISTRY[api_key] = ApiSpec(
            api_key, min_version, max_version, handler, decode, pre_auth, refuse_below, barrier
        )
        return handler

    return wrap


_loaded = False


def load_all(extra: tuple[str, ...] = ()) -> dict[int, ApiSpec]:
    global _loaded
    if not _loaded:
        for name in MODULES:
            importlib.import_module(name)
        _loaded = True
    for name in extra:
        importlib.import_module(name)
    return REGISTRY


_ERROR_NAMES: dict[int, str] = {}


def error_name(code: int) -> str:
    """Kafka's name of an error code, upper case (``UNKNOWN_TOPIC_OR_PARTITION``), for metrics."""
    name = _ERROR_NAMES.get(code)
    if name is None:
        from kio.schema.errors import ErrorCode

        try:
            name = ErrorCode(code).name.upper()
        except ValueError:
            name = str(code)
        _ERROR_NAMES[code] = name
    return name


def version_table() -> list[tuple[int, int, int]]:
    """(api_key, min, max) for ApiVersions, sorted by api key."""
    return sorted((s.api_key, s.min_version, s.max_version) for s in REGISTRY.values())
