"""What each kind of alert rule measures. A rule fires while its value is above its threshold.

- consumer_lag: the largest total lag (summed over partitions) of the named group, or of any
  group; records.
- under_replicated_partitions: partitions whose ISR is smaller than their replica set, or with
  no leader; partitions.
- produce_throttling: throttle time returned to producers per second since the previous
  evaluation; seconds per second.
- storage: bytes stored by the cluster's partitions; GB (10^9 bytes).
- spend: the organization's month-to-date cost as a share of its spend cap; percent.

Under-replication is read from the cluster's metadata, never assumed. On a single-broker
cluster every partition has one replica, which is its ISR, so the value is 0 (OK) unless a
partition has lost its leader. The same rule counts real under-replication once clusters
replicate.

An evaluation that cannot read its figures (a broker or coordinator did not answer, or no spend
cap is set) has no value. The rule keeps its state and shows the reason in `last_error`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from metering import selectors as metering_selectors
from metering.services import month_start

from .live import Snapshot
from .models import AlertRule, RuleKind

GB = Decimal(10**9)


@dataclass
class Measure:
    value: Decimal | None
    detail: str = ""
    error: str = ""
    memo: dict[str, Any] = field(default_factory=dict)


def _no(source: str, cluster: str) -> Measure:
    return Measure(None, error=f"The {source} of cluster {cluster} did not answer; the rule keeps its state.")


def consumer_lag(rule: AlertRule, snap: Snapshot) -> Measure:
    if not snap.sources.get("consumer_groups"):
        return _no("consumer groups", snap.cluster)
    lags = snap.group_lag(rule.group_id or None)
    if not lags:
        who = f"Group {rule.group_id}" if rule.group_id else "No group"
        return Measure(Decimal(0), f"{who} has no committed offsets on cluster {snap.cluster}")
    group, lag = max(lags.items(), key=lambda kv: (kv[1], kv[0]))
    return Measure(Decimal(lag), f"Consumer group {group} lags {lag:,} records on cluster {snap.cluster}")


def under_replicated(rule: AlertRule, snap: Snapshot) -> Measure:
    if not snap.sources.get("metadata"):
        return _no("metadata", snap.cluster)
    n = snap.under_replicated()
    total = len(snap.partitions)
    most = max((replicas for *_, replicas, _isr in snap.partitions), default=0)
    note = " (every partition has a single replica)" if most <= 1 else ""
    return Measure(
        Decimal(n), f"{n} of {total} partitions under-replicated or offline on cluster {snap.cluster}{note}"
    )


def produce_throttling(rule: AlertRule, snap: Snapshot, now: dt.datetime) -> Measure:
    if not snap.sources.get("brokers"):
        return _no("brokers", snap.cluster)
    total = snap.produce_throttle_seconds()
    memo = {"throttle_seconds": total, "at": now.timestamp()}
    prev = rule.memo or {}
    if "at" not in prev:
        return Measure(Decimal(0), "First evaluation: throttling is measured from now on", memo=memo)
    elapsed = max(now.timestamp() - float(prev["at"]), 0.001)
    added = total - float(prev["throttle_seconds"])
    if added < 0:  # a broker restarted and its counter with it
        added = total
    rate = Decimal(str(round(added / elapsed, 6)))
    return Measure(
        rate, f"Producers on cluster {snap.cluster} were throttled {rate:f} s per second", memo=memo
    )


def storage(rule: AlertRule, snap: Snapshot) -> Measure:
    if not snap.sources.get("brokers"):
        return _no("brokers", snap.cluster)
    stored = snap.stored_bytes()
    gb = (Decimal(stored) / GB).quantize(Decimal("0.000001"))
    return Measure(gb, f"Cluster {snap.cluster} stores {gb:f} GB ({stored:,} bytes)")


def spend(rule: AlertRule, now: dt.datetime) -> Measure:
    account = metering_selectors.billing_account_get(organization=rule.organization)
    cap = account.spend_cap if account is not None else None
    if cap is None:
        return Measure(
            None, error="No spend cap is set; set one (PUT /api/v1/billing/spend-cap) to watch spend."
        )
    cost = metering_selectors.cost_total(organization=rule.organization, start=month_start(now), end=now)
    percent = Decimal(100) if cap == 0 else (cost * 100 / cap).quantize(Decimal("0.01"))
    return Measure(percent, f"Month-to-date cost ${cost:.2f} is {percent:f}% of the ${cap:.2f} cap")


def measure(rule: AlertRule, snap: Snapshot | None, now: dt.datetime) -> Measure:
    if rule.kind == RuleKind.SPEND:
        return spend(rule, now)
    assert snap is not None
    if not snap.running:
        return Measure(None, error=f"Cluster {snap.cluster} is not RUNNING; the rule keeps its state.")
    if rule.kind == RuleKind.CONSUMER_LAG:
        return consumer_lag(rule, snap)
    if rule.kind == RuleKind.UNDER_REPLICATED_PARTITIONS:
        return under_replicated(rule, snap)
    if rule.kind == RuleKind.PRODUCE_THROTTLING:
        return produce_throttling(rule, snap, now)
    if rule.kind == RuleKind.STORAGE:
        return storage(rule, snap)
    raise ValueError(f"unknown rule kind {rule.kind!r}")
