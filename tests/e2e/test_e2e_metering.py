"""Metering and billing end to end: Kafka clients -> real brokerd counters -> Celery beat/worker
(1 s metering interval) -> hourly rows in PostgreSQL -> costs, invoice, credit, spend cap over REST.

Byte counts are known exactly: every batch holds one record (the producer flushes after each), so
each batch is 61 header bytes plus one v2 record whose size follows from the key and value
(docs/metering.md: usage is counted in record-batch bytes).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from decimal import ROUND_HALF_UP, Decimal

import pytest
from confluent_kafka import Producer

from accounts.models import AuditEvent, Organization
from clusters.models import Broker
from metering import quotas, services
from metering.models import BrokerMeter, HourlyUsage
from provisioning import supervisor
from tests.e2e.provisioning_stack import (
    auth_result,
    consume_all,
    create_running_cluster,
    plain_login,
    provisioning_env,
    sasl,
    stop_brokers,
    wait_status,
)
from tests.helpers import environ, wait_until
from tests.platform.api import Tenant, assert_error

METERING_ENV = {"KASTLE_METERING_INTERVAL_SECONDS": "1", "KASTLE_SPEND_CAP_PRODUCER_BYTE_RATE": "1024"}


@pytest.fixture(scope="module")
def _metering_env():
    with environ(**METERING_ENV), provisioning_env() as env:
        yield env


@pytest.fixture(scope="module")
def stack(_metering_env, celery_services):
    yield celery_services
    stop_brokers(celery_services.data_dir)


@pytest.fixture
def e2e(stack, celery_worker):
    from clusters.models import Host

    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield stack
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


# --- exact byte counts -------------------------------------------------------------------------------
def _varint_size(n: int) -> int:
    z = (n << 1) ^ (n >> 63)  # zigzag
    size = 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def batch_bytes(key: bytes, value: bytes) -> int:
    """A v2 record batch holding one uncompressed record without headers."""
    body = 1 + 1 + 1  # attributes, timestampDelta 0, offsetDelta 0
    body += _varint_size(len(key)) + len(key) + _varint_size(len(value)) + len(value) + 1  # headers: 0
    return 61 + _varint_size(body) + body


def produce_one_per_batch(
    bootstrap: str, key: str, secret: str, topic: str, records: list[tuple[bytes, bytes]]
):
    producer = Producer(sasl(bootstrap, key, secret, acks="all", **{"linger.ms": 0}))
    failures = []
    for k, v in records:
        producer.produce(
            topic, key=k, value=v, on_delivery=lambda err, msg: failures.append(err) if err else None
        )
        assert producer.flush(30) == 0
    assert not failures, failures[:3]
    return sum(batch_bytes(k, v) for k, v in records)


def records(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"{prefix}-{i}".encode(), (f"{prefix} value {i} " + "x" * (i % 40)).encode()) for i in range(n)]


def usage_totals(cluster_id: str) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for row in HourlyUsage.objects.filter(cluster__public_id=cluster_id):
        acc = out.setdefault((row.principal, row.topic), [0, 0, 0, 0])
        for i, f in enumerate(("bytes_in", "records_in", "bytes_out", "records_out")):
            acc[i] += getattr(row, f)
    return out


def counted(cluster_id: str, series: dict[tuple[str, str], list[int]]) -> dict[tuple[str, str], list[int]]:
    totals = usage_totals(cluster_id)
    return {key: totals.get(key, [0, 0, 0, 0]) for key in series}


def _broker(cluster_id: str) -> Broker:
    return Broker.objects.select_related("host", "cluster").get(cluster__public_id=cluster_id, node_id=1)


def _throttle_seconds(broker: Broker, principal: str) -> float:
    text = supervisor.fetch_metrics(broker.host.address, broker.admin_port) or ""
    prefix = f'kastle_throttle_time_seconds_total{{principal="{principal}",quota="producer_byte_rate"}}'
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def r6(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def r2(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_usage_costs_invoice_credit_and_spend_cap(e2e, api_client):
    started = time.monotonic()
    signup = api_client.post(
        "/api/v1/signup",
        {"email": "meter@e2e.example", "password": "a long passphrase 42", "organization": "Metered"},
    )
    assert signup.status_code == 201, signup.content
    client = api_client
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signup.json()['token']}")
    cluster = create_running_cluster(client, "metered")
    cid, bootstrap = cluster["id"], cluster["bootstrap_servers"]
    for topic in ("orders", "clicks", "capped"):
        made = client.post(f"/api/v1/clusters/{cid}/topics", {"name": topic, "partitions": 1})
        assert made.status_code == 201, made.content
    keys = [client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": d}).json() for d in ("a", "b")]
    (k1, s1), (k2, s2) = ((k["key"], k["secret"]) for k in keys)
    for k, s in ((k1, s1), (k2, s2)):
        wait_until(lambda k=k, s=s: plain_login(bootstrap, k, s), timeout=10, message="key works")

    # Phase 1: key 1 writes orders, key 2 writes clicks.
    orders = produce_one_per_batch(bootstrap, k1, s1, "orders", records("o1", 40))
    clicks = produce_one_per_batch(bootstrap, k2, s2, "clicks", records("c1", 25))
    series = {(k1, "orders"): [orders, 40, 0, 0], (k2, "clicks"): [clicks, 25, 0, 0],
              (k1, "clicks"): [0, 0, 0, 0], (k2, "orders"): [0, 0, 0, 0]}  # fmt: skip
    wait_until(lambda: counted(cid, series) == series, timeout=20, message="phase 1 usage rows")
    broker = _broker(cid)
    phase1_text = supervisor.fetch_metrics(broker.host.address, broker.admin_port)
    phase1_at = BrokerMeter.objects.get(broker=broker).last_taken_at

    # kill -9 brokerd in the middle; provisioning restarts it with its data and counters.
    old_pid = broker.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_until(
        lambda: (b := _broker(cid)).pid not in (None, old_pid) and b.status == "RUNNING"
        and auth_result(bootstrap, k1, s1, timeout=2),
        timeout=30, interval=0.2, message="brokerd restarted",
    )  # fmt: skip

    # Phase 2: more writes; then each key reads the other key's topic once, from the start.
    orders += produce_one_per_batch(bootstrap, k1, s1, "orders", records("o2", 30))
    clicks += produce_one_per_batch(bootstrap, k2, s2, "clicks", records("c2", 20))
    assert len(consume_all(bootstrap, k2, s2, "orders", 1, 70)) == 70
    assert len(consume_all(bootstrap, k1, s1, "clicks", 1, 45)) == 45
    series = {(k1, "orders"): [orders, 70, 0, 0], (k2, "clicks"): [clicks, 45, 0, 0],
              (k1, "clicks"): [0, 0, clicks, 45], (k2, "orders"): [0, 0, orders, 70]}  # fmt: skip
    wait_until(lambda: counted(cid, series) == series, timeout=20, message="phase 2 usage rows")
    broker = _broker(cid)
    text = supervisor.fetch_metrics(broker.host.address, broker.admin_port)
    assert f'kastle_partition_bytes_stored{{partition="0",topic="orders"}} {float(orders)}' in text

    # A duplicated scrape and a late one change nothing.
    now = BrokerMeter.objects.get(broker=broker).last_taken_at + dt.timedelta(milliseconds=1)
    services.usage_record_scrape(broker=broker.pk, scrape=text, taken_at=now)
    assert services.usage_record_scrape(broker=broker.pk, scrape=text, taken_at=now).status == "stale"
    assert services.usage_record_scrape(
        broker=broker.pk, scrape=phase1_text, taken_at=phase1_at
    ).status == "stale"
    assert counted(cid, series) == series
    print(f"\nusage matched across kill -9 and duplicate scrapes after {time.monotonic() - started:.1f}s")

    # Spend cap: reached (a $0 cap) -> produce on the cluster is throttled, nothing is lost.
    capped = client.put("/api/v1/billing/spend-cap", {"spend_cap": "0.00"})
    assert capped.status_code == 200 and capped.json()["throttled"] is True
    wait_until(lambda: BrokerMeter.objects.filter(broker=broker, quota_applied=True).exists(), timeout=10,
               message="spend-cap quota applied")  # fmt: skip
    assert quotas.default_user_quotas(_broker(cid))["producer_byte_rate"] == 1024
    throttles: list[float] = []
    producer = Producer(
        sasl(
            bootstrap,
            k1,
            s1,
            acks="all",
            **{"linger.ms": 50},
            throttle_cb=lambda e: throttles.append(e.throttle_time),
        )
    )
    for i in range(30):
        producer.produce("capped", value=b"%04d" % i + b"y" * 1000)
    assert producer.flush(30) == 0
    wait_until(
        lambda: producer.poll(0.1) is not None and throttles, timeout=10, message="a throttle callback"
    )
    assert max(throttles) > 0
    assert _throttle_seconds(broker, k1) > 0
    assert len(consume_all(bootstrap, k2, s2, "capped", 1, 30)) == 30  # no record lost
    events = {e.action for e in e2e_org_events(signup)}
    assert {"billing.spend_cap.update", "billing.spend_cap.throttle"} <= events

    # Lifting the cap removes the quota within an interval; the plan's own rate is back.
    lifted = client.put("/api/v1/billing/spend-cap", {"spend_cap": None}, format="json")
    assert lifted.status_code == 200 and lifted.json()["throttled"] is False
    wait_until(lambda: BrokerMeter.objects.filter(broker=broker, quota_applied=False).exists(), timeout=10,
               message="spend-cap quota removed")  # fmt: skip
    assert quotas.default_user_quotas(_broker(cid))["producer_byte_rate"] == 10 * 1024 * 1024
    throttles.clear()
    fresh = Producer(
        sasl(bootstrap, k1, s1, acks="all", throttle_cb=lambda e: throttles.append(e.throttle_time))
    )
    fresh.produce("capped", value=b"after")
    assert fresh.flush(30) == 0 and not throttles
    assert "billing.spend_cap.lift" in {e.action for e in e2e_org_events(signup)}

    # Delete the cluster: its final usage is collected; then everything is still.
    assert client.delete(f"/api/v1/clusters/{cid}").status_code == 202
    wait_status(client, cid, "DELETED", timeout=30)
    assert counted(cid, series) == series
    rows = list(HourlyUsage.objects.filter(cluster__public_id=cid))

    # Costs match a hand computation from the hourly rows and the plan's prices (GET /plans).
    prices = {k: Decimal(v) for k, v in client.get("/api/v1/plans/basic").json()["prices"].items()
              if k.startswith(("base", "per_"))}  # fmt: skip
    units = {
        "base": (sum(r.cluster_ms for r in rows), prices["base_per_hour"], 3_600_000),
        "ingress": (sum(r.bytes_in for r in rows), prices["per_gb_in"], 10**9),
        "egress": (sum(r.bytes_out for r in rows), prices["per_gb_out"], 10**9),
        "storage": (
            sum(r.storage_byte_seconds for r in rows),
            prices["per_gb_month_stored"],
            10**9 * 3600 * 730,
        ),
        "partitions": (sum(r.partition_ms for r in rows), prices["per_partition_hour"], 3_600_000),
    }
    exact = {name: Decimal(u) * p / Decimal(d) for name, (u, p, d) in units.items() if u}
    [costs] = client.get("/api/v1/billing/costs", {"group_by": "cluster"}).json()["results"]
    assert {line["dimension"]: Decimal(line["amount"]) for line in costs["lines"]} == {
        k: r6(v) for k, v in exact.items()
    }
    total_cost = sum(r6(v) for v in exact.values())
    credit = client.get("/api/v1/billing/credit").json()
    assert Decimal(credit["remaining"]) == Decimal("400.00") - total_cost  # the credit falls by the cost

    org = Organization.objects.get(public_id=signup.json()["organization"]["id"])
    month = dt.datetime.now(dt.UTC).date().replace(day=1)
    invoice = services.invoice_close(organization=org, month=month, allow_open_month=True)
    body = client.get(f"/api/v1/billing/invoices/{invoice.public_id}").json()
    assert {line["dimension"]: Decimal(line["amount"]) for line in body["lines"]} == {
        k: r2(v) for k, v in exact.items()
    }
    subtotal = sum(r2(v) for v in exact.values())
    assert Decimal(body["subtotal"]) == subtotal and Decimal(body["total"]) == 0
    assert Decimal(client.get("/api/v1/billing/credit").json()["remaining"]) == Decimal("400.00") - subtotal

    # Another tenant sees none of it.
    other = Tenant("owner").client
    assert_error(other.get("/api/v1/usage", {"cluster": cid}), 404)
    assert other.get("/api/v1/usage").json()["results"] == []
    assert other.get("/api/v1/billing/costs").json()["results"] == []
    assert other.get("/api/v1/billing/invoices").json()["results"] == []
    assert_error(other.get(f"/api/v1/billing/invoices/{invoice.public_id}"), 404)
    print(f"metering e2e: {time.monotonic() - started:.1f}s")


def e2e_org_events(signup):
    return AuditEvent.objects.filter(organization__public_id=signup.json()["organization"]["id"])
