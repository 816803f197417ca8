"""Plan prices for the plan cards, from metering's price book once it exists (empty until then)."""

from __future__ import annotations


def plan_prices() -> dict[str, str]:
    """{plan name: a price line in words}, or {} when no price book is installed."""
    try:
        from metering import selectors as metering_selectors
    except ImportError:
        return {}
    describe = getattr(metering_selectors, "plan_price_lines", None)
    return describe() if describe is not None else {}
