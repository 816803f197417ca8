"""Desired ACLs of service accounts (the brokers hold every ACL; see acls.services)."""

from __future__ import annotations

from django.db import models

from clusters.models import Cluster
from iam.models import ServiceAccount


class ServiceAccountBinding(models.Model):
    """An ACL given to a service account on a cluster.

    Kafka knows principals, not accounts: the binding is applied to `User:<key>` of each of the
    account's live keys on the cluster — when it is created, when a key is issued, and by the
    reconciler — and removed from them when it is deleted or a key is revoked.
    """

    service_account = models.ForeignKey(ServiceAccount, on_delete=models.CASCADE, related_name="bindings")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="service_account_bindings")
    resource_type = models.CharField(max_length=20)
    resource_name = models.CharField(max_length=255)
    pattern_type = models.CharField(max_length=10)
    host = models.CharField(max_length=255, default="*")
    operation = models.CharField(max_length=20)
    permission = models.CharField(max_length=5)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "service_account",
                    "cluster",
                    "resource_type",
                    "resource_name",
                    "pattern_type",
                    "host",
                    "operation",
                    "permission",
                ],
                name="service_account_binding_unique",
            )
        ]

    def __str__(self) -> str:
        what = f"{self.resource_type}:{self.resource_name}"
        return f"{self.service_account.public_id} {self.permission} {self.operation} {what}"
