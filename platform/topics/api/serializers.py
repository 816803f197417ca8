from confluent_kafka.admin import ConfigSource
from rest_framework import serializers

from controlplane.errors import ValidationFailed
from topics.services import MAX_NAME_LENGTH, MAX_PARTITIONS_PER_REQUEST, validate_name


class TopicSummarySerializer(serializers.Serializer):
    name = serializers.CharField()
    partitions_count = serializers.IntegerField()


class TopicPartitionSerializer(serializers.Serializer):
    partition = serializers.IntegerField()
    leader = serializers.IntegerField(help_text="Node id of the partition's leader")
    replicas = serializers.ListField(child=serializers.IntegerField())
    isr = serializers.ListField(
        child=serializers.IntegerField(), help_text="The replicas in sync with the leader (ISR)"
    )
    earliest_offset = serializers.IntegerField(allow_null=True)
    latest_offset = serializers.IntegerField(allow_null=True, help_text="The next offset to be written")
    size_bytes = serializers.IntegerField(allow_null=True, help_text="Bytes on disk (null if unknown)")


class TopicConfigSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(
        choices=[s.name for s in ConfigSource],
        help_text="Where the value comes from, by Kafka's name: DYNAMIC_TOPIC_CONFIG (set on the topic), "
        "DEFAULT_CONFIG (the default), STATIC_BROKER_CONFIG, DYNAMIC_BROKER_CONFIG, …",
    )
    is_default = serializers.BooleanField()
    read_only = serializers.BooleanField()


class TopicSerializer(serializers.Serializer):
    name = serializers.CharField()
    partitions_count = serializers.IntegerField()
    partitions = TopicPartitionSerializer(many=True)
    records = serializers.IntegerField(help_text="Records retained (latest minus earliest offsets)")
    size_bytes = serializers.IntegerField(allow_null=True, help_text="Bytes on disk (null if unknown)")
    configs = TopicConfigSerializer(many=True)


class TopicCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=MAX_NAME_LENGTH)
    partitions = serializers.IntegerField(min_value=1, max_value=MAX_PARTITIONS_PER_REQUEST, default=1)
    configs = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        default=dict,
        help_text='Topic configs by Kafka name, e.g. {"retention.ms": "86400000"}',
    )

    def validate_name(self, value: str) -> str:
        # The name's rule is checked here too, so that it is reported with the other fields' errors.
        try:
            return validate_name(value)
        except ValidationFailed as exc:
            raise serializers.ValidationError(exc.details["name"]) from exc


class TopicUpdateSerializer(serializers.Serializer):
    partitions = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PARTITIONS_PER_REQUEST,
        required=False,
        help_text="The new partition count (it can only grow)",
    )
    configs = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        required=False,
        help_text="Configs to set; null resets one to the cluster default",
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give partitions and/or configs to change.")
        return attrs
