from django.contrib import admin

from .models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "cluster", "description", "created_by", "created_at", "revoked_at"]
    search_fields = ["key", "cluster__public_id", "description"]
    readonly_fields = ["key", "created_at", "last_used_at"]
    exclude = ["verifier"]
