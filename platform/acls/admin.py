from django.contrib import admin

from .models import ServiceAccountBinding


@admin.register(ServiceAccountBinding)
class ServiceAccountBindingAdmin(admin.ModelAdmin):
    list_display = [
        "service_account", "cluster", "permission", "operation", "resource_type", "resource_name",
        "pattern_type", "host",
    ]  # fmt: skip
    search_fields = ["service_account__public_id", "cluster__public_id", "resource_name"]
