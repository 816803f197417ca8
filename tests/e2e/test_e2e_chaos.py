"""Chaos: brokerd and the worker killed at awkward moments, with a real worker, beat, PostgreSQL and Redis.

The awkward moments are hit deterministically with provisioning's test-only fault points
(`provisioning.faults`: the worker holds at a named point until the test has killed it), not by
timing luck. Every cluster must end RUNNING, DELETED or FAILED with a reason — never stuck — and
no record a producer saw acknowledged (acks=all) on a RUNNING cluster may be lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from clusters.models import Broker, Cluster, Host
from provisioning import supervisor
from provisioning.models import PortLease
from tests.e2e.provisioning_stack import (
    auth_result,
    consume_all,
    plain_login,
    produce,
    provisioning_env,
    sasl,
    wait_status,
)
from tests.helpers import wait_until
from tests.platform.api import Tenant

TERMINAL = {"RUNNING", "DELETED", "FAILED"}


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def _env(fault_dir):
    with provisioning_env():
        os.environ["KASTLE_FAULT_DIR"] = str(fault_dir)  # restored below; the worker copies it
        try:
            yield
        finally:
            os.environ.pop("KASTLE_FAULT_DIR", None)


@pytest.fixture(scope="module")
def stack(_env, celery_services):
    # Room for three held steps at once (provision, delete, credentials) plus the reconciler.
    celery_services.start_worker("worker", concurrency=5)
    return celery_services


@pytest.fixture
def chaos(stack, celery_worker, fault_dir):
    for entry in fault_dir.iterdir():
        entry.unlink()
    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield stack
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


def arm(fault_dir: Path, point: str, cluster_id: str = "") -> None:
    (fault_dir / f"{point}.arm").write_text(cluster_id)


def wait_reached(fault_dir: Path, point: str, timeout: float = 30.0) -> str:
    path = fault_dir / f"{point}.reached"
    wait_until(path.exists, timeout=timeout, interval=0.05, message=f"fault point {point}")
    return path.read_text().split()[0]


def cluster_pids(data_dir: Path, cluster_id: str) -> list[int]:
    root = data_dir / "hosts" / "local"
    return [
        pid
        for config, pid in supervisor.brokerd_processes(root).items()
        if config.parent.parent.name == cluster_id
    ]


def kill_brokers(data_dir: Path, cluster_id: str) -> list[int]:
    pids = cluster_pids(data_dir, cluster_id)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def kill_worker(stack) -> None:
    stack.kill("worker", signal.SIGKILL)
    wait_until(lambda: not stack.processes["worker"].alive, timeout=10, message="worker dead")


def assert_settled(client, cluster_ids: list[str], timeout: float = 60.0) -> dict[str, dict]:
    """Every cluster reaches RUNNING, DELETED or FAILED (with a reason); returns their bodies."""

    def settled():
        bodies = {cid: client.get(f"/api/v1/clusters/{cid}").json() for cid in cluster_ids}
        return bodies if all(b["status"] in TERMINAL for b in bodies.values()) else None

    bodies = wait_until(settled, timeout=timeout, interval=0.3, message="every cluster settled")
    for body in bodies.values():
        if body["status"] == "FAILED":
            assert body["status_reason"], body
    return bodies


def _create(client, name: str) -> str:
    body = {"name": name, "plan": "basic", "security_protocol": "SASL_PLAINTEXT"}  # the clients here
    response = client.post("/api/v1/clusters", body)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_lifecycle_steps_interrupted_by_killed_brokerd_and_worker(chaos, fault_dir):
    client = Tenant("owner").client
    doomed_id, keyed_id = _create(client, "doomed"), _create(client, "keyed")
    wait_status(client, doomed_id, "RUNNING")
    keyed = wait_status(client, keyed_id, "RUNNING")
    data_dir = chaos.data_dir

    # The keyed cluster holds acknowledged records and a working key.
    bootstrap = keyed["bootstrap_servers"]
    base = f"/api/v1/clusters/{keyed_id}"
    assert client.post(f"{base}/topics", {"name": "t", "partitions": 2}).status_code == 201
    old = client.post(f"{base}/api-keys", {"description": "old"}).json()
    wait_until(lambda: plain_login(bootstrap, old["key"], old["secret"]), timeout=10)
    produce(bootstrap, old["key"], old["secret"], "t", 300, prefix="before")

    # 1. Mid credentials sync: the cluster lock is held, the new file not yet written.
    arm(fault_dir, "credentials.before_write", keyed_id)
    assert client.delete(f"{base}/api-keys/{old['key']}").status_code == 204
    new = client.post(f"{base}/api-keys", {"description": "new"}).json()
    wait_reached(fault_dir, "credentials.before_write")

    # 2. Mid delete: brokerd stopped, its data and ports not yet released.
    arm(fault_dir, "deprovision.broker_stopped", doomed_id)
    assert client.delete(f"/api/v1/clusters/{doomed_id}").status_code == 202
    wait_reached(fault_dir, "deprovision.broker_stopped")
    doomed_dir = data_dir / "hosts" / "local" / "clusters" / doomed_id
    assert doomed_dir.exists() and PortLease.objects.filter(broker__cluster__public_id=doomed_id).exists()

    # 3. Mid provision: brokerd just spawned, not yet healthy, the cluster PROVISIONING.
    arm(fault_dir, "provision.broker_spawned")
    fresh_id = _create(client, "fresh")
    assert wait_reached(fault_dir, "provision.broker_spawned") == fresh_id
    assert Cluster.objects.get(public_id=fresh_id).status == "PROVISIONING"

    assert not plain_login(bootstrap, new["key"], new["secret"]), "the sync is being held"

    # Kill brokerd (of the keyed and the fresh cluster) and the worker, all at these moments.
    assert kill_brokers(data_dir, keyed_id) and kill_brokers(data_dir, fresh_id)
    kill_worker(chaos)
    killed = time.monotonic()
    chaos.restart("worker")

    bodies = assert_settled(client, [doomed_id, keyed_id, fresh_id])
    print(f"\nall settled {time.monotonic() - killed:.1f}s after the kill: "
          f"{ {k: v['status'] for k, v in bodies.items()} }")  # fmt: skip
    assert bodies[doomed_id]["status"] == "DELETED"
    assert not doomed_dir.exists()
    assert not PortLease.objects.filter(broker__cluster__public_id=doomed_id).exists()
    assert bodies[fresh_id]["status"] == "RUNNING", bodies[fresh_id]
    assert bodies[keyed_id]["status"] == "RUNNING"

    # The keyed cluster serves again with the new credentials file (old key refused) and all its records.
    wait_until(lambda: plain_login(bootstrap, new["key"], new["secret"]), timeout=30, message="new key works")
    assert not plain_login(bootstrap, old["key"], old["secret"])
    values = consume_all(bootstrap, new["key"], new["secret"], "t", 2, 300)
    assert sorted(values) == sorted(f"before-{i}".encode() for i in range(300))

    # The fresh cluster is usable.
    made = client.post(f"/api/v1/clusters/{fresh_id}/api-keys", {"description": "k"}).json()
    fresh_bootstrap = bodies[fresh_id]["bootstrap_servers"]
    wait_until(
        lambda: auth_result(fresh_bootstrap, made["key"], made["secret"], timeout=2) is True, timeout=15
    )


class Feeder(threading.Thread):
    """Produces numbered records (acks=all) until stopped; remembers which ones were acknowledged."""

    def __init__(self, bootstrap: str, key: str, secret: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.producer = Producer(
            sasl(bootstrap, key, secret, acks="all", **{"linger.ms": 5, "message.timeout.ms": 60000})
        )
        self.topic = topic
        self.acked: set[bytes] = set()
        self.failed = 0
        self.sent = 0
        self.stopping = threading.Event()

    def _delivered(self, err, msg) -> None:
        if err is None:
            self.acked.add(msg.value())
        else:
            self.failed += 1

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.producer.produce(
                    self.topic, value=f"rec-{self.sent}".encode(), on_delivery=self._delivered
                )
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.002)
        self.producer.flush(60)

    def acked_count(self) -> int:
        return len(self.acked)


def test_acknowledged_records_survive_kills_while_clients_are_connected(chaos):
    client = Tenant("owner").client
    cluster = wait_status(client, _create(client, "busy"), "RUNNING")
    cid, bootstrap = cluster["id"], cluster["bootstrap_servers"]
    assert client.post(f"/api/v1/clusters/{cid}/topics", {"name": "t", "partitions": 3}).status_code == 201
    made = client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": "k"}).json()
    key, secret = made["key"], made["secret"]
    wait_until(lambda: plain_login(bootstrap, key, secret), timeout=10)

    # A group consumer stays connected throughout (and must find the broker again).
    consumer = Consumer(
        sasl(bootstrap, key, secret, **{"group.id": "watch", "auto.offset.reset": "earliest"})
    )
    consumer.subscribe(["t"])
    feeder = Feeder(bootstrap, key, secret, "t")
    feeder.start()

    def progress(more: int = 200):
        target = feeder.acked_count() + more
        wait_until(lambda: feeder.acked_count() >= target, timeout=60, interval=0.05, message="acks")
        consumer.poll(0)

    try:
        progress()
        # brokerd killed under load: reconciliation restarts it; the clients reconnect.
        old_pid = Broker.objects.get(cluster__public_id=cid).pid
        assert kill_brokers(chaos.data_dir, cid) == [old_pid]
        progress()
        # The worker killed, then brokerd again while no worker supervises it; then the worker returns.
        kill_worker(chaos)
        progress()
        kill_brokers(chaos.data_dir, cid)
        time.sleep(0.5)
        chaos.restart("worker")
        progress()
    finally:
        feeder.stopping.set()
        feeder.join(90)
        consumer.close()
    assert not feeder.is_alive()
    acked = feeder.acked
    print(f"\nsent {feeder.sent}, acknowledged {len(acked)}, failed {feeder.failed}")
    assert Cluster.objects.get(public_id=cid).status == "RUNNING"

    # Every acknowledged record is there (retries may have written some twice: at-least-once).
    total = sum(
        p["latest_offset"] for p in client.get(f"/api/v1/clusters/{cid}/topics/t").json()["partitions"]
    )
    values = set(consume_all(bootstrap, key, secret, "t", 3, total))
    missing = acked - values
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"


def test_fault_points_are_inert_without_the_environment(tmp_path, monkeypatch):
    from provisioning import faults

    monkeypatch.delenv("KASTLE_FAULT_DIR", raising=False)
    (tmp_path / "provision.broker_spawned.arm").write_text("")
    faults.point("provision.broker_spawned", "lkc-x")  # returns at once
    assert (tmp_path / "provision.broker_spawned.arm").exists()
    monkeypatch.setenv("KASTLE_FAULT_DIR", str(tmp_path))
    (tmp_path / "provision.broker_spawned.release").write_text("")
    faults.point("provision.broker_spawned", "lkc-x")
    assert (tmp_path / "provision.broker_spawned.reached").read_text().split()[0] == "lkc-x"
    assert not (tmp_path / "provision.broker_spawned.arm").exists()
