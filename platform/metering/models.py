"""Metering and billing state.

Collection: `BrokerMeter` (per broker: when it was last sampled, which spend-cap quota it has) and
`CounterCursor` (the last counter values seen per broker, principal and topic). Usage:
`HourlyUsage` (the billing record, one row per cluster, principal, topic and hour) and
`UsageSample` (per-interval deltas, kept 48 hours for charts). Billing: `PriceBook`,
`BillingAccount` (spend cap and throttle state), `CreditGrant`, `Invoice` and `InvoiceLine`.

In usage rows an empty `principal` means "not attributed to an API key" (storage, partitions,
cluster time) and an empty `topic` means "the cluster as a whole" (cluster time).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Organization
from clusters.models import Broker, Cluster
from clusters.plans import PLAN_CHOICES
from controlplane.ids import random_string

from .pricing import CURRENCY


def new_invoice_id() -> str:
    return "inv-" + random_string(10)


def _money(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=16, decimal_places=2, **kwargs)


def _price(help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=16, decimal_places=8, validators=[MinValueValidator(Decimal("0"))], help_text=help_text
    )


# --- collection state ----------------------------------------------------------------------------
class BrokerMeter(models.Model):
    """The collector's state for one broker (locked while a scrape of it is recorded)."""

    broker = models.OneToOneField(Broker, on_delete=models.CASCADE, related_name="meter")
    last_taken_at = models.DateTimeField(
        null=True, blank=True, help_text="Time of the newest scrape recorded"
    )
    last_sample_at = models.DateTimeField(
        null=True, blank=True, help_text="Time-based usage (storage, partitions) is counted up to here"
    )
    resets = models.PositiveIntegerField(default=0, help_text="Counters seen going backwards")
    # Spend-cap quota last applied to the broker (AlterClientQuotas), and the pid it was applied to.
    quota_rate = models.BigIntegerField(null=True, blank=True)
    quota_pid = models.PositiveIntegerField(null=True, blank=True)
    quota_applied = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"meter of broker {self.broker_id} at {self.last_taken_at}"


class CounterCursor(models.Model):
    """The last counter values recorded for (broker, principal, topic)."""

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="counter_cursors")
    principal = models.CharField(max_length=255)
    topic = models.CharField(max_length=255)
    bytes_in = models.BigIntegerField(default=0)
    records_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    records_out = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "principal", "topic"], name="countercursor_unique_series"
            )
        ]

    def __str__(self) -> str:
        return f"cursor {self.broker_id}/{self.principal}/{self.topic}"


# --- usage -------------------------------------------------------------------------------------
class UsageFields(models.Model):
    bytes_in = models.BigIntegerField(default=0, help_text="Record-batch bytes produced (docs/metering.md)")
    bytes_out = models.BigIntegerField(default=0, help_text="Record-batch bytes fetched")
    records_in = models.BigIntegerField(default=0)
    records_out = models.BigIntegerField(default=0)
    storage_byte_seconds = models.BigIntegerField(default=0, help_text="Sampled bytes stored x seconds")
    partition_ms = models.BigIntegerField(default=0, help_text="Sampled partitions x milliseconds")
    cluster_ms = models.BigIntegerField(default=0, help_text="Milliseconds the cluster was running")
    schema_ms = models.BigIntegerField(
        default=0, help_text="Live schema versions in the cluster's registry x milliseconds running"
    )

    class Meta:
        abstract = True


