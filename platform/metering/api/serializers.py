from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from rest_framework import serializers

from metering import pricing
from metering.models import CreditGrant, Invoice, InvoiceLine

SIX = Decimal("0.000001")


def _hours(value: int | None, per_hour: int) -> Decimal:
    return (Decimal(value or 0) / Decimal(per_hour)).quantize(SIX, rounding=ROUND_HALF_UP)


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=30, decimal_places=6, **kwargs)


# --- usage --------------------------------------------------------------------------------------------
class UsageFilterSerializer(serializers.Serializer):
    cluster = serializers.CharField(required=False, help_text="A cluster id (default: all clusters)")
    start = serializers.DateTimeField(required=False, help_text="Inclusive; default: 24 hours ago")
    end = serializers.DateTimeField(required=False, help_text="Exclusive; default: now")
    group_by = serializers.ChoiceField(choices=["hour", "day"], default="hour")

    def validate(self, attrs):
        now = dt.datetime.now(dt.UTC)
        end = attrs.get("end") or now + dt.timedelta(hours=1)
        start = attrs.get("start") or now - dt.timedelta(hours=24)
        if start >= end:
            raise serializers.ValidationError({"end": ["Must be after start."]})
        if end - start > dt.timedelta(days=366):
            raise serializers.ValidationError({"start": ["The range may span at most 366 days."]})
        attrs["start"], attrs["end"] = start, end
        return attrs


class UsageRowSerializer(serializers.Serializer):
    cluster = serializers.CharField(source="cluster_public_id")
    api_key = serializers.SerializerMethodField(
        help_text="The principal; null for storage, partitions, cluster time"
    )
    topic = serializers.SerializerMethodField(help_text="null for cluster time")
    hour = serializers.DateTimeField(required=False, allow_null=True, help_text="Set when group_by=hour")
    day = serializers.DateField(required=False, allow_null=True, help_text="Set when group_by=day (UTC)")
    bytes_in = serializers.IntegerField(help_text="Record-batch bytes produced (docs/metering.md)")
    bytes_out = serializers.IntegerField(help_text="Record-batch bytes fetched")
    records_in = serializers.IntegerField()
    records_out = serializers.IntegerField()
    storage_byte_hours = serializers.SerializerMethodField()
    partition_hours = serializers.SerializerMethodField()
    cluster_hours = serializers.SerializerMethodField()
    schema_hours = serializers.SerializerMethodField(
        help_text="Live schema versions in the cluster's Schema Registry x hours (cluster rows only)"
    )

    def get_api_key(self, row) -> str | None:
        return row["principal"] or None

    def get_topic(self, row) -> str | None:
        return row["topic"] or None

    def get_storage_byte_hours(self, row) -> Decimal:
        return _hours(row["storage_byte_seconds"], 3600)

    def get_partition_hours(self, row) -> Decimal:
        return _hours(row["partition_ms"], pricing.MS_PER_HOUR)

    def get_cluster_hours(self, row) -> Decimal:
        return _hours(row["cluster_ms"], pricing.MS_PER_HOUR)

    def get_schema_hours(self, row) -> Decimal:
        return _hours(row["schema_ms"], pricing.MS_PER_HOUR)

    def to_representation(self, row):
        row = {"hour": None, "day": None, **row}
        data = super().to_representation(row)
        for name in ("storage_byte_hours", "partition_hours", "cluster_hours", "schema_hours"):
            data[name] = str(data[name])
        return data


# --- costs --------------------------------------------------------------------------------------------
class CostFilterSerializer(serializers.Serializer):
    start_date = serializers.DateField(
        required=False, help_text="Inclusive (UTC); default: first day of this month"
    )
    end_date = serializers.DateField(required=False, help_text="Exclusive (UTC); default: tomorrow")
    group_by = serializers.ChoiceField(choices=["cluster", "api_key", "topic", "day"], default="cluster")

    def validate(self, attrs):
        today = dt.datetime.now(dt.UTC).date()
        start = attrs.get("start_date") or today.replace(day=1)
        end = attrs.get("end_date") or today + dt.timedelta(days=1)
        if start >= end:
            raise serializers.ValidationError({"end_date": ["Must be after start_date."]})
        if (end - start).days > 366:
            raise serializers.ValidationError({"start_date": ["The range may span at most 366 days."]})
        attrs["start_date"], attrs["end_date"] = start, end
        return attrs


class CostLineSerializer(serializers.Serializer):
    dimension = serializers.ChoiceField(choices=[d.name for d in pricing.DIMENSIONS])
    unit = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=40, decimal_places=9)
    unit_price = serializers.DecimalField(max_digits=16, decimal_places=8, help_text="USD per unit")
    amount = _money(help_text="USD: quantity x unit_price, exact, rounded half-up to 0.000001")


class CostSerializer(serializers.Serializer):
    cluster = serializers.CharField(allow_null=True, help_text="Set when group_by=cluster")
    cluster_name = serializers.CharField(allow_null=True)
    api_key = serializers.CharField(
        allow_null=True, help_text="group_by=api_key; null: not attributed to a key"
    )
    topic = serializers.CharField(
        allow_null=True, help_text="group_by=topic; null: not attributed to a topic"
    )
    day = serializers.DateField(allow_null=True, help_text="Set when group_by=day")
    start_date = serializers.DateField()
    end_date = serializers.DateField(help_text="Exclusive")
    currency = serializers.CharField()
    amount = _money(help_text="Sum of the lines' amounts")
    lines = CostLineSerializer(many=True)


# --- credit, invoices, spend cap ------------------------------------------------------------------------
class CreditGrantSerializer(serializers.ModelSerializer):
    class Meta:
        model = CreditGrant
        fields = ["amount", "reason", "granted_at"]


class CreditSerializer(serializers.Serializer):
    currency = serializers.CharField()
    granted = _money()
    applied_to_invoices = _money()
    uninvoiced_cost = _money(help_text="Cost of usage since the last invoice (drawn from the credit first)")
    uninvoiced_since = serializers.DateTimeField()
    remaining = _money()
    grants = CreditGrantSerializer(many=True)


class InvoiceLineSerializer(serializers.ModelSerializer):
    cluster = serializers.CharField(source="cluster_public_id")

    class Meta:
        model = InvoiceLine
        fields = ["cluster", "cluster_name", "plan", "dimension", "unit", "quantity", "unit_price", "amount"]


class InvoiceSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    month = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = ["id", "month", "currency", "subtotal", "credit_applied", "total", "period_end", "issued_at"]

    def get_month(self, invoice) -> str:
        return f"{invoice.month:%Y-%m}"


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines"]


class SpendCapSerializer(serializers.Serializer):
    spend_cap = serializers.DecimalField(
        max_digits=16,
        decimal_places=2,
        allow_null=True,
        min_value=Decimal("0"),
        help_text="Monthly cap in USD; null: no cap",
    )
    currency = serializers.CharField(read_only=True)
    month_to_date_cost = _money(read_only=True)
    throttled = serializers.BooleanField(read_only=True, help_text="Produce is throttled on every cluster")
    throttled_at = serializers.DateTimeField(read_only=True, allow_null=True)
    producer_byte_rate_when_throttled = serializers.IntegerField(read_only=True)
