"""Tenant monitoring end to end: real brokerd, real Kafka clients, a real Celery worker and beat.

The Prometheus export is read with Prometheus's own text parser and compared with what the test
produced and consumed (exact record-batch bytes, records, offsets, lag).
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from monitoring import delivery
from monitoring.export import sample_names
from monitoring.models import AlertRule, Notification
from tests.e2e.provisioning_stack import create_running_cluster, plain_login, provisioning_env, sasl
from tests.e2e.test_e2e_metering import batch_bytes
from tests.helpers import environ, wait_until
from tests.platform.api import Tenant, assert_error
from tests.platform.monitoring.webhook_receiver import WebhookReceiver

# The worker and beat: rules evaluated every second on figures at most a second old, and webhooks
# allowed to reach this test's receiver on loopback.
MONITORING_ENV = {
    "KASTLE_ALERT_INTERVAL_SECONDS": "1",
    "KASTLE_METRICS_EXPORT_CACHE_SECONDS": "1",
    "KASTLE_WEBHOOK_ALLOW_PRIVATE": "true",
}


@pytest.fixture(scope="module")
def _monitoring_env():
    with environ(**MONITORING_ENV), provisioning_env() as env:
        yield env


@pytest.fixture
def e2e(_monitoring_env, celery_worker, settings):
    from clusters.models import Host

    settings.KASTLE_METRICS_EXPORT_CACHE_SECONDS = "0"  # every read below sees the brokers now
    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield celery_worker
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an export, parsed by prometheus_client: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: object) -> float | None:
    return found.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def produce_to(bootstrap: str, key: str, secret: str, topic: str, partition: int, n: int, tag: str) -> int:
    """n one-record batches to one partition; returns their record-batch bytes."""
    producer = Producer(sasl(bootstrap, key, secret, acks="all", **{"linger.ms": 0}))
    total = 0
    for i in range(n):
        k, v = f"{tag}-{i}".encode(), f"{tag} value {i}".encode()
        producer.produce(topic, key=k, value=v, partition=partition)
        assert producer.flush(30) == 0
        total += batch_bytes(k, v)
    return total


def consume_and_commit(bootstrap, key, secret, group, topic, upto: dict[int, int]) -> int:
    """Read each partition up to (excluding) offset upto[p] and commit there; returns records read."""
    consumer = Consumer(sasl(bootstrap, key, secret, **{"group.id": group, "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, p, 0) for p in upto])
    read = {p: 0 for p in upto}
    deadline = time.monotonic() + 30
    while any(read[p] < upto[p] for p in upto) and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=100, timeout=0.5):
            assert not msg.error(), msg.error()
            read[msg.partition()] += 1
    assert read == upto or all(read[p] >= upto[p] for p in upto), read
    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in upto.items()], asynchronous=False)
    consumer.close()
    return sum(read.values())


def tenant_with_cluster(api_client, email: str, name: str, partitions: int):
    """Sign up; a RUNNING cluster with topic `orders` and an API key.

    Returns (client, cluster id, bootstrap, key, secret)."""
    signup = api_client.post(
        "/api/v1/signup", {"email": email, "password": "a long passphrase 42", "organization": name}
    )
    assert signup.status_code == 201, signup.content
    client = api_client
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signup.json()['token']}")
    cluster = create_running_cluster(client, name.lower())
    cid, bootstrap = cluster["id"], cluster["bootstrap_servers"]
    made = client.post(f"/api/v1/clusters/{cid}/topics", {"name": "orders", "partitions": partitions})
    assert made.status_code == 201, made.content
    made = client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": "app"}).json()
    key, secret = made["key"], made["secret"]
    wait_until(lambda: plain_login(bootstrap, key, secret), timeout=10, message="the key works")
    return client, cid, bootstrap, key, secret


def test_export_matches_what_clients_did(e2e, api_client):
    started = time.monotonic()
    client, cid, bootstrap, key, secret = tenant_with_cluster(api_client, "watch@e2e.example", "Watchers", 2)

    bytes0 = produce_to(bootstrap, key, secret, "orders", 0, 12, "a")
    bytes1 = produce_to(bootstrap, key, secret, "orders", 1, 7, "b")
    read = consume_and_commit(bootstrap, key, secret, "billing", "orders", {0: 9, 1: 7})

    url = f"/api/v1/clusters/{cid}/metrics/export"
    response = client.get(url, HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(response.content.decode())
    assert {name for name, _ in found} <= sample_names()

    assert value(found, "kastle_topic_bytes_in_total", topic="orders") == bytes0 + bytes1
    assert value(found, "kastle_topic_records_in_total", topic="orders") == 19
    assert value(found, "kastle_topic_records_out_total", topic="orders") >= read  # fetched at least once
    assert value(found, "kastle_topic_bytes_out_total", topic="orders") == sum(
        value(found, "kastle_partition_bytes_out_total", topic="orders", partition=p) for p in (0, 1)
    )
    for partition, (records, nbytes) in enumerate(((12, bytes0), (7, bytes1))):
        # produced to each partition; the consumer read each partition once from offset 0, and
        # its first fetch carried the whole log (a consumer fetches past what it consumes: 12 of 9)
        orders = {"topic": "orders", "partition": partition}
        assert value(found, "kastle_partition_bytes_in_total", **orders) == nbytes
        assert value(found, "kastle_partition_records_in_total", **orders) == records
        assert value(found, "kastle_partition_bytes_out_total", **orders) == nbytes
        assert value(found, "kastle_partition_records_out_total", **orders) == records
        assert value(found, "kastle_partition_log_end_offset", topic="orders", partition=partition) == records
        assert value(found, "kastle_partition_log_start_offset", topic="orders", partition=partition) == 0
        assert value(found, "kastle_partition_stored_bytes", topic="orders", partition=partition) == nbytes
        assert value(found, "kastle_partition_replicas", topic="orders", partition=partition) == 1
        assert value(found, "kastle_partition_under_replicated", topic="orders", partition=partition) == 0
        assert value(found, "kastle_partition_offline", topic="orders", partition=partition) == 0
        assert value(found, "kastle_partition_under_min_isr", topic="orders", partition=partition) == 0
    billing = {"group": "billing", "topic": "orders"}
    assert value(found, "kastle_consumer_group_lag_records", **billing, partition=0) == 3
    assert value(found, "kastle_consumer_group_lag_records", **billing, partition=1) == 0
    assert value(found, "kastle_consumer_group_committed_offset", **billing, partition=0) == 9
    assert value(found, "kastle_requests_total", api="Produce", error="NONE") >= 19
    produced = value(found, "kastle_request_latency_seconds_count", api="Produce")
    assert (
        produced >= 19
        and value(found, "kastle_request_latency_seconds_bucket", api="Produce", le="+Inf") == produced
    )
    assert value(found, "kastle_brokers_up") == 1 and value(found, "kastle_cluster_running") == 1
    for source in ("brokers", "metadata", "configs", "offsets", "consumer_groups"):
        assert value(found, "kastle_export_source_up", source=source) == 1, source
    assert not any("__consumer_offsets" in str(labels) for _, labels in found)  # the platform's topic

    # Another tenant's token: 404, as for every object of another organization.
    assert_error(Tenant("owner").client.get(url), 404)
    print(f"\nmonitoring export e2e: {time.monotonic() - started:.1f}s")


def test_consumer_lag_alert_fires_to_a_signed_webhook_then_resolves(e2e, api_client):
    started = time.monotonic()
    receiver = WebhookReceiver()
    try:
        client, cid, bootstrap, key, secret = tenant_with_cluster(api_client, "lag@e2e.example", "Laggers", 1)
        hook = client.post("/api/v1/alerts/channels", {"name": "ops", "kind": "webhook", "url": receiver.url})
        assert hook.status_code == 201, hook.content
        rule = client.post(
            "/api/v1/alerts/rules",
            {"name": "billing lag", "kind": "consumer_lag", "cluster": cid, "group_id": "billing",
             "threshold": "10", "channels": [hook.json()["id"]]},
            format="json",
        )  # fmt: skip
        assert rule.status_code == 201, rule.content
        rule_id = rule.json()["id"]

        produce_to(bootstrap, key, secret, "orders", 0, 30, "x")
        consume_and_commit(bootstrap, key, secret, "billing", "orders", {0: 5})  # lag 25 > 10

        def events(kind):
            return [r for r in receiver.events() if r.json["event"] == kind]

        wait_until(lambda: events("firing"), timeout=30, message="the firing webhook")
        [firing] = events("firing")
        assert delivery.verify(hook.json()["secret"], firing.headers[delivery.SIGNATURE_HEADER], firing.body)
        assert firing.json["rule"]["id"] == rule_id and firing.json["value"] == "25"
        assert firing.headers[delivery.ID_HEADER] == firing.json["id"]
        body = client.get(f"/api/v1/alerts/rules/{rule_id}").json()
        assert body["state"] == "firing" and Decimal(body["value"]) == 25
        wait_until(
            lambda: client.get(f"/api/v1/alerts/rules/{rule_id}").json()["last_notified_at"],
            timeout=10,
            message="last_notified_at",
        )

        consume_and_commit(bootstrap, key, secret, "billing", "orders", {0: 30})  # caught up: lag 0
        wait_until(lambda: events("resolved"), timeout=30, message="the resolved webhook")
        [resolved] = events("resolved")
        assert delivery.verify(
            hook.json()["secret"], resolved.headers[delivery.SIGNATURE_HEADER], resolved.body
        )
        assert resolved.json["value"] == "0" and resolved.json["state"] == "ok"
        assert client.get(f"/api/v1/alerts/rules/{rule_id}").json()["state"] == "ok"

        # Beat kept evaluating every second the whole time: still exactly one message per change.
        time.sleep(2)
        assert [r.json["event"] for r in receiver.events()] == ["firing", "resolved"]
        rule_row = AlertRule.objects.get(public_id=rule_id)
        assert rule_row.transitions == 2
        assert Notification.objects.filter(rule=rule_row, status="sent").count() == 2

        # Another tenant: 404 on the rule and the channel, nothing in its lists.
        other = Tenant("owner").client
        assert_error(other.get(f"/api/v1/alerts/rules/{rule_id}"), 404)
        assert_error(other.post(f"/api/v1/alerts/channels/{hook.json()['id']}/test"), 404)
        assert other.get("/api/v1/alerts/rules").json()["results"] == []
        assert other.get("/api/v1/alerts/notifications").json()["results"] == []
    finally:
        receiver.close()
    print(f"\nconsumer lag alert e2e: {time.monotonic() - started:.1f}s")
