from rest_framework import serializers

from clusters.models import Cluster
from clusters.plans import PLANS


class PlanPricesSerializer(serializers.Serializer):
    """The plan's price book entry in effect today (metering.models.PriceBook; docs/billing.md)."""

    currency = serializers.CharField()
    effective_from = serializers.DateField()
    base_per_hour = serializers.DecimalField(
        max_digits=16, decimal_places=8, help_text="USD per cluster-hour"
    )
    per_gb_in = serializers.DecimalField(max_digits=16, decimal_places=8, help_text="USD per GB produced")
    per_gb_out = serializers.DecimalField(max_digits=16, decimal_places=8, help_text="USD per GB fetched")
    per_gb_month_stored = serializers.DecimalField(
        max_digits=16, decimal_places=8, help_text="USD per GB-month stored"
    )
    per_partition_hour = serializers.DecimalField(
        max_digits=16, decimal_places=8, help_text="USD per partition-hour"
    )


class PlanSerializer(serializers.Serializer):
    name = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    brokers = serializers.IntegerField()
    max_partitions = serializers.IntegerField()
    ingress_mbps = serializers.IntegerField(help_text="Produce throughput limit, MB/s")
    egress_mbps = serializers.IntegerField(help_text="Fetch throughput limit, MB/s")
    max_retention_ms = serializers.IntegerField(
        help_text="Longest retention.ms a topic may set; -1 is unlimited"
    )
    max_api_keys = serializers.IntegerField()
    max_connections = serializers.IntegerField()
    max_message_bytes = serializers.IntegerField()
    prices = PlanPricesSerializer()


class ClusterSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    degraded = serializers.SerializerMethodField(
        help_text="RUNNING, but a host serving one of its brokers stopped reporting: the brokers may "
        "still serve clients, but are not supervised until the host is back"
    )

    class Meta:
        model = Cluster
        fields = [
            "id",
            "name",
            "plan",
            "status",
            "status_reason",
            "degraded",
            "bootstrap_servers",
            "security_protocol",
            "sasl_mechanisms",
            "created_at",
            "updated_at",
            "status_changed_at",
        ]
        read_only_fields = fields

    def get_degraded(self, obj: Cluster) -> bool:
        annotated = getattr(obj, "degraded", None)  # provisioning.health.annotate_degraded (lists)
        if annotated is not None:
            return bool(annotated)
        from provisioning.health import is_degraded

        return is_degraded(obj)


class ClusterCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    plan = serializers.ChoiceField(choices=list(PLANS))
    security_protocol = serializers.ChoiceField(
        choices=["SASL_SSL", "SASL_PLAINTEXT"],
        default="SASL_SSL",
        help_text="SASL_SSL (TLS, the default) or SASL_PLAINTEXT (unencrypted: an explicit opt-in). "
        "Fixed at creation.",
    )


class ClusterUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
