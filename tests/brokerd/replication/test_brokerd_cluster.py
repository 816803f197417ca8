"""brokerd processes started with --coordination form one cluster: every broker reports all
registered brokers (with racks) and the elected controller to real clients, a killed
broker leaves the metadata and its controller role moves, and it comes back on restart."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.brokerd.conftest import REPO, Broker, BrokerStartError
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, start_brokers, wait_for
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
        start_brokers(brokers)
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
            lambda: (v := _view(survivor))[0] == without and v[1] in without and v,
            timeout=20,
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
        data_dir = tmp_path / f"d-{uuid.uuid4().hex[:8]}"  # its own: several run at once
        cmd = [sys.executable, "-m", "brokerd", "serve", "--data-dir", str(data_dir),
               "--listener", "PLAINTEXT://127.0.0.1:0", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)

    url = etcd_auth_server.url("/kastle/clusters/auth-test")
    # each refused at start, without a cluster: run side by side
    with ThreadPoolExecutor(5) as pool:
        missing_id, bad, half, slow, down = pool.map(lambda args: serve(*args), [
            ("--coordination", url),
            ("--coordination", "etcd://127.0.0.1:2379", "--node-id", "1"),
            ("--coordination", url, "--node-id", "1", "--coordination-user", "u"),
            # the session timeout under its first name too; a heartbeat as long as the session cannot work
            ("--coordination", url, "--node-id", "1", "--set", "coordination.session.timeout.ms=3000",
             "--set", "broker.heartbeat.interval.ms=3000"),
            ("--coordination", "etcd://127.0.0.1:9/x", "--node-id", "1",
             "--set", "coordination.start.timeout.ms=500"),
        ])  # fmt: skip
    assert missing_id.returncode == 2 and "--coordination needs --node-id N" in missing_id.stderr
    assert bad.returncode == 2 and "no key prefix" in bad.stderr
    assert half.returncode == 2 and "--coordination-password-file" in half.stderr
    assert slow.returncode == 2
    assert "broker.heartbeat.interval.ms must be less than broker.session.timeout.ms" in slow.stderr
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
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        md = wait_for(
            lambda: (m := admin.list_topics(timeout=10)).controller_id == 1 and m, what="a controller"
        )
        assert list(md.brokers) == [1]
    finally:
        broker.kill()
    with pytest.raises(BrokerStartError, match="etcd refused this broker"):
        Broker(tmp_path / "c", node_id=2, extra_args=["--coordination", url]).start(timeout=10)


def test_topics_are_created_through_the_controller_and_placed_over_the_brokers(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix)
    try:
        start_brokers(brokers)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        wait_for(lambda: all(len(_metadata(b).brokers) == 3 for b in brokers), what="3 brokers")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        # librdkafka sends CreateTopics to the controller that Metadata names.
        futures = admin.create_topics(
            [
                NewTopic("orders", 6, replication_factor=3),
                NewTopic("by-default", 2),
                NewTopic("wide", 1, 4),
            ],
            request_timeout=15,
        )
        futures["orders"].result(timeout=20)
        futures["by-default"].result(timeout=20)
        with pytest.raises(KafkaException, match="larger than the number of brokers"):
            futures["wide"].result(timeout=20)

        def described(broker):
            topic = _metadata(broker).topics.get("orders")
            return topic if topic is not None and topic.error is None and len(topic.partitions) == 6 else None

        for broker in brokers:  # every broker reports the same placement from etcd
            orders = wait_for(lambda b=broker: described(b), what="the topic on every broker")
        parts = orders.partitions.values()
        assert all(sorted(p.replicas) == [1, 2, 3] and p.leader == p.replicas[0] for p in parts)
        assert sorted(p.leader for p in parts) == [1, 1, 2, 2, 3, 3]
        # Every replica starts in sync (all logs are empty), as in Kafka.
        assert all(sorted(p.isrs) == [1, 2, 3] for p in parts)
        by_default = _metadata(brokers[0]).topics["by-default"]
        assert all(len(p.replicas) == 3 for p in by_default.partitions.values())  # 3 brokers: RF 3
        # Every replica holds a local log under the cluster's topic id.
        for broker in brokers:
            assert (broker.data_dir / "orders-0").exists()

        # Produce (acks=all) and consume through the leaders.
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        for i in range(60):
            producer.produce("orders", value=b"v%d" % i, partition=i % 6)
        assert producer.flush(20) == 0
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False})
        consumer.assign([TopicPartition("orders", p, 0) for p in range(6)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 60 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message.value())
        consumer.close()
        assert sorted(got) == sorted(b"v%d" % i for i in range(60))

        # The leader of partition 0 dies: an in-sync follower leads with every acknowledged
        # record; the old leader comes back, catches up and rejoins the ISR.
        leader = next(b for b in brokers if b.node_id == orders.partitions[0].leader)
        leader.kill()
        survivor = next(b for b in brokers if b is not leader)

        def moved():
            p0 = _metadata(survivor).topics["orders"].partitions[0]
            return p0.leader not in (-1, leader.node_id) and leader.node_id not in p0.isrs and p0

        wait_for(moved, timeout=20, what="partition 0 led by a follower")
        leader.start(timeout=30)
        wait_for(lambda: (p := described(survivor)) and sorted(p.partitions[0].isrs) == [1, 2, 3],
                 what="the old leader back in the ISR")  # fmt: skip
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g2", "enable.auto.commit": False})
        consumer.assign([TopicPartition("orders", 0, 0)])
        again = []
        deadline = time.monotonic() + 20
        while len(again) < 10 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                again.append(message.value())
        consumer.close()
        assert sorted(again) == sorted(b"v%d" % i for i in range(0, 60, 6))

        # DeleteTopics: gone from every broker's metadata and data directory. (The first client,
        # whose metadata may still name the broker killed above as controller: any broker takes it.)
        admin.delete_topics(["orders"], request_timeout=15)["orders"].result(timeout=20)
        for broker in brokers:
            wait_for(lambda b=broker: "orders" not in _metadata(b).topics, what="deleted everywhere")
            wait_for(lambda b=broker: not (b.data_dir / "orders-0").exists(), what="local log removed")
    finally:
        for broker in brokers:
            broker.kill()
