"""Real brokerd processes forming a cluster on a real etcd, one per loopback address
(127.0.0.1, .2, .3), as the brokers of a cluster run on distinct hosts."""

from __future__ import annotations

import time
from pathlib import Path

from tests.brokerd.conftest import Broker
from tests.etcd_server import EtcdServer


class ClusterBroker(Broker):
    def __init__(self, root: Path, *, host: str, **options) -> None:
        super().__init__(root, **options)
        self.host = host

    def command(self) -> list[str]:
        cmd = super().command()
        for i, part in enumerate(cmd[:-1]):
            if part in ("--listener", "--admin-listener"):
                cmd[i + 1] = cmd[i + 1].replace("127.0.0.1:", f"{self.host}:")
        return cmd

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports['PLAINTEXT']}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.ports['admin']}"


def cluster_brokers(
    root: Path, etcd: EtcdServer, prefix: str, count: int = 3, *, settings: dict | None = None, **options
) -> list[ClusterBroker]:
    url = etcd.url(prefix)
    brokers = []
    for node_id in range(1, count + 1):
        broker = ClusterBroker(
            root / f"broker-{node_id}",
            host=f"127.0.0.{node_id}",
            node_id=node_id,
            settings={"broker.session.timeout.ms": 2000, **(settings or {})},
            extra_args=["--coordination", url, "--rack", f"rack-{node_id}"],
            **options,
        )
        brokers.append(broker)
    return brokers


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def start_brokers(brokers: list[Broker], timeout: float = 30.0) -> None:
    """Start the brokers side by side, as a cluster's hosts boot, and wait until each is healthy
    (registered and caught up with the cluster's metadata)."""
    for broker in brokers:
        broker.launch()
    for broker in brokers:
        broker.wait_ready(timeout)


def start_cluster(brokers: list[ClusterBroker], topic: str | None = None, partitions: int = 1) -> str:
    """Start the brokers, wait until clients see all of them, optionally create ``topic``
    (replication factor 3) and wait for its full ISR; returns the bootstrap list."""
    from confluent_kafka.admin import AdminClient, NewTopic

    start_brokers(brokers)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == len(brokers), what="every broker")
    if topic is not None:
        admin.create_topics([NewTopic(topic, partitions, replication_factor=3)])[topic].result(timeout=20)
        for index in range(partitions):
            wait_for(lambda i=index: (p := partition_of(bootstrap, topic, i)) and len(p.isrs) == 3,
                     what=f"{topic}-{index} in sync")  # fmt: skip
    return bootstrap


def partition_of(bootstrap: str, topic: str, index: int = 0):
    """A partition's metadata as clients see it (leader, replicas, isrs), or None."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic]
    return None if metadata.error is not None else metadata.partitions.get(index)
