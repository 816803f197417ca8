"""Confluent's Schema Registry REST API over a real brokerd: state in the cluster's `_schemas` topic.

Each test provisions one cluster inline (no worker) and talks to /schema-registry/<cluster>/ with
HTTP basic auth as the cluster's API keys.
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from iam.services import api_key_revoke
from provisioning import conf, supervisor
from schemaregistry import storage
from sharedkit import kafka_admin
from tests.e2e.provisioning_stack import sasl
from tests.platform.schemaregistry.registry_cluster import SECRET, Registry

pytestmark = pytest.mark.django_db


def compact(schema: dict) -> str:
    """A schema as the registry stores it (compact JSON, keys in the order given)."""
    return json.dumps(schema, separators=(",", ":"))


ORDER_V1 = compact(
    {"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "id", "type": "string"}]}
)
ORDER_V2 = compact(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "id", "type": "string"}, {"name": "note", "type": "string", "default": ""}],
    }
)
ORDER_BAD = compact(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}],
    }
)


def test_subjects_versions_ids_lookup_and_deletes(running):
    r = running.registry
    assert r.ok("GET", "/schemas/types") == ["AVRO", "JSON", "PROTOBUF"]
    assert r.ok("GET", "/subjects") == []
    r.error(404, 40401, "GET", "/subjects/orders-value/versions")

    first = r.register("orders-value", ORDER_V1)
    pretty = json.dumps(json.loads(ORDER_V1), indent=2)  # canonical: compact JSON
    assert r.register("orders-value", pretty) == first  # the same schema again: the same id
    assert r.register("archive-value", ORDER_V1) == first  # another subject shares it
    second = r.register("orders-value", ORDER_V2)
    assert second == first + 1

    assert r.ok("GET", "/subjects") == ["archive-value", "orders-value"]
    assert r.ok("GET", "/subjects", subjectPrefix="orders") == ["orders-value"]
    assert r.ok("GET", "/subjects/orders-value/versions") == [1, 2]
    latest = r.ok("GET", "/subjects/orders-value/versions/latest")
    assert latest == {"subject": "orders-value", "version": 2, "id": second, "schema": ORDER_V2}
    assert r.ok("GET", "/subjects/orders-value/versions/1")["id"] == first
    assert json.loads(r.call("GET", "/subjects/orders-value/versions/1/schema").content) == json.loads(
        ORDER_V1
    )
    r.error(404, 40402, "GET", "/subjects/orders-value/versions/7")
    r.error(422, 42202, "GET", "/subjects/orders-value/versions/zero")

    assert r.ok("GET", f"/schemas/ids/{first}") == {"schema": ORDER_V1}
    assert json.loads(r.call("GET", f"/schemas/ids/{first}/schema").content) == json.loads(ORDER_V1)
    assert r.ok("GET", f"/schemas/ids/{first}/subjects") == ["archive-value", "orders-value"]
    assert r.ok("GET", f"/schemas/ids/{first}/versions") == [
        {"subject": "archive-value", "version": 1},
        {"subject": "orders-value", "version": 1},
    ]
    r.error(404, 40403, "GET", "/schemas/ids/999")

    # Lookup: which version of the subject is this schema?
    found = r.ok("POST", "/subjects/orders-value", {"schema": pretty})
    assert found == {"subject": "orders-value", "version": 1, "id": first, "schema": ORDER_V1}
    r.error(404, 40403, "POST", "/subjects/orders-value", {"schema": '"string"'})
    r.error(404, 40401, "POST", "/subjects/nobody-value", {"schema": ORDER_V1})

    # Invalid schemas: 42201 naming the problem.
    message = r.error(422, 42201, "POST", "/subjects/orders-value/versions", {"schema": '{"type": "recrod"}'})
    assert "recrod" in message
    message = r.error(422, 42201, "POST", "/subjects/x-value/versions", {"schema": "{}", "schemaType": "XML"})
    assert "XML" in message
    bad = r.client.post(
        f"{r.base}/subjects/x-value/versions", data="{not json", content_type="application/json"
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == 400

    # Incompatible: 409 naming the field.
    message = r.error(409, 409, "POST", "/subjects/orders-value/versions", {"schema": ORDER_BAD})
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message and "'qty'" in message

    # Soft delete a version, then the subject; permanent deletes need the soft one first.
    r.error(404, 40407, "DELETE", "/subjects/orders-value/versions/2", permanent=True)
    assert r.ok("DELETE", "/subjects/orders-value/versions/2") == 2
    r.error(404, 40406, "DELETE", "/subjects/orders-value/versions/2")
    assert r.ok("GET", "/subjects/orders-value/versions") == [1]
    assert r.ok("GET", "/subjects/orders-value/versions", deleted=True) == [1, 2]
    assert r.ok("GET", "/subjects/orders-value/versions/2", deleted=True)["id"] == second
    assert r.ok("DELETE", "/subjects/orders-value/versions/2", permanent=True) == 2
    assert r.ok("GET", "/subjects/orders-value/versions", deleted=True) == [1]
    r.error(404, 40405, "DELETE", "/subjects/orders-value", permanent=True)
    assert r.ok("DELETE", "/subjects/orders-value") == [1]
    r.error(404, 40404, "DELETE", "/subjects/orders-value")
    assert r.ok("GET", "/subjects") == ["archive-value"]
    assert r.ok("GET", "/subjects", deleted=True) == ["archive-value", "orders-value"]
    assert r.ok("DELETE", "/subjects/orders-value", permanent=True) == [1]
    assert r.ok("GET", "/subjects", deleted=True) == ["archive-value"]
    # The id stays the schema's: registering it again under a new subject finds it.
    assert r.register("orders-value", ORDER_V1) == first


def test_config_compatibility_endpoint_mode_and_references(running):
    r = running.registry
    assert r.ok("GET", "/config") == {"compatibilityLevel": "BACKWARD"}
    r.error(422, 42203, "PUT", "/config", {"compatibility": "SIDEWAYS"})
    r.register("orders-value", ORDER_V1)
    r.error(404, 40408, "GET", "/config/orders-value")
    assert r.ok("GET", "/config/orders-value", defaultToGlobal=True) == {"compatibilityLevel": "BACKWARD"}

    # The compatibility endpoint, verbose: the message names the field.
    verdict = r.ok(
        "POST", "/compatibility/subjects/orders-value/versions/latest", {"schema": ORDER_BAD}, verbose=True
    )
    assert verdict["is_compatible"] is False and "'qty'" in verdict["messages"][0]
    assert r.ok("POST", "/compatibility/subjects/orders-value/versions/1", {"schema": ORDER_V2}) == {
        "is_compatible": True
    }
    assert r.ok(
        "POST", "/compatibility/subjects/orders-value/versions", {"schema": ORDER_V2}, verbose=True
    ) == {
        "is_compatible": True,
        "messages": [],
    }

    # Per-subject NONE lets the incompatible change in; deleting it restores the global level.
    assert r.ok("PUT", "/config/orders-value", {"compatibility": "NONE"}) == {"compatibility": "NONE"}
    assert r.register("orders-value", ORDER_BAD) > 0
    assert r.ok("DELETE", "/config/orders-value") == {"compatibilityLevel": "NONE"}
    assert r.ok("PUT", "/config", {"compatibility": "FULL_TRANSITIVE"}) == {
        "compatibility": "FULL_TRANSITIVE"
    }
    assert r.ok("GET", "/config/orders-value", defaultToGlobal=True) == {
        "compatibilityLevel": "FULL_TRANSITIVE"
    }
    # FULL_TRANSITIVE: v2 (with qty, no default) could not read data without qty.
    message = r.error(409, 409, "POST", "/subjects/orders-value/versions", {"schema": ORDER_V2})
    assert "old schema reading data of the new one" in message and "'qty'" in message

    # Modes: READONLY refuses writes (42205), IMPORT takes ids from the caller.
    assert r.ok("GET", "/mode") == {"mode": "READWRITE"}
    r.error(422, 42204, "PUT", "/mode", {"mode": "SOMETIMES"})
    assert r.ok("PUT", "/mode/orders-value", {"mode": "READONLY"}) == {"mode": "READONLY"}
    assert "read-only" in r.error(422, 42205, "POST", "/subjects/orders-value/versions", {"schema": ORDER_V2})
    assert r.ok("GET", "/mode/orders-value") == {"mode": "READONLY"}
    assert r.ok("DELETE", "/mode/orders-value") == {"mode": "READONLY"}
    r.error(422, 42205, "PUT", "/mode", {"mode": "IMPORT"})  # subjects exist: needs force
    assert r.ok("PUT", "/mode", {"mode": "IMPORT"}, force=True) == {"mode": "IMPORT"}
    r.error(422, 42205, "POST", "/subjects/imported-value/versions", {"schema": '"string"'})
    assert r.register("imported-value", '"string"', id=100, version=3) == 100
    assert r.ok("GET", "/subjects/imported-value/versions") == [3]
    assert r.ok("PUT", "/mode", {"mode": "READWRITE"}) == {"mode": "READWRITE"}
    r.error(422, 42205, "POST", "/subjects/other-value/versions", {"schema": '"long"', "id": 5})
    assert r.register("other-value", '"long"') == 101  # ids continue after the imported ones

    # References: an Avro type defined in another subject.
    money = compact(
        {
            "type": "record",
            "name": "Money",
            "namespace": "shop",
            "fields": [{"name": "cents", "type": "long"}],
        }
    )
    money_id = r.register("money", money)
    invoice = compact(
        {
            "type": "record",
            "name": "Invoice",
            "namespace": "shop",
            "fields": [{"name": "total", "type": "shop.Money"}],
        }
    )
    refs = [{"name": "shop.Money", "subject": "money", "version": 1}]
    assert "shop.Money" in r.error(
        422, 42201, "POST", "/subjects/invoices-value/versions", {"schema": invoice}
    )
    invoice_id = r.register("invoices-value", invoice, references=refs)
    assert r.ok("GET", f"/schemas/ids/{invoice_id}") == {"schema": invoice, "references": refs}
    assert r.ok("GET", "/subjects/money/versions/1/referencedby") == [invoice_id]
    r.error(422, 42206, "DELETE", "/subjects/money/versions/1")
    assert money_id != invoice_id

    # JSON Schema and Protobuf register too, with their type in the answers.
    json_id = r.register("events-value", '{"type":"object","properties":{"a":{"type":"integer"}}}', "JSON")
    assert r.ok("GET", f"/schemas/ids/{json_id}")["schemaType"] == "JSON"
    proto_id = r.register(
        "calls-value", 'syntax = "proto3";\npackage c;\nmessage Call { string id = 1; }', "PROTOBUF"
    )
    body = r.ok("GET", "/subjects/calls-value/versions/1", format="serialized")
    assert body["id"] == proto_id and body["schemaType"] == "PROTOBUF" and "{" not in body["schema"]


def test_keys_scopes_and_the_topic_is_the_platforms(running, django_user_model):
    r = running.registry
    r.register("orders-value", ORDER_V1)
    # No key, a wrong secret, a key of another cluster: 401 with Confluent's body.
    anonymous = Registry(running.cluster, "NOBODY")
    anonymous.client.defaults.pop("HTTP_AUTHORIZATION")
    response = anonymous.call("GET", "/subjects")
    assert response.status_code == 401 and response.json() == {"error_code": 401, "message": "Unauthorized"}
    assert response["WWW-Authenticate"].startswith("Basic")
    Registry(running.cluster, running.key, secret="wrong" + SECRET).error(401, 401, "GET", "/subjects")
    from tests.platform.api import Tenant
    from tests.platform.factories import ApiKeyFactory, ClusterFactory

    other_tenant_key = ApiKeyFactory(cluster=ClusterFactory(organization=Tenant("owner").organization)).key
    Registry(running.cluster, other_tenant_key).error(401, 401, "GET", "/subjects")
    # ... and the other tenant's cluster is not reachable with this tenant's key either.
    other_cluster = ClusterFactory(organization=Tenant("owner").organization)
    Registry(other_cluster, running.key).error(401, 401, "GET", "/subjects")

    # A prefix-scoped key: its topics' subjects only (TopicNameStrategy and TopicRecordNameStrategy).
    scoped = running.key_for(prefix="orders", access="full")
    assert scoped.register("orders-key", '"string"') > 0
    assert scoped.register("orders-shop.Order", ORDER_V1) > 0
    message = scoped.error(403, 40301, "POST", "/subjects/payments-value/versions", {"schema": '"string"'})
    assert "orders" in message
    payments = r.register("payments-value", '"long"')
    assert scoped.ok("GET", "/subjects") == ["orders-key", "orders-shop.Order", "orders-value"]
    scoped.error(404, 40403, "GET", f"/schemas/ids/{payments}")
    scoped.error(403, 40301, "PUT", "/config", {"compatibility": "NONE"})
    # A consume key reads and may not write.
    reader = running.key_for(prefix="orders", access="consume")
    assert reader.ok("GET", "/subjects/orders-value/versions") == [1]
    reader.error(403, 40301, "POST", "/subjects/orders-value/versions", {"schema": ORDER_V2})
    reader.error(403, 40301, "DELETE", "/subjects/orders-value")

    # Revocation takes effect within 2 s (verified credentials are cached for 1 s at most).
    from iam.models import ApiKey

    api_key_revoke(api_key=ApiKey.objects.get(key=scoped.key))
    deadline = time.monotonic() + 2
    while scoped.call("GET", "/subjects").status_code != 401:
        assert time.monotonic() < deadline, "a revoked key still works after 2 s"
        time.sleep(0.1)

    # Tenants' keys can neither write nor read `_schemas` on the broker: only the platform can.
    bootstrap = running.cluster.bootstrap_servers
    errors: list[KafkaError] = []
    producer = Producer(sasl(bootstrap, running.key, SECRET, **{"message.timeout.ms": 5000}))
    producer.produce(
        storage.SCHEMAS_TOPIC, key=b"{}", value=b"{}", on_delivery=lambda err, msg: errors.append(err)
    )
    producer.flush(10)
    assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = AdminClient(sasl(bootstrap, running.key, SECRET))
    assert storage.SCHEMAS_TOPIC not in admin.list_topics(timeout=10).topics


def test_state_survives_a_restart_and_writers_never_collide(running, monkeypatch):
    r = running.registry
    ids = {
        r.register(f"s{i}-value", compact({"type": "fixed", "name": f"F{i}", "size": i + 1}))
        for i in range(3)
    }
    assert ids == {1, 2, 3}
    r.ok("PUT", "/config/s0-value", {"compatibility": "NONE"})

    # A restart: the process forgets its views and rebuilds them from `_schemas`.
    storage.forget_all()
    assert r.ok("GET", "/subjects") == ["s0-value", "s1-value", "s2-value"]
    assert r.ok("GET", "/config/s0-value") == {"compatibilityLevel": "NONE"}
    assert r.register("s3-value", '"bytes"') == 4

    # A stale writer (another web worker whose view lags and whose lock lapsed) appends a record
    # reusing id 4 for another schema: every reader refuses it, and the registry carries on.
    stale = storage.ClusterLog(running.cluster)
    stale.append(
        [
            (
                {"keytype": "SCHEMA", "subject": "s9-value", "version": 1, "magic": 1},
                {"subject": "s9-value", "version": 1, "id": 4, "schema": '"boolean"', "deleted": False},
            ),
        ]
    )
    assert stale.state.refused == 1 and stale.state.dirty == {("s9-value", 1)}
    storage.forget_all()
    r.error(404, 40401, "GET", "/subjects/s9-value/versions")
    # The next write first makes the refused record's key accepted again (here: a tombstone), so
    # that compaction, which keeps a key's last record, never keeps a refused one.
    assert r.register("s9-value", '"boolean"') == 5
    assert storage.cluster_log(running.cluster).state.dirty == set()

    # `_schemas` is one compacted partition, as Confluent Platform keeps it.
    resource = ConfigResource("topic", storage.SCHEMAS_TOPIC)
    admin = kafka_admin.admin_client(running.cluster)
    configs = admin.describe_configs([resource])[resource].result(15)
    assert configs["cleanup.policy"].value == "compact"
    assert len(admin.list_topics(timeout=10).topics[storage.SCHEMAS_TOPIC].partitions) == 1

    # The records on the topic are Confluent's layout, readable by any Kafka client.
    consumer = Consumer(
        {**storage.client_config(running.cluster), "group.id": "check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(storage.SCHEMAS_TOPIC, 0, 0)])
    keys = []
    deadline = time.monotonic() + 10
    while len(keys) < 7 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            keys.append(json.loads(msg.key()))
    consumer.close()
    assert keys[0] == {"keytype": "SCHEMA", "subject": "s0-value", "version": 1, "magic": 1}
    assert {"keytype": "CONFIG", "subject": "s0-value", "magic": 0} in keys

    # The brokers gone: Confluent's error body naming the trouble, not a server error page.
    monkeypatch.setattr(storage, "IO_TIMEOUT_S", 2.0)
    supervisor.stop_all(conf.host_root("local"), timeout=10)
    response = r.call("GET", "/subjects")
    assert response.status_code == 500, response.content
    assert response.json()["error_code"] in (50001, 50002) and "_schemas" in response.json()["message"]
