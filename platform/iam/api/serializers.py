from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from iam.models import ApiKey, ScopeAccess, ServiceAccount


class OwnerSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["user", "service_account"])
    id = serializers.CharField(help_text="The user's id (usr-…) or the service account's id (sa-…)")


class ScopeSerializer(serializers.Serializer):
    topic_prefix = serializers.RegexField(
        r"^[a-zA-Z0-9._-]+$",
        max_length=249,
        help_text="Topics (and consumer groups, transactional ids) whose names start with this",
    )
    access = serializers.ChoiceField(
        choices=ScopeAccess.choices,
        help_text="produce: write+describe; consume: read+describe, groups with the prefix; full: all of it "
        "plus creating topics under the prefix",
    )


def owner_of(obj: ApiKey) -> dict | None:
    if obj.service_account_id is not None:
        return {"type": "service_account", "id": obj.service_account.public_id}
    if obj.created_by_id is not None:
        return {"type": "user", "id": obj.created_by.public_id}
    return None


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
            "owner",
            "scope",
        ]
        read_only_fields = fields

    owner = serializers.SerializerMethodField()
    scope = serializers.SerializerMethodField()

    def get_created_by(self, obj: ApiKey) -> str | None:
        return obj.created_by.email if obj.created_by else None

    @extend_schema_field(OwnerSerializer(allow_null=True))
    def get_owner(self, obj: ApiKey) -> dict | None:
        return owner_of(obj)

    @extend_schema_field(ScopeSerializer(allow_null=True))
    def get_scope(self, obj: ApiKey) -> dict | None:
        return obj.scope

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
    owner = OwnerSerializer(
        required=False, allow_null=True, default=None, help_text="Who owns the key (default: you)"
    )
    scope = ScopeSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="Restrict the key to topics with a prefix; omit for full access to the cluster",
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
    owner = OwnerSerializer(allow_null=True)
    scope = ScopeSerializer(allow_null=True)


class ApiKeyRotatedSerializer(ApiKeyCreatedSerializer):
    rotated_from = serializers.CharField(help_text="The old key")
    rotated_from_expires_at = serializers.DateTimeField(help_text="When the old key stops working")


class ServiceAccountSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    api_keys = serializers.SerializerMethodField(help_text="Its live API keys, on any cluster")

    class Meta:
        model = ServiceAccount
        fields = ["id", "name", "description", "created_at", "updated_at", "api_keys"]
        read_only_fields = fields

    def get_api_keys(self, obj: ServiceAccount) -> list[str]:
        return [k.key for k in obj.api_keys.all() if k.is_active]


class ServiceAccountWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class ServiceAccountUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
