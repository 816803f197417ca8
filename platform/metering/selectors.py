"""Metering and billing reads: usage rows, prices, costs, credit, invoices (always per organization)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import TruncDate

from accounts.models import Organization
from clusters.plans import PLANS

from . import pricing
from .models import BillingAccount, CreditGrant, HourlyUsage, Invoice, PriceBook, UsageSample
from .pricing import DEFAULT_PRICES, DIMENSIONS, Prices

UTC = dt.UTC
FIELDS = (
    "bytes_in",
    "bytes_out",
    "records_in",
    "records_out",
    "storage_byte_seconds",
    "partition_ms",
    "cluster_ms",
    "schema_ms",
)


# --- prices -------------------------------------------------------------------------------------------
class PriceLookup:
    """The price book, loaded once: `get(plan, day)` is the newest row effective on that day."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Prices]] = defaultdict(list)
        for row in PriceBook.objects.order_by("plan", "-effective_from"):
            self.rows[row.plan].append(
                Prices(row.plan, row.effective_from, *(getattr(row, f) for f in pricing.PRICE_FIELDS))
            )

    def get(self, plan: str, day: dt.date) -> Prices:
        for prices in self.rows.get(plan, ()):
            if prices.effective_from <= day:
                return prices
        return DEFAULT_PRICES.get(plan) or DEFAULT_PRICES["basic"]


def current_prices(today: dt.date | None = None) -> dict[str, Prices]:
    today = today or dt.datetime.now(UTC).date()
    lookup = PriceLookup()
    return {name: lookup.get(name, today) for name in PLANS}


# --- usage --------------------------------------------------------------------------------------------
def usage_rows(
    *, organization: Organization, start: dt.datetime, end: dt.datetime, group_by: str = "hour", cluster=None
) -> QuerySet:
    """Usage per cluster, principal and topic, per hour or per UTC day, as dicts."""
    qs = HourlyUsage.objects.filter(organization=organization, hour__gte=start, hour__lt=end)
    if cluster is not None:
        qs = qs.filter(cluster=cluster)
    sums = {f: Sum(f) for f in FIELDS}
    if group_by == "day":
        return (
            qs.annotate(day=TruncDate("hour", tzinfo=UTC))
            .values("day", "principal", "topic", cluster_public_id=F("cluster__public_id"))
            .annotate(**sums)
            .order_by("day", "cluster_public_id", "principal", "topic")
        )
    return qs.values(
        "hour", "principal", "topic", *FIELDS, cluster_public_id=F("cluster__public_id")
    ).order_by("hour", "cluster_public_id", "principal", "topic")


