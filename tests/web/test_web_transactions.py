"""Portal: a cluster's open transactions, and aborting a hanging one (Chromium), on a real brokerd
provisioned inline: a confluent-kafka transactional producer leaves a transaction open; an admin
aborts it on its partition from the portal; a member sees the list without the action; another
organization gets 404 for both pages."""

from __future__ import annotations

import re

import pytest
from confluent_kafka import Producer
from django.db import connections
from django.test import Client
from playwright.sync_api import expect

from accounts.models import Role
from tests.e2e.provisioning_stack import sasl
from tests.platform.api import Tenant
from tests.platform.inline_cluster import SECRET, host_env, provision_inline  # noqa: F401  (a fixture)
from tests.platform.transactions.test_transactions_api import read_committed_watermarks
from tests.web.test_web_portal_live import _log_in
from topics import services as topics

pytestmark = pytest.mark.django_db(transaction=True)


def _portal(tenant: Tenant) -> Client:
    client = Client()
    client.force_login(tenant.user)
    return client


def test_open_transactions_page_and_abort_a_hanging_one(host_env, live_server, browser_page, screenshot):  # noqa: F811
    tenant = Tenant(Role.OWNER)
    cluster, key = provision_inline(tenant.organization)
    cid = cluster.public_id
    topics.topic_create(cluster=cluster, name="orders", partitions=1)
    base = f"/clusters/{cid}/transactions"

    producer = Producer(sasl(cluster.bootstrap_servers, key, SECRET, **{"transactional.id": "app-1"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("orders", value=b"left open", partition=0)
    assert producer.flush(15) == 0
    try:
        # tenant walls and roles, before the browser
        stranger = _portal(Tenant(Role.OWNER))
        assert stranger.get(f"{base}/").status_code == 404
        query = {"topic": "orders", "partition": 0, "producer_id": 0}
        assert stranger.get(f"{base}/abort/", query).status_code == 404
        assert stranger.post(f"{base}/abort/", query).status_code == 404
        member = _portal(tenant.member(Role.MEMBER))
        listed = member.get(f"{base}/").content.decode()
        assert "app-1" in listed and "Abort…" not in listed
        assert member.get(f"{base}/abort/", query).status_code == 403
        assert member.post(f"{base}/abort/", query).status_code == 403

        page = browser_page
        _log_in(page, live_server.url, tenant.user.email)
        page.goto(f"{live_server.url}/clusters/{cid}/")
        page.get_by_role("link", name="Transactions").click()
        row = page.locator("tr.transaction", has_text="app-1")
        expect(row.locator(".txn-state")).to_have_text("Ongoing")
        expect(row.locator(".txn-partitions")).to_contain_text("orders-0")
        pid = int(row.locator(".txn-producer").inner_text())
        expect(row.locator(".txn-epoch")).to_have_text("0")
        expect(row.locator(".txn-age")).to_have_text(re.compile(r"^\d+ (ms|s|min)\b"))
        screenshot(page, "transactions")

        row.get_by_role("link", name=f"Abort producer {pid}'s transaction on orders-0").click()
        expect(
            page.get_by_role("heading", name=f"Abort the transaction of producer {pid} on orders-0")
        ).to_be_visible()
        expect(page.get_by_text("Transactional id app-1")).to_be_visible()
        screenshot(page, "transaction-abort")
        page.get_by_role("button", name="Abort transaction").click()
        expect(
            page.get_by_text(f"Aborted the transaction of producer {pid} (epoch 0) on orders-0.")
        ).to_be_visible()

        # the partition's last stable offset passed the abort marker; the record stays hidden
        assert read_committed_watermarks(cluster, key, "orders") == (0, 2)
        # nothing open there now: aborting again is refused by the partition's leader
        page.goto(f"{live_server.url}{base}/abort/?topic=orders&partition=0&producer_id={pid}")
        page.get_by_role("button", name="Abort transaction").click()
        expect(page.get_by_role("alert")).to_contain_text(
            f"Producer {pid} has no open transaction on orders-0."
        )
        assert tenant.organization.audit_events.filter(action="transaction.abort").count() == 1
    finally:
        producer.abort_transaction(30)
        connections.close_all()
