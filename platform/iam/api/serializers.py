from rest_framework import serializers

from iam.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    cluster = serializers.CharField(source="cluster.public_id", read_only=True)
    created_by = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField(help_text="ACTIVE, or EXPIRED once expires_at has passed")
    rotated_from = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "key",
            "description",
            "cluster",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "status",
            "rotated_from",
        ]
        read_only_fields = fields

    def get_created_by(self, obj: ApiKey) -> str | None:
        return obj.created_by.email if obj.created_by else None

    def get_status(self, obj: ApiKey) -> str:
        return "EXPIRED" if obj.is_expired else "ACTIVE"


class ApiKeyCreateSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="When the key stops working (ISO 8601, in the future); omit for a key that never expires",
    )


class ApiKeyRotateSerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=30 * 24 * 3600,
        required=False,
        default=3600,
        help_text="How long the old key keeps working beside the new one (default 3600)",
    )


class ApiKeyCreatedSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The SASL username")
    secret = serializers.CharField(help_text="The SASL password. Shown only in this response; store it now.")
    description = serializers.CharField()
    cluster = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class ApiKeyRotatedSerializer(ApiKeyCreatedSerializer):
    rotated_from = serializers.CharField(help_text="The old key")
    rotated_from_expires_at = serializers.DateTimeField(help_text="When the old key stops working")
