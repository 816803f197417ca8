"""Broker-side schema validation with the cluster's real registry: a brokerd provisioned inline, the
registry served by a live web server to confluent-kafka's SchemaRegistryClient and AvroSerializer,
the topic's validation set over REST at creation and turned off over REST later."""

from __future__ import annotations

import json
import struct

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.provisioning_stack import sasl
from tests.platform.api import Tenant
from tests.platform.inline_cluster import SECRET, provision_inline

ORDER = {"type": "record", "name": "Order", "namespace": "shop",
         "fields": [{"name": "id", "type": "string"}, {"name": "cents", "type": "long"}]}


def _outcome(producer: Producer, topic: str, value: bytes) -> int:
    errors: list = []
    producer.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(15) == 0
    return 0 if errors[0] is None else errors[0].code()


@pytest.mark.django_db(transaction=True)
def test_avro_serializer_records_pass_others_are_refused(host_env, live_server):
    from schemaregistry import storage

    tenant = Tenant("owner")
    cluster, key = provision_inline(tenant.organization)
    base = f"/api/v1/clusters/{cluster.public_id}/topics"
    on = {"name": "orders", "configs": {"confluent.value.schema.validation": "true"}}
    made = tenant.client.post(base, on, format="json")
    assert made.status_code == 201, made.content
    refused = tenant.client.post(base, {"name": "other", "configs": {
        "confluent.value.subject.name.strategy": "ByColour"}}, format="json")
    assert refused.status_code == 400 and "TopicNameStrategy" in refused.content.decode()

    registry = SchemaRegistryClient({"url": f"{live_server.url}/schema-registry/{cluster.public_id}",
                                     "basic.auth.user.info": f"{key}:{SECRET}"})
    producer = Producer(sasl(cluster.bootstrap_servers, key, SECRET,
                             **{"linger.ms": 0, "retries": 0, "message.timeout.ms": 10000}))
    try:
        _journey(registry, producer, tenant, base)
    finally:
        registry.__exit__(None, None, None)  # closes its HTTP connections
        storage.forget_all()


def _journey(registry: SchemaRegistryClient, producer: Producer, tenant: Tenant, base: str) -> None:
    context = SerializationContext("orders", MessageField.VALUE)
    invalid = KafkaError.INVALID_RECORD
    assert _outcome(producer, "orders", b'{"id": "o-1"}') == invalid  # no schema id
    assert _outcome(producer, "orders", b"\x00" + struct.pack(">I", 4242) + b"\x06o-1") == invalid

    # The serializer registers the schema on its first record: a moment before the produce.
    serialize = AvroSerializer(registry, json.dumps(ORDER))
    assert _outcome(producer, "orders", serialize({"id": "o-1", "cents": 5}, context)) == 0
    assert [v for v in registry.get_versions("orders-value")] == [1]

    # An id registered for another topic's subject is refused on this one; once registered
    # under this topic's subject too (a new version, registered just now) it passes.
    refund = {**ORDER, "name": "Refund"}
    other_id = registry.register_schema("refunds-value", Schema(json.dumps(refund), "AVRO"))
    framed = b"\x00" + struct.pack(">I", other_id) + b"\x06o-2\x02"
    assert _outcome(producer, "orders", framed) == invalid
    registry.set_compatibility("orders-value", "NONE")
    assert registry.register_schema("orders-value", Schema(json.dumps(refund), "AVRO")) == other_id
    assert _outcome(producer, "orders", framed) == 0

    # Off again over REST: anything goes.
    off = {"configs": {"confluent.value.schema.validation": "false"}}
    changed = tenant.client.patch(f"{base}/orders", off, format="json")
    assert changed.status_code == 200, changed.content
    assert _outcome(producer, "orders", b"plain") == 0
