from django.contrib import admin

from .models import ApiKey, ServiceAccount


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "organization", "created_at"]
    search_fields = ["public_id", "name", "organization__name"]
    readonly_fields = ["public_id", "created_at", "updated_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "key", "cluster", "description", "created_by", "service_account", "scope_access",
        "scope_topic_prefix", "created_at", "revoked_at",
    ]  # fmt: skip
    search_fields = ["key", "cluster__public_id", "description"]
    readonly_fields = ["key", "created_at", "last_used_at"]
    exclude = ["verifier"]
