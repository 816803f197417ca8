"""Values in the wire format read back through the cluster's registry (the message browser's
decoding): Avro, JSON Schema and Protobuf (a nested message chosen by its message indexes)."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest
from google.protobuf import descriptor_pool, message_factory

from schemaregistry import decoding, selectors
from schemaregistry.formats.protobuf import _check_in_pool

pytestmark = pytest.mark.django_db

PROTO = """syntax = "proto3";
package shop;
message Order {
  string id = 1;
  int64 cents = 2;
  message Line { string sku = 1; int32 qty = 2; }
}
"""


def framed(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def test_avro_json_and_protobuf_values_decode(running):
    registry = running.registry
    avro = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}
    avro_id = registry.register("a-value", json.dumps(avro))
    json_id = registry.register("j-value", json.dumps({"type": "object", "title": "Order"}), "JSON")
    proto_id = registry.register("p-value", PROTO, "PROTOBUF")
    cluster = running.cluster

    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(avro), {"id": "o-1"})
    state = selectors.registry_state(cluster=cluster)
    parsed = selectors.parse_stored(state, state.by_id(proto_id)[0])
    pool = descriptor_pool.DescriptorPool()
    _check_in_pool(pool, [], parsed.parsed["file"])
    line = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order.Line"))(sku="s-9", qty=3)
    order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))(id="o-3", cents=7)

    values = [
        framed(avro_id, buffer.getvalue()),
        framed(json_id, b'{"id": "o-2"}'),
        framed(proto_id, b"\x00" + order.SerializeToString()),  # indexes [0]: the first message
        framed(proto_id, b"\x04\x00\x00" + line.SerializeToString()),  # indexes [0, 0]: Order.Line
        framed(9999, b"x"),  # unknown id: shown as bytes
        b"plain",
        None,
        framed(avro_id, b"\xff"),  # does not match its schema
    ]
    got = decoding.decode_all(cluster=cluster, values=values)
    assert (got[0].schema_type, got[0].schema_id, got[0].subject) == ("AVRO", avro_id, "a-value")
    assert json.loads(got[0].text) == {"id": "o-1"}
    assert json.loads(got[1].text) == {"id": "o-2"} and got[1].schema_type == "JSON"
    assert json.loads(got[2].text) == {"id": "o-3", "cents": "7"} and got[2].subject == "p-value"
    assert json.loads(got[3].text) == {"sku": "s-9", "qty": 3}
    assert got[4:7] == [None, None, None]
    assert not got[7].ok and "cannot read the record" in got[7].text
