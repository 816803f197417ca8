"""Cluster API keys: the SASL credentials tenants' Kafka clients use. Only SCRAM verifiers are stored."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Organization
from clusters.models import Cluster
from controlplane.ids import LOWER_ALNUM, random_string


def new_service_account_id() -> str:
    return "sa-" + random_string(8, LOWER_ALNUM)


class ServiceAccount(models.Model):
    """A non-human owner of API keys (an application), organization-wide like Confluent's.

    Its keys authenticate as themselves (principal `User:<key>`); ACLs given to the account are
    kept as desired state (`acls.ServiceAccountBinding`) and applied to each of its keys' principals.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="service_accounts")
    public_id = models.CharField(max_length=16, unique=True, default=new_service_account_id, editable=False)
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="service_account_name_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.name})"


class ScopeAccess(models.TextChoices):
    PRODUCE = "produce"
    CONSUME = "consume"
    FULL = "full"


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
    # key lifecycle. The brokers refuse the key from expires_at on (the credentials
    # file carries it) and the control plane drops it from that file once it passed.
    expires_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rotated_to",
        help_text="The key this one replaced (POST .../rotate)",
    )
    # Security part 2: the owner is a user (created_by) unless a service account owns the key.
    service_account = models.ForeignKey(
        ServiceAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys"
    )
    # A scoped key: ACLs compiled from (topic_prefix, access) by acls.scopes; empty = full access.
    scope_topic_prefix = models.CharField(max_length=249, blank=True)
    scope_access = models.CharField(max_length=10, choices=ScopeAccess.choices, blank=True)

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
    def principal(self) -> str:
        return f"User:{self.key}"

    @property
    def scope(self) -> dict[str, str] | None:
        if not self.scope_access:
            return None
        return {"topic_prefix": self.scope_topic_prefix, "access": self.scope_access}

    @property
    def is_expired(self) -> bool:
        from django.utils import timezone

        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