# --- costs --------------------------------------------------------------------------------------------
def _priced(
    *, organization: Organization, start: dt.datetime, end: dt.datetime, keys: list[str]
) -> dict[tuple, dict[tuple[str, Decimal], int]]:
    """{group key: {(dimension, unit price): base units}} over [start, end), priced per plan and day."""
    rows = (
        HourlyUsage.objects.filter(organization=organization, hour__gte=start, hour__lt=end)
        .annotate(day=TruncDate("hour", tzinfo=UTC), plan=F("cluster__plan"))
        .values(*dict.fromkeys([*keys, "plan", "day"]))
        .annotate(**{d.usage_field: Sum(d.usage_field) for d in DIMENSIONS})
        .order_by()
    )
    lookup = PriceLookup()
    out: dict[tuple, dict[tuple[str, Decimal], int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        prices = lookup.get(row["plan"], row["day"])
        key = tuple(row[k] for k in keys)
        for dim in DIMENSIONS:
            units = row[dim.usage_field] or 0
            if units:
                out[key][(dim.name, prices.unit_price(dim))] += units
    return out


def _lines(units: dict[tuple[str, Decimal], int], round_amount) -> list[dict[str, Any]]:
    order = {d.name: i for i, d in enumerate(DIMENSIONS)}
    lines = []
    for (name, price), base in sorted(units.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        dim = pricing.DIMENSION_BY_NAME[name]
        lines.append(
            {
                "dimension": name,
                "unit": dim.unit,
                "quantity": pricing.round_quantity(dim.quantity(base)),
                "unit_price": price,
                "amount": round_amount(dim.amount(base, price)),
            }
        )
    return lines


GROUP_KEYS = {
    "cluster": ["cluster__public_id", "cluster__name"],
    "api_key": ["principal"],
    "topic": ["topic"],
    "day": ["day"],
}


def cost_groups(
    *, organization: Organization, start_date: dt.date, end_date: dt.date, group_by: str = "cluster"
) -> list[dict[str, Any]]:
    """Costs from start_date (inclusive) to end_date (exclusive), grouped; a line per dimension.

    Line amounts are exact amounts rounded half-up to $0.000001; a group's amount is the sum of its
    lines. Storage, partitions and cluster time belong to no API key (api_key null), cluster
    time to no topic (topic null).
    """
    start = dt.datetime.combine(start_date, dt.time(), tzinfo=UTC)
    end = dt.datetime.combine(end_date, dt.time(), tzinfo=UTC)
    priced = _priced(organization=organization, start=start, end=end, keys=GROUP_KEYS[group_by])
    groups = []
    for key, units in priced.items():
        lines = _lines(units, pricing.round_cost)
        group: dict[str, Any] = {
            "cluster": None,
            "cluster_name": None,
            "api_key": None,
            "topic": None,
            "day": None,
            "start_date": start_date,
            "end_date": end_date,
            "currency": pricing.CURRENCY,
            "amount": sum((line["amount"] for line in lines), Decimal("0")),
            "lines": lines,
        }
        if group_by == "cluster":
            group["cluster"], group["cluster_name"] = key
        elif group_by == "api_key":
            group["api_key"] = key[0] or None
        elif group_by == "topic":
            group["topic"] = key[0] or None
        else:
            group["day"] = key[0]
            group["start_date"], group["end_date"] = key[0], key[0] + dt.timedelta(days=1)
        groups.append(group)
    groups.sort(
        key=lambda g: tuple("" if g[k] is None else str(g[k]) for k in ("day", "cluster", "api_key", "topic"))
    )
    return groups


def cost_total(*, organization: Organization, start: dt.datetime, end: dt.datetime) -> Decimal:
    """Cost of [start, end): lines per cluster, dimension and price, each rounded to $0.000001."""
    priced = _priced(organization=organization, start=start, end=end, keys=["cluster_id"])
    total = Decimal("0")
    for units in priced.values():
        total += sum((line["amount"] for line in _lines(units, pricing.round_cost)), Decimal("0"))
    return total


def invoice_lines(
    *, organization: Organization, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """InvoiceLine fields for [start, end): per cluster, dimension and price, amounts in cents."""
    keys = ["cluster_id", "cluster__public_id", "cluster__name", "cluster__plan"]
    priced = _priced(organization=organization, start=start, end=end, keys=keys)
    out = []
    for (cluster_id, public_id, name, plan), units in sorted(priced.items(), key=lambda kv: kv[0][1]):
        for line in _lines(units, pricing.round_invoice):
            out.append(
                {
                    "cluster_id": cluster_id,
                    "cluster_public_id": public_id,
                    "cluster_name": name,
                    "plan": plan,
                    **line,
                }
            )
    return out


# --- credit and invoices ------------------------------------------------------------------------------
def billing_account_get(*, organization: Organization) -> BillingAccount | None:
    """The organization's billing account (its spend cap), None before it was ever needed."""
    return BillingAccount.objects.filter(organization=organization).first()


def credit_granted(*, organization: Organization) -> Decimal:
    return CreditGrant.objects.filter(organization=organization).aggregate(s=Sum("amount"))["s"] or Decimal(
        "0.00"
    )


def credit_available_for_invoices(*, organization: Organization) -> Decimal:
    """Granted credit not yet applied to an invoice."""
    used = Invoice.objects.filter(organization=organization).aggregate(s=Sum("credit_applied"))["s"]
    return credit_granted(organization=organization) - (used or Decimal("0.00"))


def credit_summary(*, organization: Organization, now: dt.datetime) -> dict[str, Any]:
    """Credit left: granted - applied to invoices - the cost of usage not invoiced yet."""
    granted = credit_granted(organization=organization)
    applied = Invoice.objects.filter(organization=organization).aggregate(s=Sum("credit_applied"))[
        "s"
    ] or Decimal("0.00")
    last = Invoice.objects.filter(organization=organization).order_by("-period_end").first()
    since = last.period_end if last is not None else dt.datetime(2000, 1, 1, tzinfo=UTC)
    pending = cost_total(organization=organization, start=since, end=now + dt.timedelta(hours=1))
    after_invoices = granted - applied
    pending_drawn = min(max(after_invoices, Decimal("0")), pending)
    return {
        "currency": pricing.CURRENCY,
        "granted": granted,
        "applied_to_invoices": applied,
        "uninvoiced_cost": pending,
        "remaining": after_invoices - pending_drawn,
        "uninvoiced_since": since,
        "grants": list(CreditGrant.objects.filter(organization=organization)),
    }


def invoice_list(*, organization: Organization) -> QuerySet:
    return Invoice.objects.filter(organization=organization).order_by("-month", "-id")


def plan_price_lines() -> dict[str, str]:
    """{plan: a one-line price summary} for the portal's plan cards."""
    out = {}
    for name, p in current_prices().items():
        out[name] = (
            f"${p.base_per_hour.normalize():f}/hour + ${p.per_gb_in.normalize():f}/GB in, "
            f"${p.per_gb_out.normalize():f}/GB out, ${p.per_gb_month_stored.normalize():f}/GB-month stored, "
            f"${p.per_partition_hour.normalize():f}/partition-hour"
        )
    return out


def sample_series(*, cluster, since: dt.datetime) -> list[dict[str, Any]]:
    """Per-interval samples of a cluster since `since` (48 h kept), summed per scrape time, for charts:
    [{taken_at, interval_ms, bytes_in, bytes_out, records_in, records_out, storage_bytes, partitions}]."""
    return list(
        UsageSample.objects.filter(cluster=cluster, taken_at__gte=since)
        .values("taken_at")
        .annotate(
            interval_ms=Sum("interval_ms") / Count("id"),
            **{
                f: Sum(f)
                for f in ("bytes_in", "bytes_out", "records_in", "records_out", "storage_bytes", "partitions")
            },
        )
        .order_by("taken_at")
    )
