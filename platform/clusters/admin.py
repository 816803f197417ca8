from django.contrib import admin

from .models import Broker, Cluster, Host


class BrokerInline(admin.TabularInline):
    model = Broker
    extra = 0


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "organization", "plan", "status", "bootstrap_servers", "created_at"]
    list_filter = ["status", "plan"]
    search_fields = ["public_id", "name", "organization__name"]
    readonly_fields = ["public_id", "created_at", "updated_at", "status_changed_at", "deleted_at"]
    inlines = [BrokerInline]


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "address", "port_min", "port_max", "capacity", "heartbeat_at"]


@admin.register(Broker)
class BrokerAdmin(admin.ModelAdmin):
    list_display = ["cluster", "node_id", "host", "port", "admin_port", "pid", "status"]
    list_filter = ["status", "host"]
