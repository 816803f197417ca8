"""Prices and money: the billing dimensions, their units, the default price book, rounding.

docs/billing.md is the prose version of this module; keep them in agreement.

Money is ``Decimal`` from the price book to the invoice. Usage is stored in exact integer base
units (bytes, byte-seconds, milliseconds); a priced amount is computed from the exact base
units in a 50-digit context and rounded once:

- cost lines (the costs API, spend-cap checks, live credit): ROUND_HALF_UP to $0.000001;
- invoice lines: ROUND_HALF_UP to $0.01; an invoice's subtotal is the sum of its lines.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

CURRENCY = "USD"
GB = 10**9  # decimal gigabyte, as the hosted services bill
HOURS_PER_MONTH = 730  # a GB-month is 730 GB-hours (AWS's and Confluent's convention)
MS_PER_HOUR = 3_600_000

COST_PLACES = Decimal("0.000001")
INVOICE_PLACES = Decimal("0.01")
QUANTITY_PLACES = Decimal("0.000000001")
PRICE_PLACES = Decimal("0.00000001")
_CTX = Context(prec=50, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str  # the line's `dimension`
    unit: str  # what `quantity` counts
    price_field: str  # PriceBook field
    usage_field: str  # HourlyUsage field holding the base units
    divisor: int  # base units per unit

    def quantity(self, base_units: int) -> Decimal:
        """Exact quantity in `unit` (50 significant digits)."""
        return _CTX.divide(Decimal(base_units), Decimal(self.divisor))

    def amount(self, base_units: int, unit_price: Decimal) -> Decimal:
        """Exact amount (unrounded) for base units at a unit price."""
        return _CTX.divide(_CTX.multiply(Decimal(base_units), unit_price), Decimal(self.divisor))


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("base", "cluster-hour", "base_per_hour", "cluster_ms", MS_PER_HOUR),
    Dimension("ingress", "GB", "per_gb_in", "bytes_in", GB),
    Dimension("egress", "GB", "per_gb_out", "bytes_out", GB),
    Dimension(
        "storage", "GB-month", "per_gb_month_stored", "storage_byte_seconds", GB * 3600 * HOURS_PER_MONTH
    ),
    Dimension("partitions", "partition-hour", "per_partition_hour", "partition_ms", MS_PER_HOUR),
)
DIMENSION_BY_NAME = {d.name: d for d in DIMENSIONS}
PRICE_FIELDS = tuple(d.price_field for d in DIMENSIONS)


def round_cost(amount: Decimal) -> Decimal:
    return amount.quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def round_invoice(amount: Decimal) -> Decimal:
    return amount.quantize(INVOICE_PLACES, rounding=ROUND_HALF_UP)


def round_quantity(quantity: Decimal) -> Decimal:
    return quantity.quantize(QUANTITY_PLACES, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Prices:
    plan: str
    effective_from: dt.date
    base_per_hour: Decimal
    per_gb_in: Decimal
    per_gb_out: Decimal
    per_gb_month_stored: Decimal
    per_partition_hour: Decimal
    currency: str = CURRENCY

    def unit_price(self, dimension: Dimension) -> Decimal:
        return getattr(self, dimension.price_field)


EPOCH = dt.date(2000, 1, 1)

#: Used when the price book has no row for a plan (and seeded into it by a migration). In the range
#: of Confluent Cloud / Aiven / MSK list prices: a small hourly base, a few cents per GB moved,
#: about a dime per GB-month stored, and a fraction of a cent per partition-hour.
DEFAULT_PRICES: dict[str, Prices] = {
    "basic": Prices(
        "basic", EPOCH, Decimal("0.10"), Decimal("0.05"), Decimal("0.05"), Decimal("0.10"), Decimal("0.0001")
    ),
    "standard": Prices(
        "standard",
        EPOCH,
        Decimal("0.75"),
        Decimal("0.04"),
        Decimal("0.05"),
        Decimal("0.10"),
        Decimal("0.0015"),
    ),
    "dedicated": Prices(
        "dedicated",
        EPOCH,
        Decimal("2.50"),
        Decimal("0.02"),
        Decimal("0.03"),
        Decimal("0.08"),
        Decimal("0.0005"),
    ),
}
