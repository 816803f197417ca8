"""Clusters (the tenant's Kafka), the brokers that serve them, and the hosts brokers run on."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import Organization
from controlplane.ids import new_cluster_id

from .plans import PLAN_CHOICES, get_plan


class ClusterStatus(models.TextChoices):
    PROVISIONING = "PROVISIONING", "Provisioning"
    RUNNING = "RUNNING", "Running"
    FAILED = "FAILED", "Failed"
    DELETING = "DELETING", "Deleting"
    DELETED = "DELETED", "Deleted"


#: The lifecycle state table. Anything not listed is refused (409).
TRANSITIONS: dict[str, frozenset[str]] = {
    ClusterStatus.PROVISIONING: frozenset(
        {ClusterStatus.RUNNING, ClusterStatus.FAILED, ClusterStatus.DELETING}
    ),
    ClusterStatus.RUNNING: frozenset({ClusterStatus.DELETING}),
    ClusterStatus.FAILED: frozenset({ClusterStatus.DELETING, ClusterStatus.PROVISIONING}),
    ClusterStatus.DELETING: frozenset({ClusterStatus.DELETED, ClusterStatus.FAILED}),
    ClusterStatus.DELETED: frozenset(),
}

INTERNAL_USERNAME = "kastle-internal"
DEFAULT_SASL_MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"


class Cluster(models.Model):
    public_id = models.CharField(max_length=16, unique=True, default=new_cluster_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="clusters")
    name = models.CharField(max_length=64)
    plan = models.CharField(max_length=16, choices=PLAN_CHOICES)
    status = models.CharField(
        max_length=16, choices=ClusterStatus.choices, default=ClusterStatus.PROVISIONING
    )
    status_reason = models.TextField(blank=True, help_text="Why the cluster FAILED, in words for the tenant")
    broker_count = models.PositiveSmallIntegerField(
        default=1, help_text="How many brokers serve the cluster (the plan's, or chosen for Dedicated)"
    )
    placement_warning = models.TextField(
        blank=True, help_text="Why the brokers share hosts (less fault tolerance), in words for the tenant"
    )
    bootstrap_servers = models.CharField(max_length=2000, blank=True)
    restart = models.JSONField(
        default=dict,
        blank=True,
        help_text="The latest rolling restart: state (running, done, failed), brokers in order, those "
        "restarted, the one restarting now, an error for the tenant",
    )
    scale = models.JSONField(
        default=dict,
        blank=True,
        help_text="The latest growth of a Dedicated cluster: state (starting, reassigning, done, failed), "
        "broker counts from and to, partitions to move and moved, an error for the tenant",
    )
    replacement = models.JSONField(
        default=dict,
        blank=True,
        help_text="Brokers of a lost host being replaced on other hosts: state (waiting, replacing, "
        "blocked, done), the brokers and hosts, a reason for the tenant",
    )
    schemas = models.PositiveIntegerField(
        default=0, help_text="Live schema versions in the cluster's Schema Registry (metered hourly)"
    )
    security_protocol = models.CharField(max_length=32, default="SASL_PLAINTEXT")
    sasl_mechanisms = models.CharField(max_length=100, default=DEFAULT_SASL_MECHANISMS)
    # The control plane's own admin credential on this cluster. Its password is derived from
    # SECRET_KEY and the public id (never stored); only its SCRAM verifier is kept. Never shown to tenants.
    internal_verifier = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=~Q(status="DELETED"),
                name="cluster_unique_live_name_per_org",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ClusterStatus]), name="cluster_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status"], name="cluster_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id}, {self.status})"

    @property
    def plan_limits(self):
        return get_plan(self.plan)

    def can_transition(self, to: str) -> bool:
        return to in TRANSITIONS[ClusterStatus(self.status)]

    @property
    def internal_username(self) -> str:
        return INTERNAL_USERNAME

    def internal_password(self) -> str:
        """The control plane's admin password for this cluster (HMAC of SECRET_KEY and the public id)."""
        return salted_hmac(
            "kastle.clusters.internal-credential", self.public_id, algorithm="sha256"
        ).hexdigest()

    def ca_bundle(self) -> str | None:
        """The PEM CA bundle a client verifies this cluster's brokers with (SASL_SSL), None before
        its certificate is issued. pki issues it (`pki.models.BrokerCertificate`, one per cluster,
        reached here by its reverse relation so that clusters need not import pki); read fresh
        each time, as a renewal may change it."""
        return Cluster.objects.filter(pk=self.pk).values_list("tls_certificate__ca_pem", flat=True).first()


class Host(models.Model):
    """A machine that runs brokers; its Celery worker consumes the queue `host.<name>`."""

    name = models.CharField(max_length=64, unique=True)
    address = models.CharField(max_length=255, help_text="Advertised address clients connect to")
    port_min = models.PositiveIntegerField()
    port_max = models.PositiveIntegerField()
    capacity = models.PositiveIntegerField(help_text="How many brokers this host may run")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(port_min__lte=models.F("port_max")), name="host_port_range_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.address}:{self.port_min}-{self.port_max})"

    @property
    def queue(self) -> str:
        return f"host.{self.name}"


class BrokerStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    STARTING = "STARTING", "Starting"
    RUNNING = "RUNNING", "Running"
    STOPPED = "STOPPED", "Stopped"
    FAILED = "FAILED", "Failed"


class Broker(models.Model):
    """One brokerd process of a cluster, placed on a host with its ports. Provisioning fills it in."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="brokers")
    node_id = models.PositiveIntegerField()
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="brokers", null=True, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    admin_port = models.PositiveIntegerField(null=True, blank=True)
    data_dir = models.CharField(max_length=500, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=BrokerStatus.choices, default=BrokerStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster_id", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "node_id"], name="broker_unique_node_per_cluster"),
            models.UniqueConstraint(fields=["host", "port"], name="broker_unique_port_per_host"),
            models.UniqueConstraint(fields=["host", "admin_port"], name="broker_unique_admin_port_per_host"),
        ]

    def __str__(self) -> str:
        return f"broker {self.node_id} of {self.cluster.public_id} on {self.host or '-'}:{self.port or '-'}"
