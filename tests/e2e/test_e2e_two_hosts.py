"""Two broker hosts on one machine: `a` on 127.0.0.1 and `b` on 127.0.0.2, each with its own worker,
queue (`host.a`, `host.b`) and data root; a control-plane worker (queue `kastle`, no host) and beat.

Clusters are placed on both hosts and reachable there by Kafka clients; when a host's worker stops
heart-beating its clusters show as degraded and it gets no new placements, until it reports back.
"""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import Consumer

from clusters.models import Broker, Host
from tests.e2e.provisioning_stack import (
    auth_result,
    consume_all,
    produce,
    provisioning_env,
    sasl,
    wait_status,
)
from tests.helpers import wait_until
from tests.platform.api import Tenant, assert_page

HOST_TIMEOUT = 6  # seconds without a heartbeat before a host is not live (heartbeat every second)


@pytest.fixture(scope="module")
def _env():
    with provisioning_env():
        os.environ["KASTLE_HOST_TIMEOUT"] = str(HOST_TIMEOUT)  # restored by provisioning_env
        yield


@pytest.fixture(scope="module")
def hosts(_env, celery_services):
    # The control plane's worker without a host of its own; then hosts a and b.
    celery_services.start_worker("worker", queues=["kastle"], concurrency=2, wait=False)
    celery_services.start_host_worker("a", "127.0.0.1", concurrency=2, wait=False)
    celery_services.start_host_worker("b", "127.0.0.2", concurrency=2, wait=False)
    celery_services.wait_ready("worker", "worker-a", "worker-b")
    return celery_services


@pytest.fixture
def two_hosts(hosts, celery_worker):
    # the module's default worker registered `local` before; a previous module's host may linger
    Host.objects.exclude(name__in=["a", "b"]).delete()
    wait_until(
        lambda: set(Host.objects.values_list("name", flat=True)) == {"a", "b"},
        timeout=20,
        message="hosts a and b registered",
    )
    yield hosts
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


def _broker(cluster_id: str) -> Broker:
    return Broker.objects.select_related("host").get(cluster__public_id=cluster_id, node_id=1)


def _create(client, name: str) -> str:
    body = {"name": name, "plan": "basic", "security_protocol": "SASL_PLAINTEXT"}  # the clients here
    response = client.post("/api/v1/clusters", body)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_clusters_on_two_hosts_and_a_host_that_stops_reporting(two_hosts):
    tenant = Tenant("owner")
    client = tenant.client
    first = wait_status(client, _create(client, "one"), "RUNNING", timeout=45)
    second = wait_status(client, _create(client, "two"), "RUNNING", timeout=45)
    placed = {_broker(c["id"]).host.name: c for c in (first, second)}
    assert set(placed) == {"a", "b"}, "the least loaded live host gets the next cluster"
    on_a, on_b = placed["a"], placed["b"]
    assert on_a["bootstrap_servers"].startswith("127.0.0.1:")
    assert on_b["bootstrap_servers"].startswith("127.0.0.2:")
    for host, cluster in placed.items():
        root = two_hosts.host_data_dir(host) / "hosts" / host / "clusters" / cluster["id"]
        assert (root / "broker-1" / "data").is_dir(), (
            f"{cluster['id']} keeps its data under host {host}'s root"
        )
        assert not cluster["degraded"]

    # Each is reachable by a Kafka client with a key (synced to its own host's credentials file).
    keys = {}
    for host, cluster in placed.items():
        base = f"/api/v1/clusters/{cluster['id']}"
        assert client.post(f"{base}/topics", {"name": "t", "partitions": 2}).status_code == 201
        made = client.post(f"{base}/api-keys", {"description": host}).json()
        keys[host] = (made["key"], made["secret"])
        bootstrap = cluster["bootstrap_servers"]
        wait_until(lambda: auth_result(bootstrap, *keys[host], timeout=2) is True, timeout=15)  # noqa: B023
        produce(bootstrap, *keys[host], "t", 200, prefix=host)
        assert len(consume_all(bootstrap, *keys[host], "t", 2, 200)) == 200

    # Consumer groups over REST on the second address too.
    bootstrap_b = on_b["bootstrap_servers"]
    consumer = Consumer(sasl(bootstrap_b, *keys["b"], **{"group.id": "g", "auto.offset.reset": "earliest"}))
    consumer.subscribe(["t"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 50 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        got += msg is not None and msg.error() is None
    consumer.commit(asynchronous=False)
    consumer.close()
    groups = assert_page(client.get(f"/api/v1/clusters/{on_b['id']}/consumer-groups").json())
    assert [g["group_id"] for g in groups] == ["g"]
    detail = client.get(f"/api/v1/clusters/{on_b['id']}/consumer-groups/g").json()
    assert detail["state"] == "Empty"
    assert sum(r["committed_offset"] or 0 for r in detail["offsets"]) == 50
    assert detail["total_lag"] == sum(r["latest_offset"] - r["committed_offset"] for r in detail["offsets"])

    # Host a's worker dies: its cluster is degraded (still serving), and new clusters go to b.
    pid_a = _broker(on_a["id"]).pid
    two_hosts.kill("worker-a")
    wait_until(
        lambda: client.get(f"/api/v1/clusters/{on_a['id']}").json()["degraded"],
        timeout=HOST_TIMEOUT * 4,
        interval=0.5,
        message="the cluster on host a to show as degraded",
    )
    listed = {c["id"]: c for c in assert_page(client.get("/api/v1/clusters").json())}
    assert listed[on_a["id"]]["degraded"] and not listed[on_b["id"]]["degraded"]
    assert listed[on_a["id"]]["status"] == "RUNNING"
    assert _alive(pid_a)
    assert auth_result(on_a["bootstrap_servers"], *keys["a"]) is True  # the broker itself still serves

    # a and b hold one broker each; a would win the tie by name, but it is not live.
    third = wait_status(client, _create(client, "three"), "RUNNING", timeout=45)
    assert _broker(third["id"]).host.name == "b"
    assert third["bootstrap_servers"].startswith("127.0.0.2:")

    # Host a reports back: not degraded, and its broker is adopted (not restarted).
    two_hosts.restart("worker-a")
    wait_until(
        lambda: not client.get(f"/api/v1/clusters/{on_a['id']}").json()["degraded"],
        timeout=30,
        interval=0.5,
        message="host a back",
    )
    assert _broker(on_a["id"]).pid == pid_a and _alive(pid_a)
