"""Plan prices for the plan cards, from metering's price book: money, with a monthly estimate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from metering import selectors as metering_selectors

#: Hours in an average month (365.25 days * 24 hours / 12), as cloud providers estimate a month.
HOURS_PER_MONTH = Decimal("730")


def plan_prices() -> dict[str, dict[str, Any]]:
    """{plan name: {per_hour, per_month, rates: [(what, amount, unit)]}} in the price book's currency.

    `per_month` is the cluster's base price for a month of running, before usage (traffic,
    storage and partitions are added as used)."""
    out: dict[str, dict[str, Any]] = {}
    for name, p in metering_selectors.current_prices().items():
        out[name] = {
            "per_hour": p.base_per_hour,
            "per_month": (p.base_per_hour * HOURS_PER_MONTH).quantize(Decimal("0.01")),
            "rates": [
                ("Produced", p.per_gb_in, "GB"),
                ("Consumed", p.per_gb_out, "GB"),
                ("Stored", p.per_gb_month_stored, "GB-month"),
                ("Partitions", p.per_partition_hour * HOURS_PER_MONTH, "partition-month"),
            ],
        }
    return out
