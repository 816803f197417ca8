from django.contrib import admin

from .models import BillingAccount, CreditGrant, HourlyUsage, Invoice, InvoiceLine, PriceBook


@admin.register(PriceBook)
class PriceBookAdmin(admin.ModelAdmin):
    """Operators edit prices here. To change prices, add a row effective from a future day:
    costs are priced with the row in effect on each usage day, so history keeps its prices."""

    list_display = [
        "plan",
        "effective_from",
        "base_per_hour",
        "per_gb_in",
        "per_gb_out",
        "per_gb_month_stored",
        "per_partition_hour",
        "currency",
        "updated_at",
    ]
    list_filter = ["plan"]
    ordering = ["plan", "-effective_from"]


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ["organization", "spend_cap", "throttled", "throttled_at", "updated_at"]
    list_filter = ["throttled"]
    raw_id_fields = ["organization"]
    readonly_fields = ["throttled", "throttled_at"]


@admin.register(CreditGrant)
class CreditGrantAdmin(admin.ModelAdmin):
    list_display = ["organization", "amount", "reason", "granted_at"]
    raw_id_fields = ["organization"]


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = [
        "cluster_public_id",
        "cluster_name",
        "plan",
        "dimension",
        "unit",
        "quantity",
        "unit_price",
        "amount",
    ]
    exclude = ["cluster"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["public_id", "organization", "month", "subtotal", "credit_applied", "total", "issued_at"]
    raw_id_fields = ["organization"]
    readonly_fields = ["public_id", "month", "subtotal", "credit_applied", "total", "period_end", "issued_at"]
    inlines = [InvoiceLineInline]


@admin.register(HourlyUsage)
class HourlyUsageAdmin(admin.ModelAdmin):
    list_display = [
        "hour",
        "cluster",
        "principal",
        "topic",
        "bytes_in",
        "bytes_out",
        "records_in",
        "records_out",
    ]
    raw_id_fields = ["organization", "cluster"]
    list_filter = ["hour"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the billing record is written by the collector only
