"""brokerd processes started with --coordination form one cluster: every broker reports all
registered brokers (with racks) and the elected controller to real clients, a killed
broker leaves the metadata and its controller role moves, and it comes back on restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.brokerd.conftest import REPO, Broker, BrokerStartError
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, wait_for
from tests.etcd_server import EtcdServer


def _metadata(broker: ClusterBroker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 5000})
    return admin.list_topics(timeout=10)


def _view(broker: ClusterBroker) -> tuple[dict[int, tuple[str, int]], int]:
    md = _metadata(broker)
    return {b.id: (b.host, b.port) for b in md.brokers.values()}, md.controller_id


def test_three_brokers_form_a_cluster_and_the_controller_moves(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix)
    try:
        for broker in brokers:
            broker.start(timeout=30)
        expected = {b.node_id: (b.host, b.port) for b in brokers}
        for broker in brokers:  # each one answers with the whole cluster
            _seen, controller = wait_for(
                lambda b=broker: (v := _view(b))[0] == expected and v, what="3 brokers"
            )
            assert controller in expected
        # DescribeCluster: racks and the controller, the same from every broker.
        admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
        description = admin.describe_cluster(request_timeout=10).result(timeout=15)
        assert sorted((n.id, n.host, n.port, n.rack) for n in description.nodes) == [
            (b.node_id, b.host, b.port, f"rack-{b.node_id}") for b in brokers
        ]
        controller = description.controller.id
        assert {_view(b)[1] for b in brokers} == {controller}
        # kcat sees three brokers too.
        out = subprocess.run(
            ["kcat", "-L", "-b", brokers[2].bootstrap, "-m", "10"], capture_output=True, text=True, timeout=30
        ).stdout
        assert " 3 brokers:" in out and all(f"broker {b.node_id} at {b.bootstrap}" in out for b in brokers)

        # kill -9 the controller: it leaves the metadata when its lease runs out, and
        # another broker takes the controller role.
        victim = next(b for b in brokers if b.node_id == controller)
        victim.kill()
        survivor = next(b for b in brokers if b is not victim)
        without = {k: v for k, v in expected.items() if k != controller}
        _seen, new_controller = wait_for(
            lambda: (v := _view(survivor))[0] == without and v[1] in without and v, timeout=20,
            what="the controller to move",
        )
        assert new_controller != controller
        # It restarts and is back in the metadata of every broker.
        victim.start(timeout=30)
        for broker in brokers:
            wait_for(lambda b=broker: _view(b)[0] == expected, what="the restarted broker")
    finally:
        for broker in brokers:
            broker.kill()


def test_bad_coordination_settings_and_etcd_credentials_are_one_line_errors(
    tmp_path: Path, etcd_auth_server: EtcdServer
) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "brokerd", "serve", "--data-dir", str(tmp_path / "d"),
               "--listener", "PLAINTEXT://127.0.0.1:0", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)

    url = etcd_auth_server.url("/kastle/clusters/auth-test")
    missing_id = serve("--coordination", url)
    assert missing_id.returncode == 2 and "--coordination needs --node-id N" in missing_id.stderr
    bad = serve("--coordination", "etcd://127.0.0.1:2379", "--node-id", "1")
    assert bad.returncode == 2 and "no key prefix" in bad.stderr
    half = serve("--coordination", url, "--node-id", "1", "--coordination-user", "u")
    assert half.returncode == 2 and "--coordination-password-file" in half.stderr
    down = serve("--coordination", "etcd://127.0.0.1:9/x", "--node-id", "1",
                 "--set", "coordination.start.timeout.ms=500")  # fmt: skip
    assert down.returncode == 1 and "cannot reach etcd at etcd://127.0.0.1:9/x" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1

    # With authentication on: this cluster's own user joins; a wrong password is refused.
    import asyncio

    from brokerd.coordination import access

    async def grant() -> None:
        root = etcd_auth_server.root_client()
        prefix = "/kastle/clusters/auth-test/"
        await access.grant_cluster_access(root, prefix=prefix, user="c1", password="pw1")
        await root.close()

    asyncio.run(grant())
    good_pw, bad_pw = tmp_path / "pw", tmp_path / "bad"
    good_pw.write_text("pw1\n")
    bad_pw.write_text("nope\n")
    wrong = serve("--coordination", url, "--node-id", "1", "--coordination-user", "c1",
                  "--coordination-password-file", str(bad_pw))  # fmt: skip
    assert wrong.returncode == 1 and "etcd refused this broker" in wrong.stderr
    broker = Broker(tmp_path / "b", node_id=1,
                    extra_args=["--coordination", url, "--coordination-user", "c1",
                                "--coordination-password-file", str(good_pw)])  # fmt: skip
    try:
        broker.start(timeout=30)
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert list(md.brokers) == [1] and md.controller_id == 1
    finally:
        broker.kill()
    with pytest.raises(BrokerStartError, match="etcd refused this broker"):
        Broker(tmp_path / "c", node_id=2, extra_args=["--coordination", url]).start(timeout=10)
