from rest_framework import serializers

from clusters import selectors
from clusters.models import Cluster
from clusters.names import MAX_LENGTH, RULE, name_problem
from clusters.plans import PLANS


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
    security_protocol = serializers.ChoiceField(
        choices=["SASL_SSL", "SASL_PLAINTEXT"],
        default="SASL_SSL",
        help_text="SASL_SSL (TLS, the default) or SASL_PLAINTEXT (unencrypted: an explicit opt-in). "
        "Fixed at creation.",
    )


    def validate_name(self, value: str) -> str:
        return _validate_cluster_name(value)


class ClusterUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=MAX_LENGTH, help_text=RULE)

    def validate_name(self, value: str) -> str:
        return _validate_cluster_name(value)
