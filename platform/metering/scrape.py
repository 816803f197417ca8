"""Parse what metering needs from a brokerd /metrics page (Prometheus text format 0.0.4).

Only the usage counters and the storage/partition gauges are read (docs/metering.md); every
other line is skipped by its prefix, so a page of a few hundred series parses in well under a
millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

COUNTERS = {
    "kastle_bytes_in_total": 0,
    "kastle_records_in_total": 1,
    "kastle_bytes_out_total": 2,
    "kastle_records_out_total": 3,
}
STORED = "kastle_partition_bytes_stored"
PARTITIONS = "kastle_partitions"
_WANTED = (*COUNTERS, STORED, PARTITIONS)


class ScrapeError(ValueError):
    pass


@dataclass
class Scrape:
    #: (principal, topic) -> [bytes_in, records_in, bytes_out, records_out]
    counters: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: topic -> bytes stored (summed over the broker's partitions)
    stored: dict[str, int] = field(default_factory=dict)
    #: topic -> partitions on the broker
    partitions: dict[str, int] = field(default_factory=dict)


def _labels(text: str) -> dict[str, str]:
    """`a="x",b="y\\"z"` -> {a: x, b: y"z} (Prometheus escapes: \\\\, \\", \\n)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.index("=", i)
        name = text[i:eq].strip().lstrip(",").strip()
        if text[eq + 1] != '"':
            raise ScrapeError(f"bad label value in {text!r}")
        j = eq + 2
        chars: list[str] = []
        while True:
            c = text[j]
            if c == "\\":
                nxt = text[j + 1]
                chars.append("\n" if nxt == "n" else nxt)
                j += 2
            elif c == '"':
                break
            else:
                chars.append(c)
                j += 1
        out[name] = "".join(chars)
        i = j + 1
        while i < n and text[i] in ", ":
            i += 1
    return out


def _number(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ScrapeError(f"bad sample value {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise ScrapeError(f"bad sample value {text!r}")
    return int(value)


def parse(text: str) -> Scrape:
    scrape = Scrape()
    for line in text.splitlines():
        if not line.startswith("kastle_") or not line.startswith(_WANTED):
            continue
        brace = line.find("{")
        if brace < 0:
            continue  # a label-less series we do not read (kastle_partitions_total_count)
        name = line[:brace]
        close = line.rfind("}")
        labels = _labels(line[brace + 1 : close])
        value = _number(line[close + 1 :].split()[0])
        slot = COUNTERS.get(name)
        if slot is not None:
            key = (labels.get("principal", ""), labels.get("topic", ""))
            row = scrape.counters.setdefault(key, [0, 0, 0, 0])
            row[slot] = value
        elif labels.get("topic", "").startswith("__"):
            # internal topics (__consumer_offsets): the cluster's own bookkeeping, not the tenant's
            # data, are billed by no managed Kafka service
            continue
        elif name == STORED:
            topic = labels.get("topic", "")
            scrape.stored[topic] = scrape.stored.get(topic, 0) + value
        elif name == PARTITIONS:
            scrape.partitions[labels.get("topic", "")] = value
    return scrape
