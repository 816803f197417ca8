"""Broker-side schema validation on a real brokerd: the ids come from the broker's own `_schemas`
log (written here in Confluent's record layout, as the platform's registry writes it), records are
checked by their first five bytes, and refusals are INVALID_RECORD naming the reason."""

from __future__ import annotations

import json
import struct

import pytest
from brokerd_wire import Wire, make_batch
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from test_brokerd_wire import produce_one

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

STRATEGY = "io.confluent.kafka.serializers.subject."
ORDER = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                    "fields": [{"name": "id", "type": "string"}]})
REFUND = json.dumps({"type": "record", "name": "Refund", "namespace": "shop",
                     "fields": [{"name": "id", "type": "string"}]})


def framed(schema_id: int, body: bytes = b"\x06o-1") -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


def register(producer: Producer, subject: str, version: int, schema_id: int, schema: str) -> None:
    key = {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
    value = {"subject": subject, "version": version, "id": schema_id, "schema": schema, "deleted": False}
    producer.produce("_schemas", key=json.dumps(key).encode(), value=json.dumps(value).encode())
    assert producer.flush(10) == 0


def outcome(producer: Producer, topic: str, *, key: bytes | None = None, value: bytes | None) -> int:
    """The produce's error code (0: accepted)."""
    errors: list = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    return 0 if errors[0] is None else errors[0].code()


def test_ids_strategies_catch_up_and_configs(broker_factory) -> None:
    broker = broker_factory()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = [
        NewTopic("_schemas", 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic("orders", 1, 1, config={"confluent.value.schema.validation": "true"}),
        NewTopic("keyed", 1, 1, config={
            "confluent.key.schema.validation": "true", "cleanup.policy": "compact",
            "confluent.key.subject.name.strategy": STRATEGY + "RecordNameStrategy"}),
        NewTopic("mixed", 1, 1, config={
            "confluent.value.schema.validation": "true",
            "confluent.value.subject.name.strategy": STRATEGY + "TopicRecordNameStrategy"}),
        NewTopic("plain", 1, 1),
    ]
    for future in admin.create_topics(topics).values():
        future.result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0})
    register(producer, "orders-value", 1, 1, ORDER)
    register(producer, "elsewhere-value", 1, 2, REFUND)

    invalid = KafkaError.INVALID_RECORD
    assert outcome(producer, "orders", value=framed(1)) == 0
    assert outcome(producer, "orders", value=b"not framed") == invalid
    assert outcome(producer, "orders", value=framed(77)) == invalid  # unknown id
    assert outcome(producer, "orders", value=framed(2)) == invalid  # registered, another subject
    assert outcome(producer, "orders", value=None) == 0  # a tombstone carries no schema
    assert outcome(producer, "plain", value=b"anything") == 0

    # Registered a moment ago: the broker catches up on `_schemas` before refusing.
    register(producer, "orders-value", 2, 3, ORDER.replace("o-1", "x").replace('"id"', '"ref"'))
    assert outcome(producer, "orders", value=framed(3)) == 0

    # The reasons, per record (Produce v8+ record_errors), and only the failing records.
    with Wire(broker.port) as wire:
        records = [(None, framed(1)), (None, b"\x01abcd"), (None, framed(99)), (None, b"\x00")]
        batch = bytearray(make_batch(records))
        part = produce_one(wire, "orders", 0, batch, version=9)
        assert part.error_code == 87 and part.base_offset == -1
        errors = {e.batch_index: e.batch_index_error_message for e in part.record_errors}
        assert sorted(errors) == [1, 2, 3]
        assert "magic byte 0 and a 4-byte schema id" in errors[1] and "magic byte" in errors[3]
        assert "schema id 99 is not registered" in errors[2]
        part = produce_one(wire, "orders", 0, bytearray(make_batch([(None, framed(2))])), version=9)
        reason = part.record_errors[0].batch_index_error_message
        assert "not registered under subject 'orders-value'" in reason

    # RecordNameStrategy on keys: the subject is the record's full name; a compacted topic
    # still refuses a record without a key, in the same pass.
    register(producer, "shop.Order", 1, 1, ORDER)
    assert outcome(producer, "keyed", key=framed(1), value=b"v") == 0
    assert outcome(producer, "keyed", key=framed(2), value=b"v") == invalid
    assert outcome(producer, "keyed", key=None, value=b"v") == invalid
    # TopicRecordNameStrategy: <topic>-<record full name>.
    assert outcome(producer, "mixed", value=framed(2)) == invalid
    register(producer, "mixed-shop.Refund", 1, 2, REFUND)
    assert outcome(producer, "mixed", value=framed(2)) == 0

    # A soft-deleted subject's ids no longer validate; a fencing-refused record changes nothing.
    register(producer, "orders-value", 3, 1, REFUND)  # id 1 already names another schema
    producer.produce("_schemas", key=json.dumps({"keytype": "DELETE_SUBJECT", "subject": "orders-value",
                                                 "magic": 0}).encode(),
                     value=json.dumps({"subject": "orders-value", "version": 2}).encode())
    producer.flush(10)
    assert outcome(producer, "orders", value=framed(3)) == invalid

    # Turned off later over the Kafka protocol, and described with Confluent's names.
    resource = ConfigResource("topic", "orders", incremental_configs=[
        ConfigEntry("confluent.value.schema.validation", "false",
                    incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(10)
    assert outcome(producer, "orders", value=b"not framed") == 0
    described = admin.describe_configs([ConfigResource("topic", "mixed")])
    configs = next(iter(described.values())).result(10)
    assert configs["confluent.value.subject.name.strategy"].value == STRATEGY + "TopicRecordNameStrategy"
    assert configs["confluent.key.schema.validation"].value == "false"
    bad = ConfigResource("topic", "orders", incremental_configs=[
        ConfigEntry("confluent.value.subject.name.strategy", "ByColour",
                    incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception, match="TopicNameStrategy"):
        admin.incremental_alter_configs([bad])[bad].result(10)
