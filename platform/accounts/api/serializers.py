from rest_framework import serializers

from accounts.models import ApiToken, AuditEvent, Invitation, Membership, Organization, Role, User


class OrganizationSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = Organization
        fields = ["id", "name", "created_at"]
        read_only_fields = ["created_at"]


class OrganizationUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class UserSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = User
        fields = ["id", "email"]


class SignupSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    organization = serializers.CharField(max_length=100)


class SignupResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    organization = OrganizationSerializer()
    user = UserSerializer()


class TokenCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    organization = serializers.CharField(
        max_length=16, required=False, help_text="Organization id, if the user belongs to several"
    )


class TokenSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(help_text="Shown only in this response")
    organization = serializers.CharField(source="organization.public_id")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token", "organization"]


class MemberSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="user.public_id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]
        read_only_fields = ["created_at"]


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MeSerializer(serializers.Serializer):
    user = UserSerializer()
    organization = OrganizationSerializer()
    role = serializers.ChoiceField(choices=Role.choices)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")
    target = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "action", "target", "source_ip", "details"]

    def get_target(self, obj: AuditEvent) -> dict[str, str]:
        return {"type": obj.target_type, "id": obj.target_id, "label": obj.target_label}


class AuditEventFilterSerializer(serializers.Serializer):
    action = serializers.CharField(
        required=False,
        max_length=64,
        help_text="An action (cluster.create) or a prefix ending in a dot (cluster.)",
    )
    actor = serializers.CharField(required=False, max_length=254, help_text="The actor's email, or system")
    target_type = serializers.CharField(required=False, max_length=32)
    target_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class PasswordChangeSerializer(serializers.Serializer):
    current_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    new_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)


class InvitationSerializer(serializers.ModelSerializer):
    email = serializers.CharField(read_only=True, help_text="Who it is for (a note; may be empty)")
    created_by = serializers.EmailField(
        source="created_by.email", read_only=True, allow_null=True, default=None, help_text="Who created it"
    )

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "created_by", "created_at", "expires_at"]
        read_only_fields = fields


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(
        required=False, allow_blank=True, default="", help_text="A note of who the link is for (optional)"
    )
    role = serializers.ChoiceField(
        choices=Role.choices, default=Role.MEMBER, help_text="At most your own role"
    )


class InvitationCreatedSerializer(InvitationSerializer):
    token = serializers.CharField(help_text="Shown only in this response; only its digest is stored")
    link = serializers.URLField(help_text="The portal page where the invited person joins (works once)")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token", "link"]
        read_only_fields = fields


class InvitationAcceptSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200, help_text="The token of the invitation link")


class InvitationAcceptedSerializer(serializers.Serializer):
    organization = OrganizationSerializer()
    role = serializers.ChoiceField(choices=Role.choices)
