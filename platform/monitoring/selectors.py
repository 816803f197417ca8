"""Monitoring reads: a cluster's live figures and their Prometheus export; alert rules, channels and
notifications (always per organization)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from clusters.models import Cluster

from . import clients, export, live
from .models import AlertRule, Notification, NotificationChannel


def cluster_metrics_export(*, cluster: Cluster) -> bytes:
    """The cluster's figures in the Prometheus text format (version 0.0.4)."""
    return export.render(live.snapshot(cluster))


def channel_list(*, organization: Organization) -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.filter(organization=organization).order_by("created_at", "id")


def channel_get(*, organization: Organization, public_id: str) -> NotificationChannel | None:
    return NotificationChannel.objects.filter(organization=organization, public_id=public_id).first()


def rule_list(*, organization: Organization) -> QuerySet[AlertRule]:
    return (
        AlertRule.objects.filter(organization=organization)
        .select_related("cluster")
        .prefetch_related("channels")
        .order_by("created_at", "id")
    )


def rule_get(*, organization: Organization, public_id: str) -> AlertRule | None:
    return rule_list(organization=organization).filter(public_id=public_id).first()


def notification_list(
    *, organization: Organization, rule: str | None = None, channel: str | None = None
) -> QuerySet[Notification]:
    """Newest first; `rule` / `channel`: only those of that rule (alr-…) or channel (nch-…)."""
    qs = Notification.objects.filter(organization=organization).select_related("rule", "channel")
    if rule:
        qs = qs.filter(rule__public_id=rule)
    if channel:
        qs = qs.filter(channel__public_id=channel)
    return qs.order_by("-created_at", "-id")


def client_list(*, cluster: Cluster) -> list[dict[str, Any]]:
    """The clients connected to the cluster and the metrics they push (client telemetry)."""
    return clients.clients(cluster)


def client_metrics_subscription_list(*, cluster: Cluster) -> list[dict[str, Any]]:
    """Which clients push which metrics, how often (the cluster's client-metrics subscriptions)."""
    return clients.subscriptions(cluster)
