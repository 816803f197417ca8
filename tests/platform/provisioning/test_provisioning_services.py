"""Provisioning services against PostgreSQL and real brokerd processes (no worker: steps called directly)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from brokerd.credentials import load as load_credentials
from clusters import conf as cluster_conf
from clusters.models import Broker, BrokerStatus, Cluster, ClusterStatus, Host
from provisioning import brokerconf, conf, placement, services, supervisor, tasks
from provisioning.models import ClusterOperation, PortLease, PortPurpose
from tests.e2e.provisioning_stack import free_port_block, plain_login
from tests.platform.factories import ApiKeyFactory, ClusterFactory, HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def host_env(tmp_path, settings, monkeypatch):
    """This process acts as host `local` with a data root and a port range of its own."""
    low, high = free_port_block(40)
    settings.KASTLE_DATA_DIR = tmp_path
    monkeypatch.setenv("KASTLE_HOST_PORTS", f"{low}-{high}")
    yield tmp_path
    supervisor.stop_all(conf.host_root("local"), timeout=10)


@pytest.fixture
def host(host_env) -> Host:
    return placement.host_register_local()


def provisioning_cluster(**kwargs) -> Cluster:
    return ClusterFactory(status=ClusterStatus.PROVISIONING, bootstrap_servers="", **kwargs)


# --- config rendering ---------------------------------------------------------------------------
def test_plan_limits_become_broker_settings_that_brokerd_accepts(tmp_path):
    from clusters.plans import get_plan

    plan = get_plan("basic")
    values = brokerconf.broker_settings(
        public_id="lkc-abc123", plan=plan, node_id=1, address="127.0.0.1", port=21000, admin_port=21001,
        data_dir=tmp_path / "data", credentials_file=tmp_path / "credentials.json",
    )  # fmt: skip
    assert values["auto.create.topics.enable"] is False
    assert values["listeners"] == ["SASL_PLAINTEXT://127.0.0.1:21000"]
    assert values["kastle.plan.max.partitions"] == plan.max_partitions
    assert values["kastle.plan.max.retention.ms"] == plan.max_retention_ms
    assert values["log.retention.ms"] <= plan.max_retention_ms
    assert values["kastle.quota.user.default.producer_byte_rate"] == plan.ingress_mbps * 1024 * 1024
    assert 0 < values["kastle.max.connections.per.principal"] < values["max.connections"]
    text = brokerconf.render_toml(values)
    brokerconf.validate(text)  # parsed exactly as brokerd parses it


def test_unknown_settings_are_left_out(caplog):
    assert brokerconf.known_settings({"node.id": 1, "no.such.setting": 2}) == {"node.id": 1}
    assert "no.such.setting" in caplog.text


# --- hosts, placement, ports -----------------------------------------------------------------------
def test_host_registration_and_liveness(host_env, monkeypatch):
    host = placement.host_register_local()
    assert host.name == "local" and host.address == "127.0.0.1"
    assert list(placement.live_hosts()) == [host]
    Host.objects.filter(pk=host.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=cluster_conf.host_timeout() + 1)
    )
    assert not placement.live_hosts().exists()
    assert placement.host_heartbeat("local") and placement.live_hosts().exists()
    assert not placement.host_heartbeat("nowhere")


def test_ports_are_unique_per_host_in_the_database(host):
    cluster = provisioning_cluster()
    broker = Broker.objects.create(cluster=cluster, node_id=1)
    other = Broker.objects.create(cluster=provisioning_cluster(), node_id=1)
    PortLease.objects.create(host=host, port=host.port_min, broker=broker, purpose=PortPurpose.CLIENT)
    with pytest.raises(IntegrityError), transaction.atomic():
        PortLease.objects.create(host=host, port=host.port_min, broker=other, purpose=PortPurpose.ADMIN)


def test_placement_leases_distinct_ports_and_respects_capacity(host):
    Host.objects.filter(pk=host.pk).update(capacity=2)
    first, second = provisioning_cluster(), provisioning_cluster()
    (b1,) = placement.place_cluster(first)
    (b2,) = placement.place_cluster(second)
    assert b1.host == b2.host == host
    ports = {b1.port, b1.admin_port, b2.port, b2.admin_port}
    assert len(ports) == 4 and all(host.port_min <= p <= host.port_max for p in ports)
    assert placement.place_cluster(first)[0].port == b1.port  # idempotent
    with pytest.raises(placement.NoHostAvailable):
        placement.place_cluster(provisioning_cluster())
    placement.release_ports(b1)
    (b3,) = placement.place_cluster(provisioning_cluster())  # the freed ports are leased again
    assert {b3.port, b3.admin_port} == {ports_of_b1 for ports_of_b1 in ports - {b2.port, b2.admin_port}}


def test_no_live_host_means_no_placement(db):
    HostFactory(heartbeat_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(placement.NoHostAvailable, match="no live host"):
        placement.place_cluster(provisioning_cluster())


# --- lifecycle, inline on this host ------------------------------------------------------------------
def _provision(cluster: Cluster) -> Cluster:
    owner = services.new_owner()
    placement.place_cluster(cluster)
    assert services.host_provision(cluster_id=cluster.pk, owner=owner, host_name="local") == "running"
    cluster.refresh_from_db()
    return cluster


def test_provision_then_deprovision(host):
    cluster = provisioning_cluster()
    key = ApiKeyFactory(cluster=cluster)
    cluster = _provision(cluster)
    assert cluster.status == ClusterStatus.RUNNING
    broker = cluster.brokers.get()
    assert cluster.bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert broker.status == BrokerStatus.RUNNING and broker.pid
    paths = services.broker_paths(broker)
    assert supervisor.running_pid(paths) == broker.pid
    assert set(load_credentials(paths.credentials)) == {key.key, cluster.internal_username}
    assert plain_login(cluster.bootstrap_servers, key.key, "factory-secret-" + "x" * 40)
    assert not ClusterOperation.objects.filter(cluster=cluster).exists()

    # Running it again changes nothing (idempotent).
    again = services.host_provision(cluster_id=cluster.pk, owner="someone-else", host_name="local")
    assert again == "skipped"

    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.DELETING)
    owner = services.new_owner()
    assert services.host_deprovision(cluster_id=cluster.pk, owner=owner, host_name="local") == "deleted"
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.DELETED
    assert not paths.cluster_dir.exists()
    assert not supervisor.is_brokerd_for(broker.pid, paths.config)
    assert not PortLease.objects.filter(broker__cluster=cluster).exists()
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_exhausted_retries_mark_the_cluster_failed_with_a_reason(db):
    cluster = provisioning_cluster()
    tasks.cluster_provision.apply(args=(cluster.pk,))  # eager: retries run at once, no host exists
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.FAILED
    assert "No broker host has room" in cluster.status_reason
    assert f"after {tasks.MAX_RETRIES + 1} attempts" in cluster.status_reason


# --- credentials sync ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_key_create_and_revoke_send_a_sync_to_the_clusters_host(host, celery_queue, redis_client):
    from iam.services import api_key_create, api_key_revoke

    cluster = provisioning_cluster()
    placement.place_cluster(cluster)
    redis_client.delete("host.local")
    with transaction.atomic():
        api_key, _ = api_key_create(cluster=cluster, description="k")
        assert celery_queue("host.local") == []  # not before commit
    sent = celery_queue("host.local")
    assert [(m["task"], m["args"]) for m in sent] == [
        ("provisioning.credentials_sync", ["local", cluster.pk])
    ]
    api_key_revoke(api_key=api_key)
    assert len(celery_queue("host.local")) == 2
    redis_client.delete("host.local")


def test_credentials_file_follows_keys(host):
    cluster = _provision(provisioning_cluster())
    path = supervisor.cluster_dir(conf.host_root("local"), cluster.public_id) / "credentials.json"
    key = ApiKeyFactory(cluster=cluster)
    assert services.host_credentials_sync(cluster_id=cluster.pk, host_name="local")
    assert key.key in load_credentials(path)
    # unchanged: no rewrite
    assert not services.host_credentials_sync(cluster_id=cluster.pk, host_name="local")
    key.revoked_at = timezone.now()
    key.save()
    assert services.host_credentials_sync(cluster_id=cluster.pk, host_name="local")
    assert key.key not in load_credentials(path)


# --- reconciliation -------------------------------------------------------------------------------
def test_reconcile_restarts_a_killed_broker_and_adopts_a_running_one(host):
    cluster = _provision(provisioning_cluster())
    broker = cluster.brokers.get()
    report = services.host_reconcile(host_name="local")
    assert report["started"] == [] and report["adopted"] == []  # all is well

    Broker.objects.filter(pk=broker.pk).update(pid=None, status=BrokerStatus.STARTING)  # a new worker
    report = services.host_reconcile(host_name="local")
    assert report["adopted"] == [f"{cluster.public_id}/1"]
    assert Broker.objects.get(pk=broker.pk).pid == broker.pid

    os.kill(broker.pid, signal.SIGKILL)
    _wait_dead(broker.pid)
    report = services.host_reconcile(host_name="local")
    assert report["started"] == [f"{cluster.public_id}/1"]
    restarted = Broker.objects.get(pk=broker.pk)
    assert restarted.pid != broker.pid and restarted.port == broker.port


def _hold_port(address: str, port: int) -> socket.socket:
    """A listener on `port`, as a killed broker's last thread holds it until it has exited."""
    deadline = time.monotonic() + 10
    while True:
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind((address, port))
            holder.listen()
            return holder
        except OSError:
            holder.close()
            assert time.monotonic() < deadline, f"port {port} never came free"
            time.sleep(0.02)


