"""Provisioning state: port leases (unique per host, enforced by the database) and operation leases.

The cluster's desired state lives on `clusters.Cluster` (its status) and `clusters.Broker`
(placement); this app keeps what the machinery needs to converge the machines to it.
"""

from __future__ import annotations

from django.db import models

from clusters.models import Broker, Cluster, Host


class PortPurpose(models.TextChoices):
    CLIENT = "client", "Kafka listener"
    ADMIN = "admin", "Admin HTTP listener (/healthz, /metrics)"


class PortLease(models.Model):
    """A port on a host held by one broker. (host, port) is unique: no two listeners share a port."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="port_leases")
    port = models.PositiveIntegerField()
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="port_leases")
    purpose = models.CharField(max_length=8, choices=PortPurpose.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host_id", "port"]
        constraints = [
            models.UniqueConstraint(fields=["host", "port"], name="portlease_unique_port_per_host"),
            models.UniqueConstraint(fields=["broker", "purpose"], name="portlease_one_per_purpose"),
        ]

    def __str__(self) -> str:
        return f"{self.host.name}:{self.port} ({self.purpose}) -> broker {self.broker_id}"


class OperationKind(models.TextChoices):
    PROVISION = "provision", "Provision"
    DEPROVISION = "deprovision", "Deprovision"


class ClusterOperation(models.Model):
    """Who is driving a cluster's PROVISIONING or DELETING, and until when (a lease).

    A lifecycle task takes the lease (its owner token) and renews it while it works. When a
    worker dies mid-task its lease expires, and reconciliation drives the cluster again
    (at most `MAX_REDRIVES` times) or marks it FAILED. Celery redelivery is not relied on.
    """

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="operation")
    kind = models.CharField(max_length=16, choices=OperationKind.choices)
    owner = models.CharField(max_length=64, blank=True, help_text="Token of the task holding the lease")
    lease_until = models.DateTimeField(null=True, blank=True)
    redrives = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.kind} of cluster {self.cluster_id} by {self.owner or '-'} until {self.lease_until}"
