"""The portal against a running cluster (real worker, brokerd, Chromium): every page at desktop and
phone widths with screenshots, the pages' links and forms that need live brokers, and the rule for
the control plane's Kafka clients: once a cluster is deleted, none of them connects to its port.

Screenshots go to $KASTLE_SCREENSHOTS when set, else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.db import connections
from playwright.sync_api import expect

from accounts.models import Role
from clusters.models import Cluster, ClusterStatus
from sharedkit import kafka_admin
from tests.e2e.provisioning_stack import create_running_cluster, sasl
from tests.helpers import wait_until
from tests.platform.api import Tenant
from tests.platform.factories import PASSWORD

pytestmark = [pytest.mark.e2e]

WIDTHS = {"desktop": 1280, "phone": 390}


def _log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Clusters")).to_be_visible()


#: The elements sticking out of the page on the right (a phone page must never scroll sideways).
WIDEST = """() => {
  const limit = window.innerWidth + 1;
  if (document.documentElement.scrollWidth <= limit) return null;
  return [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > limit)
    .filter((el) => !el.closest(".table-wrap, pre, .tabs, .mainnav"))
    .slice(0, 5)
    .map((el) => `${el.tagName}.${el.className}#${el.id} ${el.getBoundingClientRect().right}`);
}"""


def _walk(page, base: str, pages: list[tuple[str, str]], shots: Path) -> list[Path]:
    """Every page at each width: served, no sideways scrolling on a phone, a full-page screenshot."""
    saved = []
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages:
            response = page.goto(base + url)
            assert response is not None and response.status < 400, (url, response and response.status)
            wide = page.evaluate(WIDEST)
            assert not wide, (url, width, wide)
            saved.append(shots / f"{name}-{label}.png")
            page.screenshot(path=str(saved[-1]), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    return saved


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.settimeout(0.2)
    return sock


def _connections(listeners: list[socket.socket], seconds: float) -> list[str]:
    """The processes whose connections reach the listeners within `seconds`."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in listeners:
            try:
                conn, peer = sock.accept()
            except TimeoutError:
                continue
            who = subprocess.run(
                ["ss", "-tnpH", "state", "all", "sport", f"= :{peer[1]}"], capture_output=True, text=True
            ).stdout.strip()
            pid = who.split("pid=")[1].split(",")[0] if "pid=" in who else None
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120] if pid else b""
            seen.append(f"{who} {command.decode(errors='replace')} (this test: {os.getpid()})")
            conn.close()
    return seen