def test_a_restart_waits_for_the_killed_brokers_port_and_keeps_its_address(host):
    cluster = _provision(provisioning_cluster())
    broker = cluster.brokers.get()
    os.kill(broker.pid, signal.SIGKILL)
    _wait_dead(broker.pid)
    holder = _hold_port(broker.host.address, broker.port)
    threading.Timer(1.0, holder.close).start()  # released a moment after the restart begins

    report = services.host_reconcile(host_name="local")

    assert report["started"] == [f"{cluster.public_id}/1"]
    restarted = Broker.objects.get(pk=broker.pk)
    assert (restarted.port, restarted.admin_port) == (broker.port, broker.admin_port)
    assert Cluster.objects.get(pk=cluster.pk).bootstrap_servers == cluster.bootstrap_servers
    assert supervisor.healthz(broker.host.address, broker.admin_port)


def test_a_port_held_for_good_is_given_up_and_the_new_address_advertised(host, monkeypatch):
    monkeypatch.setenv("KASTLE_PORT_RELEASE_WAIT", "0.5")
    cluster = _provision(provisioning_cluster())
    broker = cluster.brokers.get()
    os.kill(broker.pid, signal.SIGKILL)
    _wait_dead(broker.pid)
    with _hold_port(broker.host.address, broker.port):
        report = services.host_reconcile(host_name="local")
        assert report["started"] == [f"{cluster.public_id}/1"]
        moved = Broker.objects.get(pk=broker.pk)
        assert moved.port != broker.port
        assert Cluster.objects.get(pk=cluster.pk).bootstrap_servers == f"127.0.0.1:{moved.port}"


