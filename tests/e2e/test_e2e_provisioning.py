"""Provisioning end to end: REST -> PostgreSQL -> Celery worker + beat -> real brokerd -> Kafka clients.

Timings are printed (pytest -s) but never asserted; polls allow about 3x the targets.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from clusters.models import Broker, Cluster
from tests.e2e.provisioning_stack import (
    auth_result,
    consume_all,
    create_running_cluster,
    plain_login,
    produce,
    provisioning_env,
    stop_brokers,
    time_until,
    wait_status,
)
from tests.helpers import wait_until
from tests.platform.api import Tenant, assert_error


@pytest.fixture(scope="module")
def _provisioning_env():
    with provisioning_env() as env:
        yield env


@pytest.fixture(scope="module")
def stack(_provisioning_env, celery_services):
    """The shared worker + beat, started with this module's provisioning environment."""
    yield celery_services
    stop_brokers(celery_services.data_dir)


@pytest.fixture
def e2e(stack, celery_worker):
    # Each test starts from a flushed database: wait until the worker re-registered its host.
    from clusters.models import Host

    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield stack
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()  # the next test's clusters may reuse these ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _broker(cluster_id: str) -> Broker:
    return Broker.objects.select_related("host").get(cluster__public_id=cluster_id, node_id=1)


def test_the_whole_journey_over_rest(e2e, api_client):
    # 1. sign up
    signup = api_client.post(
        "/api/v1/signup",
        {"email": "ops@journey.example", "password": "a long passphrase 42", "organization": "Journey"},
    )
    assert signup.status_code == 201, signup.content
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {signup.json()['token']}")
    client = api_client

    # 2. create a cluster; it becomes RUNNING
    started = time.monotonic()
    created = client.post(  # SASL_PLAINTEXT is an explicit opt-in (SASL_SSL: tests/e2e/test_e2e_security.py)
        "/api/v1/clusters", {"name": "journey", "plan": "basic", "security_protocol": "SASL_PLAINTEXT"}
    )
    assert created.status_code == 202 and created.json()["status"] == "PROVISIONING"
    cluster_id = created.json()["id"]
    cluster = wait_status(client, cluster_id, "RUNNING", timeout=30)
    print(f"\ncreate -> RUNNING: {time.monotonic() - started:.2f}s")
    assert cluster["security_protocol"] == "SASL_PLAINTEXT"
    bootstrap = cluster["bootstrap_servers"]
    broker = _broker(cluster_id)
    assert bootstrap == f"127.0.0.1:{broker.port}"
    data_dir = e2e.data_dir / "hosts" / "local" / "clusters" / cluster_id
    assert (data_dir / "broker-1" / "data").is_dir()
    toml = (data_dir / "broker-1" / "brokerd.toml").read_text()
    assert '"auto.create.topics.enable" = false' in toml

    # 3. a 3-partition topic over REST
    topic = client.post(f"/api/v1/clusters/{cluster_id}/topics", {"name": "orders", "partitions": 3})
    assert topic.status_code == 201, topic.content
    assert topic.json()["partitions_count"] == 3
    assert_error(
        client.post(f"/api/v1/clusters/{cluster_id}/topics", {"name": "orders"}), 409, "topic_already_exists"
    )

    # 4. an API key; it works within 2 s (polled with slack)
    made = client.post(f"/api/v1/clusters/{cluster_id}/api-keys", {"description": "journey"})
    assert made.status_code == 201
    key, secret = made.json()["key"], made.json()["secret"]
    took = time_until(lambda: plain_login(bootstrap, key, secret), timeout=6)
    print(f"new key works after {took:.2f}s")
    assert auth_result(bootstrap, key, secret) is True

    # 5. 10,000 records in and out over SASL_PLAINTEXT / PLAIN
    produce(bootstrap, key, secret, "orders", 10_000)
    values = consume_all(bootstrap, key, secret, "orders", 3, 10_000)
    assert len(values) == 10_000
    assert set(values) == {f"r-{i}".encode() for i in range(10_000)}
    detail = client.get(f"/api/v1/clusters/{cluster_id}/topics/orders").json()
    assert sum(p["latest_offset"] for p in detail["partitions"]) == 10_000
    assert detail["size_bytes"] is None or detail["size_bytes"] > 0
    print(f"topic size on disk: {detail['size_bytes']} bytes")

    # Another tenant sees none of it.
    other = Tenant("owner").client
    for path in (
        f"/api/v1/clusters/{cluster_id}",
        f"/api/v1/clusters/{cluster_id}/topics",
        f"/api/v1/clusters/{cluster_id}/topics/orders",
        f"/api/v1/clusters/{cluster_id}/api-keys",
        f"/api/v1/clusters/{cluster_id}/api-keys/{key}",
    ):
        assert_error(other.get(path), 404)
    assert_error(other.post(f"/api/v1/clusters/{cluster_id}/topics", {"name": "x"}), 404)
    assert_error(other.delete(f"/api/v1/clusters/{cluster_id}/topics/orders"), 404)
    assert_error(other.delete(f"/api/v1/clusters/{cluster_id}/api-keys/{key}"), 404)

    # 6. revoke the key: a new connection fails to authenticate
    assert client.delete(f"/api/v1/clusters/{cluster_id}/api-keys/{key}").status_code == 204
    took = time_until(lambda: not plain_login(bootstrap, key, secret), timeout=6)
    print(f"revoked key refused after {took:.2f}s")
    assert auth_result(bootstrap, key, secret) is False

    # 7. delete the cluster: its ports are free and its data directory is gone
    port, admin_port = broker.port, broker.admin_port
    started = time.monotonic()
    assert client.delete(f"/api/v1/clusters/{cluster_id}").status_code == 202
    wait_status(client, cluster_id, "DELETED", timeout=30)
    print(f"delete -> DELETED: {time.monotonic() - started:.2f}s")
    assert not data_dir.exists()
    assert _port_free(port) and _port_free(admin_port)
    from provisioning.models import PortLease

    assert not PortLease.objects.filter(broker__cluster__public_id=cluster_id).exists()


