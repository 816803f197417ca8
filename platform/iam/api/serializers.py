from rest_framework import serializers

from iam.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    cluster = serializers.CharField(source="cluster.public_id", read_only=True)
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ["key", "description", "cluster", "created_by", "created_at", "last_used_at"]
        read_only_fields = fields

    def get_created_by(self, obj: ApiKey) -> str | None:
        return obj.created_by.email if obj.created_by else None


class ApiKeyCreateSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ApiKeyCreatedSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The SASL username")
    secret = serializers.CharField(help_text="The SASL password. Shown only in this response; store it now.")
    description = serializers.CharField()
    cluster = serializers.CharField()
    created_at = serializers.DateTimeField()
