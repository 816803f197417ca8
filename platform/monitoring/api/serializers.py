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


class ClientMetricSerializer(serializers.Serializer):
    name = serializers.CharField(
        help_text="The metric's OpenTelemetry name, e.g. org.apache.kafka.producer.node.request.latency.avg"
    )
    attributes = serializers.DictField(child=serializers.CharField(), help_text="e.g. node.id")
    value = serializers.FloatField(help_text="The latest value pushed")
    points = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="Recent [time ms, value] pairs, oldest first",
    )


class ClientSerializer(serializers.Serializer):
    client_instance_id = serializers.CharField(help_text="The id the broker gave this client instance")
    client_id = serializers.CharField()
    software_name = serializers.CharField(help_text="e.g. confluent-kafka-python")
    software_version = serializers.CharField()
    source_address = serializers.CharField()
    principal = serializers.CharField(help_text="The API key the client authenticated with")
    active = serializers.BooleanField(help_text="Pushed within three of its push intervals and not closed")
    push_interval_ms = serializers.IntegerField()
    last_push_ms = serializers.IntegerField(allow_null=True)
    pushes = serializers.IntegerField()
    request_latency_ms = serializers.FloatField(allow_null=True, help_text="Mean request latency it reports")
    produce_throttle_ms = serializers.FloatField(allow_null=True)
    record_queue_ms = serializers.FloatField(
        allow_null=True, help_text="Producers: time records wait to be sent"
    )
    fetch_latency_ms = serializers.FloatField(allow_null=True)
    assigned_partitions = serializers.FloatField(allow_null=True, help_text="Consumers: partitions assigned")
    commit_latency_ms = serializers.FloatField(allow_null=True)
    metrics = ClientMetricSerializer(many=True)


class ClientMetricsSubscriptionSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    metrics = serializers.ListField(
        child=serializers.CharField(),
        help_text="Metric name prefixes the matching clients push (* for every metric; empty for none)",
    )
    interval_ms = serializers.IntegerField(
        min_value=100, max_value=3_600_000, default=300_000, help_text="How often matching clients push"
    )
    match = serializers.ListField(
        child=serializers.RegexField(
            r"^(client_instance_id|client_id|client_software_name|"
            r"client_software_version|client_source_address|client_source_port)=.+$"
        ),
        default=list,
        help_text="selector=regex pairs (RE2) a client must all match, e.g. client_id=billing-.*; "
        "empty: every client",
    )
