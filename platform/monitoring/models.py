"""Alerts: rules on a cluster's (or an organization's) figures, channels that deliver, notifications.

`AlertRule` holds its own state (ok or firing), the value last evaluated, and `transitions`,
a counter bumped at every change of state. A notification is unique per (rule, channel,
transition), so an evaluation that runs twice (a retried task, two overlapping beat ticks)
can never notify twice for the same change.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.models import Organization
from clusters.models import Cluster
from controlplane.ids import random_string


def new_channel_id() -> str:
    return "nch-" + random_string(8)


def new_rule_id() -> str:
    return "alr-" + random_string(8)


def new_notification_id() -> str:
    return "ntf-" + random_string(12)


class ChannelKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class NotificationChannel(models.Model):
    """Where notifications go: e-mail addresses, or a URL that receives signed JSON.

    A webhook's signing secret is never stored: it is derived from SECRET_KEY, the channel's id
    and `secret_generation` (rotating bumps the generation), and shown once.
    """

    public_id = models.CharField(max_length=16, unique=True, default=new_channel_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alert_channels")
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    emails = models.JSONField(default=list, blank=True, help_text="E-mail: the recipients")
    url = models.URLField(max_length=500, blank=True, help_text="Webhook: the URL that receives a POST")
    secret_generation = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="alertchannel_name_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} {self.name}"


class RuleKind(models.TextChoices):
    CONSUMER_LAG = "consumer_lag", "Consumer lag"
    UNDER_REPLICATED_PARTITIONS = "under_replicated_partitions", "Under-replicated partitions"
    PRODUCE_THROTTLING = "produce_throttling", "Produce throttling"
    STORAGE = "storage", "Storage"
    SPEND = "spend", "Spend against the cap"


class AlertState(models.TextChoices):
    OK = "ok", "OK"
    FIRING = "firing", "Firing"


class AlertRule(models.Model):
    public_id = models.CharField(max_length=16, unique=True, default=new_rule_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alert_rules")
    cluster = models.ForeignKey(
        Cluster, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules",
        help_text="The watched cluster (every kind but spend)",
    )  # fmt: skip
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=32, choices=RuleKind.choices)
    threshold = models.DecimalField(
        max_digits=24, decimal_places=6, help_text="Fires when the value is above it"
    )
    group_id = models.CharField(
        max_length=255, blank=True, help_text="Consumer lag: only this group (empty: any group)"
    )
    enabled = models.BooleanField(default=True)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    # state
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OK)
    value = models.DecimalField(max_digits=30, decimal_places=6, null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True, help_text="What the value is, in words")
    transitions = models.PositiveIntegerField(default=0, help_text="Changes of state so far")
    state_changed_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(
        max_length=500, blank=True, help_text="Why the last evaluation had no value"
    )
    memo = models.JSONField(default=dict, blank=True, help_text="Counters kept between evaluations")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="alertrule_name_per_org"),
            models.CheckConstraint(
                condition=Q(kind="spend") | Q(cluster__isnull=False), name="alertrule_cluster_unless_spend"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} {self.state}"


class NotificationEvent(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"
    TEST = "test", "Test"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """One message to one channel: a rule's change of state, or a test."""

    public_id = models.CharField(max_length=20, unique=True, default=new_notification_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    transition = models.PositiveIntegerField(default=0)
    payload = models.JSONField(help_text="The message, frozen when the state changed")
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "channel", "transition"],
                condition=Q(rule__isnull=False),
                name="notification_once_per_transition",
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
            models.Index(fields=["created_at"], name="notification_created"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.event} -> {self.channel_id}: {self.status}"
