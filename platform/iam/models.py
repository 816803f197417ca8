"""Cluster API keys: the SASL credentials tenants' Kafka clients use. Only SCRAM verifiers are stored."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from clusters.models import Cluster


class ApiKey(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="api_keys")
    key = models.CharField(
        max_length=16, unique=True, help_text="The SASL username (16 uppercase alphanumerics)"
    )
    description = models.CharField(max_length=200, blank=True)
    # brokerd/credentials.py's per-user entry: {"SCRAM-SHA-256": {...}, "SCRAM-SHA-512": {...}}.
    verifier = models.JSONField(editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(
        null=True, blank=True, help_text="Latest request seen by the brokers (reported with their metrics)"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Security issue: key lifecycle. The brokers refuse the key from expires_at on (the credentials
    # file carries it) and the control plane drops it from that file once it passed.
    expires_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rotated_to",
        help_text="The key this one replaced (POST .../rotate)",
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["cluster"], condition=Q(revoked_at__isnull=True), name="apikey_active_per_cluster"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} on {self.cluster.public_id}"

    @property
    def is_expired(self) -> bool:
        from django.utils import timezone

        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
