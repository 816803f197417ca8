"""Plan prices for the plan cards, from metering's price book."""

from __future__ import annotations

from metering import selectors as metering_selectors


def plan_prices() -> dict[str, str]:
    """{plan name: a price line in words}."""
    return metering_selectors.plan_price_lines()