class HourlyUsage(UsageFields):
    """The billing record: usage per cluster, principal (API key) and topic in one UTC hour."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="hourly_usage")
    principal = models.CharField(max_length=255, blank=True)
    topic = models.CharField(max_length=255, blank=True)
    hour = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["hour", "cluster_id", "principal", "topic"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "principal", "topic", "hour"], name="hourlyusage_unique_series_hour"
            )
        ]
        indexes = [models.Index(fields=["organization", "hour"], name="hourlyusage_org_hour")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.cluster_id}/{self.principal or '-'}/{self.topic or '-'}"


class UsageSample(UsageFields):
    """One scrape's deltas (and gauges) per broker, principal and topic; kept for live charts."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="+")
    principal = models.CharField(max_length=255, blank=True)
    topic = models.CharField(max_length=255, blank=True)
    taken_at = models.DateTimeField()
    interval_ms = models.BigIntegerField(default=0)
    storage_bytes = models.BigIntegerField(default=0, help_text="Gauge: bytes stored at taken_at")
    partitions = models.IntegerField(default=0, help_text="Gauge: partitions at taken_at")

    class Meta:
        ordering = ["taken_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker", "principal", "topic", "taken_at"], name="usagesample_unique_series_time"
            )
        ]
        indexes = [
            models.Index(fields=["cluster", "taken_at"], name="usagesample_cluster_time"),
            models.Index(fields=["taken_at"], name="usagesample_time"),
        ]

    def __str__(self) -> str:
        return f"sample {self.taken_at} {self.broker_id}/{self.principal or '-'}/{self.topic or '-'}"


# --- prices and billing ---------------------------------------------------------------------------
class PriceBook(models.Model):
    """Prices of a plan from a UTC day on. The newest row whose `effective_from` is on or before a
    usage day prices that day; to change prices, add a row from tomorrow (closed invoices never change)."""

    plan = models.CharField(max_length=16, choices=PLAN_CHOICES)
    effective_from = models.DateField(help_text="First UTC day these prices apply to")
    currency = models.CharField(max_length=3, default=CURRENCY, editable=False)
    base_per_hour = _price("USD per cluster-hour while the cluster runs")
    per_gb_in = _price("USD per GB (10^9 record-batch bytes) produced")
    per_gb_out = _price("USD per GB (10^9 record-batch bytes) fetched")
    per_gb_month_stored = _price("USD per GB-month stored (730 GB-hours)")
    per_partition_hour = _price("USD per partition-hour")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plan", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "effective_from"], name="pricebook_unique_plan_day")
        ]

    def __str__(self) -> str:
        return f"{self.plan} prices from {self.effective_from}"


class BillingAccount(models.Model):
    """An organization's billing settings: the monthly spend cap and whether it is throttled now."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="billing")
    spend_cap = _money(null=True, blank=True, help_text="Monthly spend cap in USD; empty: none")
    throttled = models.BooleanField(default=False)
    throttled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(spend_cap__isnull=True) | Q(spend_cap__gte=0),
                name="billingaccount_cap_nonnegative",
            )
        ]

    def __str__(self) -> str:
        return f"billing of {self.organization_id}: cap {self.spend_cap}, throttled={self.throttled}"


class CreditGrant(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="credit_grants")
    amount = _money(validators=[MinValueValidator(Decimal("0"))])
    reason = models.CharField(max_length=64)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["granted_at", "id"]
        constraints = [
            # One trial credit per organization (sign-up retried, or run twice).
            models.UniqueConstraint(
                fields=["organization"], condition=Q(reason="trial"), name="creditgrant_one_trial_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.amount} {CURRENCY} to {self.organization_id} ({self.reason})"


class Invoice(models.Model):
    public_id = models.CharField(max_length=16, unique=True, default=new_invoice_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invoices")
    month = models.DateField(help_text="First day of the invoiced month (UTC)")
    currency = models.CharField(max_length=3, default=CURRENCY)
    subtotal = _money()
    credit_applied = _money()
    total = _money(help_text="Amount due: subtotal - credit_applied")
    period_end = models.DateTimeField(help_text="Usage up to (excluding) this time is on the invoice")
    issued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "month"], name="invoice_unique_org_month"),
            models.CheckConstraint(condition=Q(month__day=1), name="invoice_month_first_day"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.month:%Y-%m} {self.total} {self.currency}"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    cluster = models.ForeignKey(Cluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    cluster_public_id = models.CharField(max_length=16)
    cluster_name = models.CharField(max_length=64)
    plan = models.CharField(max_length=16)
    dimension = models.CharField(max_length=16)
    unit = models.CharField(max_length=16)
    quantity = models.DecimalField(max_digits=30, decimal_places=9)
    unit_price = models.DecimalField(max_digits=16, decimal_places=8)
    amount = _money()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "cluster_public_id", "dimension", "unit_price"], name="invoiceline_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.cluster_public_id} {self.dimension} {self.quantity} {self.unit}: {self.amount}"
