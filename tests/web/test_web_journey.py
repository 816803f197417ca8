"""The whole tenant journey in headless Chromium against a live server, a real worker and brokerd:
sign up, pick a plan, launch, wait RUNNING (htmx badge), topic, API key, produce from the portal,
consume with confluent-kafka using the portal's key, see the client's messages in the browser,
preview an offset reset and delete the client's consumer group, delete the cluster."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from playwright.sync_api import expect

from tests.e2e.provisioning_stack import sasl

pytestmark = [pytest.mark.e2e]


def _tls(bootstrap: str, key: str, secret: str, ca: str, **extra) -> dict:
    return sasl(bootstrap, key, secret, **{"security.protocol": "SASL_SSL", "ssl.ca.location": ca}, **extra)


def _consume(conf: dict, topic: str, partitions: int, want: int, timeout=30.0):
    consumer = Consumer({**conf, "group.id": "journey-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10, timeout=0.5):
                if msg.error() is None:
                    got.append(msg)
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def test_tenant_journey_in_the_browser(e2e, live_server, browser_page, screenshot, tmp_path):
    page = browser_page
    base = live_server.url

    # 1. sign up
    page.goto(f"{base}/signup/")
    page.get_by_label("Email").fill("ada@journey.example")
    page.get_by_label("Password").fill("a long passphrase 42")
    page.get_by_label("Organization name").fill("Analytical Engines")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Create your first cluster")).to_be_visible()
    screenshot(page, "01-clusters-empty")

    # 2-3. pick a plan, name the cluster, launch it
    page.get_by_role("link", name="Create cluster").first.click()
    expect(page.get_by_text("Pick a plan")).to_be_visible()
    page.get_by_role("button", name="Launch cluster").click()  # no name: the message is beside the field
    expect(page.locator("#id_name-error")).to_contain_text("required")
    # Cards switch on click; the journey launches on Basic (Standard's three brokers meet in etcd,
    # which this stack does not run: tests/e2e/test_e2e_replicated_clusters.py covers them).
    page.locator("label.plan-card", has_text="Standard").click()
    expect(page.locator("label.plan-card", has_text="Standard").locator("input")).to_be_checked()
    page.locator("label.plan-card", has_text="Basic").click()
    page.get_by_label("Cluster name").fill("journey")
    screenshot(page, "02-create-wizard")
    page.get_by_role("button", name="Launch cluster").click()
    expect(page.get_by_role("heading", name=re.compile("journey"))).to_be_visible()

    # The list's badge updates itself (htmx polling) until the cluster is RUNNING.
    page.get_by_role("link", name="Clusters").first.click()
    row = page.locator("tr", has_text="journey")
    expect(row.locator(".badge")).to_have_text("Running", timeout=60_000)
    screenshot(page, "03-clusters-running")
    row.get_by_role("link", name="journey").click()

    # 4. details and connection settings
    bootstrap = page.locator("#bootstrap").inner_text()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", bootstrap), bootstrap
    expect(page.get_by_text("encrypted with TLS")).to_be_visible()
    ca_link = page.get_by_role("link", name="Download kastle-ca.pem").get_attribute("href")
    ca = page.request.get(base + ca_link)
    assert ca.ok and b"BEGIN CERTIFICATE" in ca.body()
    ca_file = tmp_path / "kastle-ca.pem"
    ca_file.write_bytes(ca.body())

    # 5. a topic
    page.get_by_role("link", name="Topics").click()
    page.get_by_label("Name").fill("bad name!")
    page.get_by_role("button", name="Create topic").click()
    expect(page.locator("#id_name-error")).to_contain_text("Use only ASCII letters")
    page.get_by_label("Name").fill("orders")
    page.get_by_label("Partitions").fill("2")
    page.get_by_role("button", name="Create topic").click()
    expect(page.get_by_role("row", name=re.compile("orders"))).to_be_visible()
    screenshot(page, "04-topics")
    # edit its configs: a bad value is explained beside the field, a good one is saved
    page.get_by_role("link", name="orders").click()
    page.get_by_label("retention.ms").fill("forever")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#id_config\\:retention\\.ms-error")).to_be_visible()
    page.get_by_label("retention.ms").fill("3600000")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Topic orders saved.")).to_be_visible()
    expect(page.get_by_text("1 hour")).to_be_visible()
    # delete a scratch topic, with its name typed to confirm
    page.get_by_role("link", name="Topics").click()
    page.get_by_label("Name").fill("scratch")
    page.get_by_label("Clean-up policy").select_option(label="Compact: keep the latest message per key")
    page.get_by_role("button", name="Create topic").click()
    page.get_by_role("link", name="scratch").click()
    expect(page.get_by_text("Compacted: keeps the latest message per key")).to_be_visible()
    page.get_by_role("link", name="Delete topic…").click()
    page.get_by_label("Type the name to confirm").fill("scratch")
    page.get_by_role("button", name="Delete topic").click()
    expect(page.get_by_text("Topic scratch deleted.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("scratch"))).to_have_count(0)

    # 6. an API key: the secret is shown once, with downloads of ready client configs
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Description").fill("journey app")
    page.get_by_role("button", name="Create API key").click()
    key = page.locator("#new-key").inner_text().strip()
    secret = page.locator("#new-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z0-9]{16}", key) and len(secret) >= 32
    download = page.get_by_role("link", name=re.compile("Download Java"))
    assert secret in unquote(download.get_attribute("href"))
    screenshot(page, "05-api-key-created")

    # The overview's client configuration is filled in with the key and a secret placeholder.
    page.goto(f"{base}/clusters/{page.url.split('/clusters/')[1].split('/')[0]}/")
    expect(page.locator("#snippet-confluent")).to_contain_text(key)
    expect(page.locator("#snippet-confluent")).to_contain_text("<API_SECRET>")
    screenshot(page, "06-overview")
    cluster_url = page.url

    # 8a. produce a message from the portal, with a key and a header
    page.get_by_role("link", name="Messages").click()
    page.locator("#id_produce-topic").select_option("orders")
    page.locator("#id_produce-key").fill("order-1")
    page.locator("#id_produce-value").fill('{"amount": 42, "from": "portal"}')
    page.locator("#id_produce-headers").fill("source: portal")
    page.get_by_role("button", name="Produce").click()
    expect(page.get_by_text(re.compile("Message produced to orders"))).to_be_visible()
    expect(page.locator("tr.message")).to_have_count(1)

    # 7. a real confluent-kafka client over TLS, with the key and CA from the portal, reads it
    conf = _tls(bootstrap, key, secret, str(ca_file))
    messages = _consume(conf, "orders", 2, 1)
    assert len(messages) == 1, "the portal's message was not consumed"
    assert messages[0].key() == b"order-1"
    assert messages[0].value() == b'{"amount": 42, "from": "portal"}'
    assert messages[0].headers() == [("source", b"portal")]

    # ... and writes two messages of its own
    producer = Producer({**conf, "acks": "all"})
    producer.produce("orders", key=b"order-2", value=b'{"amount": 7, "from": "client"}', partition=0)
    producer.produce("orders", key=b"raw", value=b"\x00\x01\xfe\xff", partition=1)
    assert producer.flush(15) == 0
    del producer

    # 8b. the message browser shows them: pretty JSON, hex for binary
    page.get_by_role("button", name="Show messages").click()
    expect(page.locator("tr.message")).to_have_count(3)
    expect(page.locator("pre.json", has_text='"from": "client"')).to_be_visible()
    expect(page.locator("pre.hex", has_text="00 01 fe ff")).to_be_visible()
    screenshot(page, "07-messages")

    # The consumer group of that client: its lag, and an offset reset previewed (dry run)
    page.get_by_role("link", name="Consumer groups").click()
    page.get_by_role("link", name="journey-reader").click()
    expect(page.locator("#total-lag")).to_have_text("1")  # committed on partition 1 only
    page.get_by_label("The earliest message (re-read everything)").check()
    page.get_by_label("Topic").fill("orders")
    page.get_by_role("button", name="Preview (dry run)").click()
    expect(page.locator("tr.preview-row")).to_have_count(2)
    expect(page.locator("#total-lag")).to_have_text("1")  # nothing changed
    screenshot(page, "08-group")
    # ... and, with no member left, deleted with its id typed to confirm
    page.get_by_role("link", name="Delete group").click()
    page.get_by_label("Type the group id to confirm").fill("journey-reader")
    page.get_by_role("button", name="Delete group").click()
    expect(page.get_by_text("Consumer group journey-reader and its offsets were deleted.")).to_be_visible()
    expect(page.get_by_role("link", name="journey-reader")).to_have_count(0)

    # On a phone: no page scrolls sideways (wide tables and code scroll inside their boxes).
    page.set_viewport_size({"width": 390, "height": 844})
    for url, name in ((cluster_url, "10-phone-overview"), (f"{base}/usage/", "11-phone-usage")):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), url
        screenshot(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})

    # 9. delete the cluster, with its name typed to confirm
    page.goto(cluster_url)
    page.get_by_role("link", name="Delete cluster…").click()
    page.get_by_label("Type the name to confirm").fill("wrong")
    page.get_by_role("button", name="Delete cluster").click()
    expect(page.locator(".error")).to_contain_text("Type journey exactly")
    page.get_by_label("Type the name to confirm").fill("journey")
    page.get_by_role("button", name="Delete cluster").click()
    expect(page.get_by_text("is being deleted")).to_be_visible()
    expect(page.locator("tr", has_text="journey").locator(".badge")).to_have_text("Deleted", timeout=60_000)
    screenshot(page, "09-deleted")
