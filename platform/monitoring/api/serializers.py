from rest_framework import serializers

from monitoring.models import AlertRule, ChannelKind, Notification, NotificationChannel, RuleKind


class ChannelSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "emails", "url", "created_at", "updated_at"]
        read_only_fields = fields


class ChannelCreatedSerializer(ChannelSerializer):
    secret = serializers.CharField(
        allow_null=True,
        help_text="Webhook channels: the signing secret. It is shown only here (and when rotated).",
    )

    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class ChannelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    emails = serializers.ListField(
        child=serializers.CharField(max_length=254),
        required=False,
        help_text="E-mail channels: the recipients",
    )
    url = serializers.CharField(
        max_length=500,
        required=False,
        help_text="Webhook channels: an http(s) URL that receives a signed POST",
    )


class ChannelUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False)
    emails = serializers.ListField(child=serializers.CharField(max_length=254), required=False)
    url = serializers.CharField(max_length=500, required=False)


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret (shown only here)")


class NotificationSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    rule = serializers.CharField(source="rule.public_id", allow_null=True, default=None)
    channel = serializers.CharField(source="channel.public_id")

    class Meta:
        model = Notification
        fields = [
            "id", "rule", "channel", "event", "transition", "status", "attempts", "last_error",
            "payload", "created_at", "sent_at",
        ]  # fmt: skip
        read_only_fields = fields


class RuleSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    cluster = serializers.CharField(source="cluster.public_id", allow_null=True, default=None)
    channels = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id", "name", "kind", "cluster", "threshold", "group_id", "enabled", "channels",
            "state", "value", "detail", "last_error", "state_changed_at", "last_evaluated_at",
            "last_notified_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_channels(self, rule) -> list[str]:
        return [c.public_id for c in rule.channels.all()]


class RuleCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(
        choices=RuleKind.choices,
        help_text="consumer_lag (records), under_replicated_partitions (partitions), produce_throttling "
        "(throttle seconds per second), storage (GB stored), spend (percent of the spend cap)",
    )
    cluster = serializers.CharField(
        required=False, allow_null=True, help_text="The watched cluster (lkc-…); not for spend rules"
    )
    threshold = serializers.DecimalField(
        max_digits=24, decimal_places=6, help_text="The rule fires while its value is above this"
    )
    group_id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text="consumer_lag: only this group"
    )
    channels = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Channel ids (nch-…) to notify"
    )
    enabled = serializers.BooleanField(default=True)


class RuleUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False)
    threshold = serializers.DecimalField(max_digits=24, decimal_places=6, required=False)
    group_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
    channels = serializers.ListField(child=serializers.CharField(), required=False)
    enabled = serializers.BooleanField(required=False)


class NotificationFilterSerializer(serializers.Serializer):
    rule = serializers.CharField(required=False, help_text="Only this rule's notifications (alr-…)")
    channel = serializers.CharField(required=False, help_text="Only this channel's notifications (nch-…)")