def test_brokers_are_forked_by_the_fork_server_and_recognised_as_brokers(host):
    root = conf.host_root("local")
    assert supervisor.forkserver_start(root, wait=60), (root / "forkserver.log").read_text()
    cluster = _provision(provisioning_cluster())
    broker = cluster.brokers.get()
    assert any(a.endswith("forkserver.py") for a in supervisor._cmdline(broker.pid)), "forked, not exec'd"
    assert os.getsid(broker.pid) == broker.pid  # its own session, as an exec'd broker has
    paths = services.broker_paths(broker)
    assert supervisor.running_pid(paths) == broker.pid
    assert supervisor.brokerd_processes(root) == {paths.config: broker.pid}  # the server is no broker
    assert plain_login(cluster.bootstrap_servers, cluster.internal_username, cluster.internal_password())

    os.kill(broker.pid, signal.SIGKILL)  # reaped by the server; reconciliation forks it again
    _wait_dead(broker.pid)
    assert services.host_reconcile(host_name="local")["started"] == [f"{cluster.public_id}/1"]
    again = Broker.objects.get(pk=broker.pk)
    assert again.port == broker.port and supervisor.is_brokerd_for(again.pid, paths.config)
    assert supervisor.stop_all(root) == [again.pid]
    _wait_dead(again.pid)


def test_a_rolling_restart_restarts_each_broker_in_place_then_is_done(host):
    from clusters import services as cluster_services
    from controlplane.errors import Conflict

    cluster = _provision(provisioning_cluster())
    broker = cluster.brokers.get()
    cluster = cluster_services.cluster_restart(cluster=cluster)
    assert cluster.restart["state"] == "running" and cluster.restart["brokers"] == [1]
    with pytest.raises(Conflict, match="being restarted already"):
        cluster_services.cluster_restart(cluster=cluster)

    next_steps = []

    def to_host(task, host_name, cluster_id, node_id):  # the host's worker, called in place
        assert task == "provisioning.host_broker_restart"
        result = services.host_broker_restart(
            cluster_id=cluster_id, host_name=host_name, node_id=node_id,
            send_next=lambda name, cid: next_steps.append((name, cid)),
        )  # fmt: skip
        assert result == "restarted"

    assert services.cluster_restart_step(cluster_id=cluster.pk, send=to_host) == "sent"
    assert next_steps == [("provisioning.cluster_restart_step", cluster.pk)]
    restarted = Broker.objects.get(pk=broker.pk)
    assert restarted.pid != broker.pid and restarted.port == broker.port
    assert supervisor.healthz(broker.host.address, broker.admin_port)
    assert services.cluster_restart_step(cluster_id=cluster.pk) == "done"
    cluster.refresh_from_db()
    assert cluster.restart["state"] == "done" and cluster.restart["restarted"] == [1]
    assert cluster.restart["current"] is None and cluster.restart["finished_at"]
    assert services.cluster_restart_step(cluster_id=cluster.pk) == "skipped"  # a repeated step

    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.DELETING)
    with pytest.raises(Conflict, match="Only a RUNNING cluster"):
        cluster_services.cluster_restart(cluster=Cluster.objects.get(pk=cluster.pk))


