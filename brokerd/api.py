"""What the connection loop knows of an API: its spec, its name, and how its errors are counted.

The table of specs is :data:`brokerd.handlers.APIS`; nothing here knows a handler.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One Kafka API as this broker serves it.

    ``handler(request, ctx)`` returns a kio response entity, a
    :class:`~brokerd.protocol.framing.RawBody` (pre-encoded body buffers), ``None`` (no response,
    e.g. Produce acks=0), or an awaitable of one of those.
    """

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


def version_table(apis: dict[int, ApiSpec]) -> list[tuple[int, int, int]]:
    """(api_key, min, max) for ApiVersions, sorted by api key."""
    return sorted((s.api_key, s.min_version, s.max_version) for s in apis.values())


_ERROR_NAMES: dict[int, str] = {}
_API_NAMES: dict[int, str] = {}


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


def api_name(api_key: int) -> str:
    """Kafka's name of an API (``OffsetCommit``), for metrics."""
    name = _API_NAMES.get(api_key)
    if name is None:
        from kio.schema.index import api_key_map

        words = api_key_map.get(api_key, str(api_key)).split("_")
        name = _API_NAMES[api_key] = "".join(w.title() for w in words)
    return name


def count_errors(codes: Iterable[int], none: int = 0) -> dict[str, int] | None:
    """``kastle_requests_total`` labels of a response's error codes, as Kafka's ErrorsPerSec.

    ``none`` adds that many NONE (a top-level error field without error). None stands for
    exactly ``{"NONE": 1}``, the common case, without building a dict.
    """
    counts: dict[str, int] | None = None
    for code in codes:
        if code:
            if counts is None:
                counts = {}
            label = error_name(code)
            counts[label] = counts.get(label, 0) + 1
        else:
            none += 1
    if counts is None:
        return None if none == 1 else {"NONE": none}
    if none:
        counts["NONE"] = counts.get("NONE", 0) + none
    return counts


def response_error_counts(response: Any) -> dict[str, int]:
    """The same labels for a kio response: every ``error_code`` field in it (non-hot paths)."""
    counts: dict[str, int] = {}

    def walk(obj: Any, depth: int) -> None:
        if depth > 6:
            return
        fields = getattr(type(obj), "__dataclass_fields__", None)
        if fields is None:
            return
        for name in fields:
            value = getattr(obj, name, None)
            if name == "error_code" and value is not None:
                label = getattr(value, "name", str(value)).upper()
                counts[label] = counts.get(label, 0) + 1
            elif isinstance(value, tuple):
                for item in value:
                    walk(item, depth + 1)
            elif hasattr(type(value), "__dataclass_fields__"):
                walk(value, depth + 1)

    walk(response, 0)
    return counts or {"NONE": 1}


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