def test_topics_rest_rules(e2e):
    tenant = Tenant("owner")
    client = tenant.client
    cluster = create_running_cluster(client, "topics")
    base = f"/api/v1/clusters/{cluster['id']}/topics"

    error = assert_error(client.post(base, {"name": "bad name!", "partitions": 1}), 400, "validation_error")
    assert "name" in error["details"]
    error = assert_error(client.post(base, {"name": "t", "configs": {"retention.ms": "soon"}}), 400)
    assert "retention.ms" in error["details"]["configs"]
    error = assert_error(client.post(base, {"name": "t", "configs": {"no.such.config": "1"}}), 400)
    assert "no.such.config" in error["details"]["configs"]
    error = assert_error(client.post(base, {"name": "t", "configs": {"retention.ms": "-1"}}), 400)
    assert "retention.ms" in error["details"]["configs"]  # basic: at most 7 days, never forever
    assert_error(client.post(base, {"name": "big", "partitions": 101}), 409, "limit_exceeded")

    made = client.post(base, {"name": "events", "partitions": 2, "configs": {"retention.ms": "3600000"}})
    assert made.status_code == 201, made.content
    configs = {c["name"]: c for c in made.json()["configs"]}
    assert configs["retention.ms"]["value"] == "3600000" and not configs["retention.ms"]["is_default"]

    listed = client.get(base).json()
    assert listed["count"] == 1 and listed["results"] == [{"name": "events", "partitions_count": 2}]

    patched = client.patch(f"{base}/events", {"partitions": 4, "configs": {"retention.ms": None}})
    assert patched.status_code == 200, patched.content
    assert patched.json()["partitions_count"] == 4
    assert {c["name"]: c for c in patched.json()["configs"]}["retention.ms"]["is_default"]
    error = assert_error(client.patch(f"{base}/events", {"partitions": 1}), 400)
    assert "partitions" in error["details"]

    member = tenant.member("member").client
    assert member.get(f"{base}/events").status_code == 200
    assert_error(member.delete(f"{base}/events"), 403)

    assert client.delete(f"{base}/events").status_code == 204
    assert_error(client.get(f"{base}/events"), 404)
    actions = set(
        tenant.organization.audit_events.filter(action__startswith="topic.").values_list("action", flat=True)
    )
    assert actions == {"topic.create", "topic.update", "topic.delete"}

    # Compacted topics: Kafka's names and validation, the policy shown in the topic's configs.
    for key, value in (("cleanup.policy", "shred"), ("min.cleanable.dirty.ratio", "2"),
                       ("delete.retention.ms", "-5"), ("segment.bytes", "1000")):
        error = assert_error(client.post(base, {"name": "t", "configs": {key: value}}), 400)
        assert key in error["details"]["configs"], error
    error = assert_error(client.post(base, {"name": "t", "configs": {
        "min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "1000"}}), 400)
    assert "min.compaction.lag.ms" in str(error["details"]["configs"])
    made = client.post(base, {"name": "table", "configs": {"cleanup.policy": "compact,delete",
                                                           "min.cleanable.dirty.ratio": "0.2",
                                                           "delete.retention.ms": "60000"}})
    assert made.status_code == 201, made.content
    configs = {c["name"]: c["value"] for c in client.get(f"{base}/table").json()["configs"]}
    assert configs["cleanup.policy"] == "compact,delete" and configs["min.cleanable.dirty.ratio"] == "0.2"
    assert configs["max.compaction.lag.ms"] == str(2**63 - 1)  # Kafka's default, described
    patched = client.patch(f"{base}/table", {"configs": {"cleanup.policy": "compact"}})
    assert {c["name"]: c["value"] for c in patched.json()["configs"]}["cleanup.policy"] == "compact"

    # Not RUNNING -> 409.
    assert client.delete(f"/api/v1/clusters/{cluster['id']}").status_code == 202
    assert_error(client.get(base), 409, "cluster_not_running")


def test_a_killed_brokerd_is_restarted_with_its_data(e2e):
    client = Tenant("owner").client
    cluster = create_running_cluster(client, "crashy")
    bootstrap = cluster["bootstrap_servers"]
    assert (
        client.post(f"/api/v1/clusters/{cluster['id']}/topics", {"name": "t", "partitions": 1}).status_code
        == 201
    )
    made = client.post(f"/api/v1/clusters/{cluster['id']}/api-keys", {"description": "k"}).json()
    wait_until(lambda: auth_result(bootstrap, made["key"], made["secret"], timeout=2) is True, timeout=6)
    produce(bootstrap, made["key"], made["secret"], "t", 500)

    old_pid = _broker(cluster["id"]).pid
    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()

    def serving_again():
        broker = _broker(cluster["id"])
        return (
            broker.pid not in (None, old_pid)
            and broker.status == "RUNNING"
            and auth_result(bootstrap, made["key"], made["secret"], timeout=2)
        )

    wait_until(serving_again, timeout=30, interval=0.2, message="brokerd restarted")
    print(f"\nkill -9 brokerd -> serving again: {time.monotonic() - killed:.2f}s")
    assert Cluster.objects.get(public_id=cluster["id"]).bootstrap_servers == bootstrap
    assert len(consume_all(bootstrap, made["key"], made["secret"], "t", 1, 500)) == 500


def test_brokers_survive_a_killed_worker_and_are_adopted(e2e):
    client = Tenant("owner").client
    cluster = create_running_cluster(client, "steady")
    pid = _broker(cluster["id"]).pid

    e2e.kill("worker", signal.SIGKILL)
    wait_until(lambda: not e2e.processes["worker"].alive, timeout=10)
    # A cluster created while no worker runs is picked up by the next one.
    pending = client.post("/api/v1/clusters", {"name": "queued", "plan": "basic"}).json()["id"]
    assert _alive(pid), "brokerd must outlive its worker"
    e2e.restart("worker")
    wait_status(client, pending, "RUNNING", timeout=45)
    e2e.wait_for_log("worker", "provisioning.host_reconcile", timeout=15)
    assert _alive(pid) and _broker(cluster["id"]).pid == pid  # adopted, not restarted

    # The new worker supervises it: a crash is repaired.
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: _broker(cluster["id"]).pid not in (None, pid) and _broker(cluster["id"]).status == "RUNNING",
        timeout=30,
        message="restart by the new worker",
    )


def test_a_cluster_left_provisioning_by_a_dead_worker_is_finished(e2e):
    """No task was ever queued for it (as if its worker died holding the message)."""
    tenant = Tenant("owner")
    from brokerd.credentials import make_user_entry

    cluster = Cluster(organization=tenant.organization, name="orphaned-task", plan="basic")
    cluster.internal_verifier = make_user_entry(cluster.internal_password())
    cluster.save()
    Cluster.objects.filter(pk=cluster.pk).update(
        status_changed_at=cluster.status_changed_at.replace(year=2020)
    )
    wait_status(tenant.client, cluster.public_id, "RUNNING", timeout=45)


def test_orphan_brokers_and_directories_are_removed(e2e):
    client = Tenant("owner").client
    cluster = create_running_cluster(client, "doomed")
    broker = _broker(cluster["id"])
    directory = e2e.data_dir / "hosts" / "local" / "clusters" / cluster["id"]
    stray = e2e.data_dir / "hosts" / "local" / "clusters" / "lkc-stray0"
    stray.mkdir(parents=True)
    os.utime(stray, (time.time() - 60, time.time() - 60))
    # The database forgets the cluster (as after a restore): its process and directory are orphans.
    Cluster.objects.filter(pk=broker.cluster_id).delete()
    wait_until(
        lambda: not _alive(broker.pid) and not directory.exists() and not stray.exists(),
        timeout=30,
        message="orphans removed",
    )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
