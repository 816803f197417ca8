from rest_framework import serializers

from transactions.wire import MAX_PARTITION, MAX_PRODUCER_ID


class TransactionPartitionsSerializer(serializers.Serializer):
    topic = serializers.CharField()
    partitions = serializers.ListField(child=serializers.IntegerField())


class TransactionSerializer(serializers.Serializer):
    transactional_id = serializers.CharField()
    producer_id = serializers.IntegerField()
    producer_epoch = serializers.IntegerField()
    state = serializers.CharField(
        help_text="Kafka's transaction state: Ongoing, PrepareCommit or PrepareAbort"
    )
    started_at = serializers.DateTimeField(help_text="When the transaction added its first partition")
    age_ms = serializers.IntegerField(help_text="How long the transaction has been open")
    timeout_ms = serializers.IntegerField(
        help_text="The producer's transaction timeout: the coordinator "
        "aborts the transaction once it is open this long"
    )
    partitions = TransactionPartitionsSerializer(many=True)


class AbortSerializer(serializers.Serializer):
    topic = serializers.CharField(max_length=249)
    partition = serializers.IntegerField(min_value=0, max_value=MAX_PARTITION)
    producer_id = serializers.IntegerField(min_value=0, max_value=MAX_PRODUCER_ID)


class AbortResultSerializer(serializers.Serializer):
    topic = serializers.CharField()
    partition = serializers.IntegerField()
    producer_id = serializers.IntegerField()
    producer_epoch = serializers.IntegerField()
    first_offset = serializers.IntegerField(
        help_text="The aborted transaction's first offset on the partition"
    )
