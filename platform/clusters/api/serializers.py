from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clusters import selectors
from clusters.models import Cluster
from clusters.names import MAX_LENGTH, RULE, name_problem
from clusters.plans import PLANS


class HealthSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["healthy", "degraded", "unknown"])
    brokers = serializers.IntegerField()
    brokers_online = serializers.IntegerField(help_text="Brokers registered in the cluster and serving")
    partitions = serializers.IntegerField()
    under_replicated_partitions = serializers.IntegerField(
        help_text="Partitions with fewer in-sync replicas than replicas"
    )
    offline_partitions = serializers.IntegerField(help_text="Partitions without a leader")
    under_min_isr_partitions = serializers.IntegerField(
        help_text="Partitions with fewer in-sync replicas than min.insync.replicas (acks=all refused)"
    )
    summary = serializers.CharField(help_text="The same in plain words")


class BrokerSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    host = serializers.CharField(allow_null=True)
    rack = serializers.CharField(allow_null=True, help_text="The broker's rack: its host")
    address = serializers.CharField(allow_null=True, help_text="HOST:PORT clients connect to")
    status = serializers.ChoiceField(choices=["online", "offline"])
    partitions_led = serializers.IntegerField()


class ClusterSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    brokers = serializers.IntegerField(source="broker_count", read_only=True)
    health = serializers.SerializerMethodField(
        help_text="RUNNING clusters, in a single cluster's GET: partitions in trouble (lists leave it null)"
    )
    degraded = serializers.SerializerMethodField(
        help_text="RUNNING, but a host serving one of its brokers stopped reporting: the brokers may "
        "still serve clients, but are not supervised until the host is back"
    )
    restart = serializers.SerializerMethodField(
        help_text="The latest rolling restart (POST /clusters/{id}/restart), null if none: state "
        "(running, done, failed), brokers (node ids in order), restarted (those done), current (the one "
        "restarting now), steps (seconds each broker took to stop, start and be back in full ISR), "
        "started_at, finished_at, error"
    )
    degraded_reason = serializers.SerializerMethodField(
        help_text="Why the cluster is not fully healthy, in plain words (empty when it is): a host that "
        "stopped reporting, brokers being replaced on other hosts and copying their partitions, or "
        "partitions short of in-sync replicas"
    )
    replacement = serializers.SerializerMethodField(
        help_text="Brokers of a lost host started again on other hosts, null if none: state (waiting for "
        "the host, replacing: copying partitions from the other replicas, blocked: no host has room, "
        "done), brokers (node ids), moves ({node id: {from, to}}), reason, in_sync_seconds"
    )
    scale = serializers.SerializerMethodField(
        help_text="The latest growth (POST /clusters/{id}/brokers), null if none: state (starting: new "
        "brokers starting, reassigning: replicas moving over, a few partitions at a time, done, failed), "
        "from and to (broker counts), partitions (to move), moved, moving (now), started_at, finished_at, "
        "error"
    )
    schema_registry_url = serializers.SerializerMethodField(
        help_text="The cluster's Confluent-compatible Schema Registry: clients set schema.registry.url to "
        "it and authenticate with an API key (basic.auth.user.info=KEY:SECRET). Null until the cluster is "
        "RUNNING."
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
            "degraded_reason",
            "placement_warning",
            "brokers",
            "health",
            "restart",
            "replacement",
            "scale",
            "bootstrap_servers",
            "security_protocol",
            "sasl_mechanisms",
            "schema_registry_url",
            "created_at",
            "updated_at",
            "status_changed_at",
        ]
        read_only_fields = fields

    @extend_schema_field(HealthSerializer(allow_null=True))
    def get_health(self, obj: Cluster) -> dict | None:
        if not self.context.get("with_health"):
            return None
        health = selectors.cluster_health(cluster=obj)
        return HealthSerializer(health).data if health is not None else None

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_restart(self, obj: Cluster) -> dict | None:
        return obj.restart or None

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_replacement(self, obj: Cluster) -> dict | None:
        return obj.replacement or None

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_scale(self, obj: Cluster) -> dict | None:
        scale = dict(obj.scale or {})
        if not scale:
            return None
        scale["moving"] = len(scale.get("moving", []))
        scale.pop("plan", None)  # every partition's target: too much for the tenant's view
        for internal in ("stepped_at", "told_at", "throttled"):
            scale.pop(internal, None)
        return scale

    def get_degraded_reason(self, obj: Cluster) -> str:
        if obj.status != "RUNNING":
            return ""
        health = selectors.cluster_health(cluster=obj) if self.context.get("with_health") else None
        return selectors.degraded_reason(obj, health)

    def get_schema_registry_url(self, obj: Cluster) -> str | None:
        return selectors.schema_registry_url(obj, self.context.get("request"))

    def get_degraded(self, obj: Cluster) -> bool:
        annotated = getattr(obj, "degraded", None)  # selectors.annotate_degraded (lists)
        if annotated is not None:
            return bool(annotated)
        return selectors.is_degraded(obj)


def _validate_cluster_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    return value


class ClusterCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=MAX_LENGTH, help_text=RULE)
    plan = serializers.ChoiceField(choices=list(PLANS))
    brokers = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="How many brokers (Dedicated: 3 to 12); other plans run their plan's count",
    )
    security_protocol = serializers.ChoiceField(
        choices=["SASL_SSL", "SASL_PLAINTEXT"],
        default="SASL_SSL",
        help_text="SASL_SSL (TLS, the default) or SASL_PLAINTEXT (unencrypted: an explicit opt-in). "
        "Fixed at creation.",
    )

    def validate_name(self, value: str) -> str:
        return _validate_cluster_name(value)


class ClusterScaleSerializer(serializers.Serializer):
    count = serializers.IntegerField(
        min_value=1, help_text="The broker count to grow to: more than now, at most the plan's maximum"
    )


class ClusterUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=MAX_LENGTH, help_text=RULE)

    def validate_name(self, value: str) -> str:
        return _validate_cluster_name(value)
