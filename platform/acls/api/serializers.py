from rest_framework import serializers

from acls.bindings import OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES

PRINCIPAL_HELP = (
    "An API key of this cluster (KEY or User:KEY), a service account (sa-…: its keys' principals), "
    "or User:* (every key)"
)


class AclSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Stable id of the binding (a digest of its fields)")
    resource_type = serializers.ChoiceField(choices=list(RESOURCE_TYPES))
    resource_name = serializers.CharField()
    pattern_type = serializers.ChoiceField(choices=list(PATTERN_TYPES))
    principal = serializers.CharField(help_text="The Kafka principal, User:<key>")
    host = serializers.CharField()
    operation = serializers.ChoiceField(choices=list(OPERATIONS))
    permission = serializers.ChoiceField(choices=list(PERMISSIONS))
    api_key = serializers.CharField(allow_null=True, help_text="The API key behind the principal, if any")
    service_account = serializers.CharField(allow_null=True, help_text="The key's service account, if any")
    managed = serializers.BooleanField(
        help_text="Kept by Kastle (a key's scope or a service account's binding): restored if deleted"
    )


class AclCreateSerializer(serializers.Serializer):
    """Validated by the service (400 naming the field); the serializer documents the body."""

    resource_type = serializers.ChoiceField(choices=list(RESOURCE_TYPES))
    resource_name = serializers.CharField(help_text="A name, a prefix, * (LITERAL) or kafka-cluster")
    pattern_type = serializers.ChoiceField(choices=list(PATTERN_TYPES), default="LITERAL")
    principal = serializers.CharField(help_text=PRINCIPAL_HELP)
    host = serializers.CharField(default="*")
    operation = serializers.ChoiceField(choices=list(OPERATIONS))
    permission = serializers.ChoiceField(choices=list(PERMISSIONS), default="ALLOW")


class AclDeleteResultSerializer(serializers.Serializer):
    deleted = AclSerializer(many=True)
