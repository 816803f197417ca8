"""The Clients view and consumer-protocol groups, in the portal (Chromium) and over REST, on a real
brokerd provisioned inline: confluent-kafka clients push their telemetry once the cluster has a
client-metrics subscription, and the portal shows who they are and what they report; a
``group.protocol=consumer`` group shows its protocol, epochs and each member's assignment, also
once a classic consumer joins it (a group migrating between protocols), and only to its tenant."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer
from django.db import connections
from playwright.sync_api import expect

from accounts.models import Role
from tests.platform.api import Tenant
from tests.platform.consumergroups.test_consumergroups_api import Running
from tests.platform.inline_cluster import host_env  # noqa: F401  (a fixture)
from tests.web.test_web_portal_live import _log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_clients_view_and_consumer_protocol_group(host_env, live_server, browser_page, screenshot):  # noqa: F811
    running = Running(Tenant(Role.OWNER))
    cid = running.cluster.public_id
    api = running.tenant.client
    base = f"/api/v1/clusters/{cid}"

    # A subscription: every metric of clients whose id starts with app-, every second.
    body = {"metrics": ["*"], "interval_ms": 1000, "match": ["client_id=app-.*"]}
    made = api.put(f"{base}/client-metrics-subscriptions/apps", body, format="json")
    assert made.status_code == 200, made.content
    bad = api.put(f"{base}/client-metrics-subscriptions/bad", {**body, "interval_ms": 10}, format="json")
    assert bad.status_code == 400
    listed = api.get(f"{base}/client-metrics-subscriptions").json()["results"]
    assert [(s["name"], s["metrics"], s["interval_ms"]) for s in listed] == [("apps", ["*"], 1000)]
    member = running.tenant.member(Role.MEMBER)
    assert member.client.delete(f"{base}/client-metrics-subscriptions/apps").status_code == 403

    stop = threading.Event()
    producer = Producer(running.conf(**{"client.id": "app-producer", "linger.ms": 5}))
    consumer = Consumer(
        running.conf(
            **{"client.id": "app-consumer", "group.id": "orders-readers", "group.protocol": "consumer",
               "auto.offset.reset": "earliest"}
        )
    )  # fmt: skip
    consumer.subscribe(["orders"])
    consumers = [consumer]

    def traffic() -> None:
        while not stop.is_set():
            producer.produce("orders", b"v")
            producer.poll(0)
            for each in list(consumers):
                each.poll(0.1)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        clients: dict = {}
        while time.monotonic() < deadline:
            clients = {c["client_id"]: c for c in api.get(f"{base}/clients").json()["results"]}
            ready = clients.get("app-producer", {}).get("request_latency_ms") is not None
            group = api.get(f"{base}/consumer-groups/orders-readers")
            members = group.json().get("members", []) if group.status_code == 200 else []
            if ready and "app-consumer" in clients and members and members[0]["member_epoch"]:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no telemetry or group: {clients}")
        prod = clients["app-producer"]
        assert prod["software_name"] == "confluent-kafka-python" and prod["active"]
        assert prod["principal"] and any(m["name"].endswith("record.queue.time.avg") for m in prod["metrics"])
        detail = group.json()
        assert detail["protocol"] == "consumer" and detail["group_epoch"] >= 1
        (m,) = detail["members"]
        assert m["client_id"] == "app-consumer" and m["member_epoch"] == detail["assignment_epoch"]
        assert m["protocol"] == "consumer"
        assert m["target_assignments"] == m["assignments"] == [{"topic": "orders", "partitions": [0, 1, 2]}]

        page = browser_page
        _log_in(page, live_server.url, running.tenant.user.email)
        page.goto(f"{live_server.url}/clusters/{cid}/clients/")
        row = page.locator("tr.client", has_text="app-producer")
        expect(row.locator(".client-software")).to_contain_text("confluent-kafka-python")
        expect(row.locator(".client-latency")).not_to_have_text("—")
        expect(page.locator("tr.subscription", has_text="apps")).to_contain_text("client_id=app-.*")
        screenshot(page, "clients")
        page.get_by_role("link", name="Consumer groups").click()
        listed_group = page.locator("tr", has_text="orders-readers")
        expect(listed_group.locator(".group-protocol")).to_have_text("consumer")
        page.goto(f"{live_server.url}/clusters/{cid}/groups/orders-readers/")
        expect(page.locator("#group-protocol")).to_have_text("consumer")
        expect(page.locator("#group-epoch")).to_have_text(str(detail["group_epoch"]))
        expect(page.locator("#assignment-epoch")).to_have_text(str(detail["assignment_epoch"]))
        row = page.locator("tr.member")
        expect(row.locator(".member-id")).to_have_text(m["member_id"])
        expect(row.locator(".member-type")).to_have_text("consumer")
        expect(row.locator(".member-epoch")).to_have_text(str(m["member_epoch"]))
        expect(row.locator(".member-assignment")).to_have_text("orders: 0, 1, 2")
        expect(row.locator(".member-target")).to_have_text("reached")
        screenshot(page, "group-consumer-protocol")

        # A classic consumer joins the same group (as during a migration): a mixed group, both
        # kinds of member with their epochs and a share of the partitions each.
        classic = Consumer(
            running.conf(**{"client.id": "app-classic", "group.id": "orders-readers",
                            "group.protocol": "classic", "auto.offset.reset": "earliest",
                            # it learns of each step of the rebalance from its heartbeats
                            "heartbeat.interval.ms": 300})
        )  # fmt: skip
        classic.subscribe(["orders"])
        consumers.append(classic)
        deadline = time.monotonic() + 60
        mixed: dict = {}
        while time.monotonic() < deadline:
            mixed = api.get(f"{base}/consumer-groups/orders-readers").json()
            members = {x["client_id"]: x for x in mixed.get("members", [])}
            if set(members) == {"app-consumer", "app-classic"} and all(
                x["assignments"]
                and x["target_assignments"] == x["assignments"]
                and x["member_epoch"] == mixed["assignment_epoch"]
                for x in members.values()
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the mixed group did not settle: {mixed}")
        assert mixed["protocol"] == "consumer" and mixed["group_epoch"] > detail["group_epoch"]
        assert {x: members[x]["protocol"] for x in members} == {
            "app-consumer": "consumer",
            "app-classic": "classic",
        }
        owned = [p for x in members.values() for a in x["assignments"] for p in a["partitions"]]
        assert sorted(owned) == [0, 1, 2]
        page.reload()
        expect(page.locator("tr.member")).to_have_count(2)
        expect(page.locator("#group-epoch")).to_have_text(str(mixed["group_epoch"]))
        for client_id, x in members.items():
            row = page.locator("tr.member", has_text=client_id)
            expect(row.locator(".member-id")).to_have_text(x["member_id"])
            expect(row.locator(".member-host")).to_have_text(x["host"])
            expect(row.locator(".member-type")).to_have_text(x["protocol"])
            expect(row.locator(".member-epoch")).to_have_text(str(x["member_epoch"]))
            shown = "orders: " + ", ".join(str(p) for p in x["assignments"][0]["partitions"])
            expect(row.locator(".member-assignment")).to_have_text(shown)
        screenshot(page, "group-mixed")

        # Another organization's user: the group page is 404, nothing of the group shown.
        stranger = Tenant(Role.OWNER)
        other = page.context.browser.new_context().new_page()
        _log_in(other, live_server.url, stranger.user.email)
        response = other.goto(f"{live_server.url}/clusters/{cid}/groups/orders-readers/")
        assert response is not None and response.status == 404
        assert "app-classic" not in other.content()
        other.context.close()

        # An admin deletes the subscription from the portal.
        page.goto(f"{live_server.url}/clusters/{cid}/clients/")
        page.locator("tr.subscription", has_text="apps").get_by_role("button", name="Delete").click()
        expect(page.get_by_text("Subscription apps deleted.")).to_be_visible()
        assert api.get(f"{base}/client-metrics-subscriptions").json()["results"] == []
    finally:
        stop.set()
        worker.join(10)
        for each in consumers:
            each.close()
        producer.flush(5)
        # Playwright's thread used a connection of its own: close it before the database is dropped.
        connections.close_all()
