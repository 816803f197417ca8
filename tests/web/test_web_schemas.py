"""The Schemas tab and decoded values in the message browser, in headless Chromium against a live
server and a real brokerd: a schema registered in the portal, records produced by confluent-kafka's
AvroSerializer (which finds the portal's schema, registering nothing) to a topic that validates
them, and the message browser showing them decoded with their schema id and subject."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from django.db import connections
from playwright.sync_api import expect

from accounts.models import Role
from schemaregistry import storage
from tests.e2e.provisioning_stack import sasl
from tests.platform.api import Tenant
from tests.platform.factories import PASSWORD
from tests.platform.inline_cluster import SECRET, host_env, provision_inline

__all__ = ["host_env"]  # the fixture

ORDER = {"type": "record", "name": "Order", "namespace": "shop",
         "fields": [{"name": "id", "type": "string"}, {"name": "cents", "type": "long"}]}
ORDER_V2 = {**ORDER, "fields": [*ORDER["fields"], {"name": "note", "type": "string", "default": ""}]}


@pytest.mark.django_db(transaction=True)
def test_register_in_the_portal_produce_with_avro_and_browse_decoded(host_env, live_server, browser_page):
    try:
        _journey(browser_page, live_server.url)
    finally:
        storage.forget_all()
        connections.close_all()  # Playwright-time queries used a connection of their own


def _journey(page, base: str) -> None:
    tenant = Tenant(Role.OWNER)
    cluster, key = provision_inline(tenant.organization)
    cid = cluster.public_id
    page.goto(f"{base}/login/")
    page.get_by_label("Email").fill(tenant.user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Clusters")).to_be_visible()

    # A topic whose values the brokers validate, created in the portal.
    page.goto(f"{base}/clusters/{cid}/topics/")
    page.get_by_label("Name").fill("orders")
    page.get_by_role("group", name="Schema validation").get_by_label("Values").check()
    page.get_by_role("button", name="Create topic").click()
    expect(page.locator("form .invalid")).to_have_count(0)
    page.wait_for_load_state()
    detail = tenant.client.get(f"/api/v1/clusters/{cid}/topics/orders")
    assert detail.status_code == 200, detail.content
    configs = {c["name"]: c["value"] for c in detail.json()["configs"]}
    assert configs["confluent.value.schema.validation"] == "true"
    assert configs["confluent.key.schema.validation"] == "false"

    # Register in the Schemas tab; a broken schema is refused beside the field, naming the problem.
    page.goto(f"{base}/clusters/{cid}/")
    page.get_by_role("link", name="Schemas").click()
    expect(page.get_by_text("No schemas yet")).to_be_visible()
    register = page.locator("form", has=page.get_by_role("button", name="Register schema"))
    register.get_by_label("Subject").fill("orders-value")
    broken = {**ORDER, "fields": [{"name": "id", "type": "strnig"}]}
    register.get_by_label("Schema").fill(json.dumps(broken))
    register.get_by_role("button", name="Register schema").click()
    expect(page.locator(".field.invalid")).to_contain_text("42201")
    register = page.locator("form", has=page.get_by_role("button", name="Register schema"))
    register.get_by_label("Schema").fill(json.dumps(ORDER))
    register.get_by_role("button", name="Register schema").click()
    expect(page.get_by_text("Schema registered under orders-value with id 1.")).to_be_visible()

    # Compatibility: a new required field is refused by BACKWARD, naming the field; v2 registers.
    check = page.locator("form", has=page.get_by_role("button", name="Test compatibility"))
    check.get_by_label("Subject").fill("orders-value")
    bad = {**ORDER, "fields": [*ORDER["fields"], {"name": "vat", "type": "int"}]}
    check.get_by_label("Schema").fill(json.dumps(bad))
    check.get_by_role("button", name="Test compatibility").click()
    expect(page.get_by_text("Not compatible with orders-value (BACKWARD)")).to_be_visible()
    expect(page.get_by_text("'vat'").first).to_be_visible()
    register = page.locator("form", has=page.get_by_role("button", name="Register schema"))
    register.get_by_label("Subject").fill("orders-value")
    register.get_by_label("Schema").fill(json.dumps(ORDER_V2))
    register.get_by_role("button", name="Register schema").click()
    expect(page.get_by_text("Schema registered under orders-value with id 2.")).to_be_visible()
    expect(page.get_by_text("Version 2 · id 2 · AVRO")).to_be_visible()
    expect(page.locator("pre.diff")).to_contain_text('+      "name": "note"')

    # Produce with AvroSerializer: it looks the portal's schema up (auto-registration off).
    with SchemaRegistryClient({"url": f"{base}/schema-registry/{cid}",
                               "basic.auth.user.info": f"{key}:{SECRET}"}) as registry:
        serialize = AvroSerializer(registry, json.dumps(ORDER_V2),
                                   conf={"auto.register.schemas": False, "use.latest.version": False})
        producer = Producer(sasl(cluster.bootstrap_servers, key, SECRET, **{"linger.ms": 0}))
        context = SerializationContext("orders", MessageField.VALUE)
        delivered: list = []
        for n in range(3):
            value = serialize({"id": f"o-{n}", "cents": 1250 + n, "note": "gift"}, context)
            producer.produce("orders", value=value, on_delivery=lambda err, msg: delivered.append(err))
        assert producer.flush(15) == 0  # (a batch with one bad record is refused whole)
        producer.produce("orders", value=b"not framed", on_delivery=lambda err, msg: delivered.append(err))
        assert producer.flush(15) == 0
    assert delivered[:3] == [None] * 3 and delivered[3] is not None  # validation refused the last

    page.goto(f"{base}/clusters/{cid}/messages/?topic=orders")
    expect(page.get_by_role("heading", name="3 messages")).to_be_visible()
    expect(page.get_by_text("AVRO · id 2 · orders-value").first).to_be_visible()
    row = page.locator("tr.message", has_text='"cents": 1252')
    expect(row).to_be_visible()
    row.locator("summary").click()
    expect(row.get_by_text("Value, decoded with schema id 2 (AVRO, subject orders-value)")).to_be_visible()
    expect(row.locator("pre.pretty").first).to_contain_text('"note": "gift"')
