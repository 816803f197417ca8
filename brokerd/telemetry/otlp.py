"""Decoding pushed metrics: an OTLP ``MetricsData`` protobuf (opentelemetry-proto), as KIP-714 sends.

Only numbers are kept: gauge and sum points as their value, histogram and summary points as
their sum and count. Attribute values become strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from opentelemetry.proto.metrics.v1 import metrics_pb2


class BadMetrics(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    attributes: tuple[tuple[str, str], ...]
    time_ms: int
    value: float
    kind: str  # gauge | sum | histogram | summary


def _value(any_value) -> str:
    which = any_value.WhichOneof("value")
    return "" if which is None else str(getattr(any_value, which))


def _attrs(kvs) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((kv.key, _value(kv.value)) for kv in kvs))


def decode(payload: bytes) -> tuple[dict[str, str], list[Point]]:
    """(resource attributes, points) of one push."""
    data = metrics_pb2.MetricsData()
    try:
        data.ParseFromString(payload)
    except DecodeError as exc:
        raise BadMetrics(f"not an OTLP MetricsData: {exc}") from None
    resource: dict[str, str] = {}
    points: list[Point] = []
    for rm in data.resource_metrics:
        resource.update(_attrs(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points.extend(_points(metric))
    return resource, points


def _points(metric) -> Iterator[Point]:
    kind = metric.WhichOneof("data")
    if kind in ("gauge", "sum"):
        for dp in getattr(metric, kind).data_points:
            number = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
            yield Point(metric.name, _attrs(dp.attributes), dp.time_unix_nano // 1_000_000, number, kind)
    elif kind in ("histogram", "exponential_histogram", "summary"):
        for dp in getattr(metric, kind).data_points:
            attrs = _attrs(dp.attributes)
            t = dp.time_unix_nano // 1_000_000
            yield Point(metric.name + ".sum", attrs, t, float(dp.sum), kind)
            yield Point(metric.name + ".count", attrs, t, float(dp.count), kind)
