from rest_framework import serializers

from consumergroups.services import RESET_TARGETS


class ConsumerGroupSummarySerializer(serializers.Serializer):
    group_id = serializers.CharField()
    state = serializers.CharField(
        help_text="Kafka's group state: Stable, Empty, PreparingRebalance, CompletingRebalance, Dead"
    )
    type = serializers.CharField(help_text="classic (or consumer for KIP-848 groups)")
    simple = serializers.BooleanField(help_text="True for a group that only commits offsets (no members)")


class CoordinatorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    host = serializers.CharField()
    port = serializers.IntegerField()


class MemberAssignmentSerializer(serializers.Serializer):
    topic = serializers.CharField()
    partitions = serializers.ListField(child=serializers.IntegerField())


class ConsumerGroupMemberSerializer(serializers.Serializer):
    member_id = serializers.CharField()
    client_id = serializers.CharField()
    host = serializers.CharField(help_text="The member's address as the broker sees it")
    group_instance_id = serializers.CharField(allow_null=True, help_text="Static membership id, if any")
    assignments = MemberAssignmentSerializer(many=True)
    member_epoch = serializers.IntegerField(
        allow_null=True,
        help_text="Consumer protocol: the member's epoch; it reaches the group's assignment epoch once the "
        "member runs its target assignment (null for classic groups)",
    )
    target_assignments = MemberAssignmentSerializer(
        many=True,
        allow_null=True,
        help_text="Consumer protocol: the partitions the coordinator is moving this member to "
        "(null for classic groups)",
    )
    protocol = serializers.CharField(
        help_text="The member's rebalance protocol: consumer, or classic (a classic consumer, also one "
        "inside a consumer-protocol group while the group migrates between protocols)",
    )


class ConsumerGroupOffsetSerializer(serializers.Serializer):
    topic = serializers.CharField()
    partition = serializers.IntegerField()
    committed_offset = serializers.IntegerField(allow_null=True, help_text="null: nothing committed yet")
    latest_offset = serializers.IntegerField(allow_null=True, help_text="The next offset to be written")
    lag = serializers.IntegerField(allow_null=True, help_text="latest_offset - committed_offset")
    member_id = serializers.CharField(allow_null=True, help_text="The member the partition is assigned to")
    client_id = serializers.CharField(allow_null=True)
    metadata = serializers.CharField(allow_null=True, help_text="Metadata committed with the offset")


class ConsumerGroupSerializer(serializers.Serializer):
    group_id = serializers.CharField()
    state = serializers.CharField()
    type = serializers.CharField()
    protocol = serializers.CharField(
        help_text="classic (JoinGroup/SyncGroup) or consumer (group.protocol=consumer: the broker assigns)"
    )
    group_epoch = serializers.IntegerField(
        allow_null=True, help_text="Consumer protocol: bumped by every membership or subscription change"
    )
    assignment_epoch = serializers.IntegerField(
        allow_null=True, help_text="Consumer protocol: the group epoch the target assignment was computed at"
    )
    simple = serializers.BooleanField()
    partition_assignor = serializers.CharField(allow_null=True)
    coordinator = CoordinatorSerializer(allow_null=True)
    members = ConsumerGroupMemberSerializer(many=True)
    offsets = ConsumerGroupOffsetSerializer(many=True)
    total_lag = serializers.IntegerField()


class ResetOffsetsSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=list(RESET_TARGETS))
    value = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="For `timestamp`: ms since the epoch or ISO 8601; for `offset`: the offset",
    )
    topic = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Only this topic (default: every topic the group committed)",
    )
    partitions = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        required=False,
        allow_null=True,
        allow_empty=False,
        help_text="Only these partitions of `topic` (default: all)",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Only show the offsets that would be set")

    def validate(self, attrs):
        if attrs["to"] in ("timestamp", "offset") and attrs.get("value") in (None, ""):
            raise serializers.ValidationError({"value": [f"Required when resetting to {attrs['to']}."]})
        return attrs


class ResetOffsetRowSerializer(serializers.Serializer):
    topic = serializers.CharField()
    partition = serializers.IntegerField()
    previous_offset = serializers.IntegerField(allow_null=True)
    new_offset = serializers.IntegerField()


class ResetOffsetsResultSerializer(serializers.Serializer):
    group_id = serializers.CharField()
    dry_run = serializers.BooleanField()
    to = serializers.CharField()
    offsets = ResetOffsetRowSerializer(many=True)