def test_drain_host_restarts_the_hosts_brokers_of_each_running_cluster(
    celery_queue, django_capture_on_commit_callbacks
):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from tests.platform.factories import BrokerFactory

    a, b = HostFactory(name="a"), HostFactory(name="b")
    cluster = ClusterFactory(plan="standard", broker_count=3)  # RUNNING
    for node_id, on in ((1, a), (2, b), (3, a)):
        BrokerFactory(cluster=cluster, node_id=node_id, host=on)
    other = ClusterFactory()
    BrokerFactory(cluster=other, node_id=1, host=b)
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("drain_host", "a", stdout=out)
    cluster.refresh_from_db()
    assert cluster.restart["state"] == "running" and cluster.restart["brokers"] == [1, 3]
    assert Cluster.objects.get(pk=other.pk).restart == {}  # nothing of it on host a
    assert f"{cluster.public_id}: restarting broker(s) [1, 3] on a" in out.getvalue()
    assert [(m["task"], m["args"]) for m in celery_queue()] == [
        ("provisioning.cluster_restart_step", [cluster.pk])
    ]
    with pytest.raises(CommandError, match="No host"):
        call_command("drain_host", "nowhere")


def test_up_shutdown_hook_stops_brokers_and_reconcile_starts_them_again(host):
    cluster = _provision(provisioning_cluster())
    pid = cluster.brokers.get().pid
    assert services.local_brokers_stop() == [pid]
    _wait_dead(pid)
    assert services.host_reconcile(host_name="local")["started"] == [f"{cluster.public_id}/1"]


def test_reconcile_removes_orphans(host):
    cluster = _provision(provisioning_cluster())
    broker = cluster.brokers.get()
    root = conf.host_root("local")
    stray = supervisor.cluster_dir(root, "lkc-zzzzzz")
    stray.mkdir(parents=True)
    os.utime(stray, (time.time() - 60, time.time() - 60))
    os.utime(supervisor.cluster_dir(root, cluster.public_id), (time.time() - 60, time.time() - 60))
    Cluster.objects.filter(pk=cluster.pk).delete()
    report = services.host_reconcile(host_name="local")
    assert sorted(report["removed"]) == sorted([cluster.public_id, "lkc-zzzzzz"])
    assert any(cluster.public_id in s for s in report["stopped"])
    assert not supervisor.is_brokerd_for(broker.pid, services.broker_paths(broker).config)


def test_reconcile_drives_unclaimed_clusters_and_fails_them_after_too_many_tries(db):
    stale = timezone.now() - timedelta(minutes=5)
    cluster = provisioning_cluster()
    fresh = provisioning_cluster()
    Cluster.objects.filter(pk=cluster.pk).update(status_changed_at=stale)
    sent = []
    for _attempt in range(conf.MAX_REDRIVES):
        report = services.control_reconcile(send_lifecycle=lambda name, cid: sent.append((name, cid)))
        assert report["redriven"] == [cluster.public_id]
        ClusterOperation.objects.filter(cluster=cluster).update(updated_at=stale)  # nobody picked it up
    assert sent == [("provisioning.cluster_provision", cluster.pk)] * conf.MAX_REDRIVES
    report = services.control_reconcile(send_lifecycle=lambda t, cid: sent.append(cid))
    assert report["failed"] == [cluster.public_id]
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.FAILED and "interrupted" in cluster.status_reason
    assert Cluster.objects.get(pk=fresh.pk).status == ClusterStatus.PROVISIONING  # within its grace


def test_a_live_lease_is_left_alone(db):
    cluster = provisioning_cluster()
    Cluster.objects.filter(pk=cluster.pk).update(status_changed_at=timezone.now() - timedelta(minutes=5))
    assert services.operation_claim(cluster=cluster, kind="provision", owner="task-1")
    assert not services.operation_claim(cluster=cluster, kind="provision", owner="task-2")
    assert services.control_reconcile(send_lifecycle=lambda t, cid: None)["redriven"] == []
    ClusterOperation.objects.filter(cluster=cluster).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.control_reconcile(send_lifecycle=lambda t, cid: None)["redriven"] == [cluster.public_id]


def _wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while supervisor._alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.02)