def test_every_page_and_the_control_planes_clients_of_a_deleted_cluster(
    e2e, live_server, browser_page, tmp_path
):
    shots = Path(os.environ.get("KASTLE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        _portal_walk(browser_page, live_server.url, shots)
    finally:
        # Queries made while Playwright runs use a connection of their own: close it here, or it
        # outlives the test and the test database cannot be dropped at the end of the run.
        connections.close_all()


def _portal_walk(page, base: str, shots: Path) -> None:
    tenant = Tenant(Role.OWNER, name="Analytical Engines")
    body = create_running_cluster(tenant.client, name="walk")
    cid, bootstrap = body["id"], body["bootstrap_servers"]
    api = f"/api/v1/clusters/{cid}"

    # Topic configs over REST name their source as Kafka does.
    made = tenant.client.post(
        f"{api}/topics",
        {"name": "orders", "partitions": 2, "configs": {"retention.ms": "3600000"}},
        format="json",
    )
    assert made.status_code == 201, made.content
    sources = {c["name"]: c["source"] for c in made.json()["configs"]}
    assert sources["retention.ms"] == "DYNAMIC_TOPIC_CONFIG"
    assert sources["cleanup.policy"] == "DEFAULT_CONFIG"

    key_body = tenant.client.post(f"{api}/api-keys", {"description": "walk app"}, format="json").json()
    key, secret = key_body["key"], key_body["secret"]

    _log_in(page, base, tenant.user.email)

    # Produce from the portal (the control plane's cached producer), then a consumer group with lag.
    page.goto(f"{base}/clusters/{cid}/messages/")
    page.locator("#id_produce-topic").select_option("orders")
    page.locator("#id_produce-key").fill("order-1")
    page.locator("#id_produce-value").fill('{"amount": 42, "items": ["tea", "scones"]}')
    page.get_by_role("button", name="Produce").click()
    expect(page.get_by_text(re.compile("Message produced to orders"))).to_be_visible()
    consumer = Consumer({**sasl(bootstrap, key, secret), "group.id": "walk-reader"})
    try:
        consumer.commit(
            offsets=[TopicPartition("orders", 0, 0), TopicPartition("orders", 1, 0)], asynchronous=False
        )
    finally:
        consumer.close()

    # "Browse messages" on a topic's page lists its messages straight away, one line each; a
    # message opens on click (no JavaScript: <details>).
    page.goto(f"{base}/clusters/{cid}/topics/orders/")
    page.get_by_role("link", name="Browse messages").click()
    expect(page.locator("tr.message")).to_have_count(1)
    expect(page.get_by_text("This field is required.")).to_have_count(0)
    row = page.locator("tr.message")
    expect(row.locator("pre.json")).to_have_text('{"amount": 42, "items": ["tea", "scones"]}')
    assert row.bounding_box()["height"] < 60
    expect(row.locator("pre.pretty")).to_be_hidden()
    row.locator("summary").click()
    expect(row.locator("pre.pretty")).to_contain_text('"scones"')

    # Lag in the consumer-group list.
    page.goto(f"{base}/clusters/{cid}/groups/")
    expect(page.locator("tr", has_text="walk-reader").locator(".group-lag")).to_have_text("1")

    # A service account, and an ACL for it, from the portal.
    page.goto(f"{base}/service-accounts/")
    page.get_by_label("Name").fill("orders-service")
    page.get_by_role("button", name="Create service account").click()
    expect(page.get_by_text(re.compile("Service account orders-service .* created"))).to_be_visible()
    sa_id = page.locator("tr", has_text="orders-service").locator("code").inner_text()
    page.goto(f"{base}/clusters/{cid}/acls/")
    page.get_by_label("Principal").fill(sa_id)
    page.get_by_label("Operation").select_option("READ")
    page.get_by_label("Name", exact=True).fill("orders")
    page.get_by_role("button", name="Add ACL").click()
    expect(page.get_by_text("ACL created.")).to_be_visible()
    page.get_by_label("Principal").fill("nobody-here")
    page.get_by_label("Name", exact=True).fill("orders")
    page.get_by_role("button", name="Add ACL").click()
    expect(page.locator("#id_principal-error")).to_be_visible()

    # The topic form offers what the plan allows (Basic: 100 partitions, 7 days).
    page.goto(f"{base}/clusters/{cid}/topics/")
    assert page.locator("#id_partitions").get_attribute("max") == "100"
    options = page.locator("#id_retention option").all_inner_texts()
    assert "7 days" in options and "30 days" not in options and "Forever" not in options
    page.get_by_label("Name").fill("wide")
    page.get_by_label("Partitions").fill("1000")
    page.get_by_role("button", name="Create topic").click()
    expect(page.locator("#id_partitions-error")).to_contain_text("at most 100 partitions")

    c = f"/clusters/{cid}"
    saved = _walk(
        page,
        base,
        [
            ("clusters", "/"),
            ("cluster-create", "/clusters/new/"),
            ("cluster", f"{c}/"),
            ("topics", f"{c}/topics/"),
            ("topic", f"{c}/topics/orders/"),
            ("topic-delete", f"{c}/topics/orders/delete/"),
            ("messages", f"{c}/messages/?topic=orders"),
            ("api-keys", f"{c}/api-keys/"),
            ("api-key-rotate", f"{c}/api-keys/{key}/rotate/"),
            ("acls", f"{c}/acls/"),
            ("groups", f"{c}/groups/"),
            ("group", f"{c}/groups/walk-reader/"),
            ("group-delete", f"{c}/groups/walk-reader/delete/"),
            ("clients", f"{c}/clients/"),
            ("cluster-delete", f"{c}/delete/"),
            ("service-accounts", "/service-accounts/"),
            ("usage", "/usage/"),
            ("organization", "/organization/"),
            ("tokens", "/organization/tokens/"),
            ("audit", "/organization/audit/"),
            ("password", "/account/password/"),
            ("logout", "/logout/"),
        ],
        shots,
    )

    # Delete the cluster in the portal. Its banner ends up agreeing with its row.
    cluster = Cluster.objects.get(public_id=cid)
    assert kafka_admin.cached_kinds(cluster), "the pages above used the control plane's clients"
    page.goto(f"{base}{c}/delete/")
    page.get_by_label("Type the name to confirm").fill("walk")
    page.get_by_role("button", name="Delete cluster").click()
    expect(page.locator("tr", has_text="walk").locator(".badge")).to_have_text("Deleted", timeout=60_000)
    expect(page.locator("#deleted-notice")).to_have_text(re.compile("Cluster walk was deleted."))
    wait_until(
        lambda: Cluster.objects.get(public_id=cid).status == ClusterStatus.DELETED,
        timeout=30,
        message="DELETED",
    )
    page.goto(f"{base}{c}/")
    expect(page.locator("#bootstrap")).to_have_count(0)
    assert bootstrap not in page.content()

    # No Kafka client of the control plane (this process's portal and API, the worker) still
    # connects to the deleted cluster's port: librdkafka retries at most every 5 s.
    ports = [int(address.rsplit(":", 1)[1]) for address in bootstrap.split(",")]
    listeners = wait_until(lambda: _try_listen(ports), timeout=15, message="the brokers' ports to be free")
    try:
        assert _connections(listeners, seconds=7) == []
    finally:
        for sock in listeners:
            sock.close()
    assert kafka_admin.cached_kinds(cluster) == []

    # Logged out: the public pages.
    page.goto(f"{base}/logout/")
    page.get_by_role("button", name="Log out").click()
    saved += _walk(page, base, [("login", "/login/"), ("signup", "/signup/")], shots)
    assert len(set(saved)) == 2 * 24 and all(path.stat().st_size > 10_000 for path in saved)


def _try_listen(ports: list[int]) -> list[socket.socket] | None:
    listeners = []
    try:
        for port in ports:
            listeners.append(_listen(port))
    except OSError:
        for sock in listeners:
            sock.close()
        return None
    return listeners
