"""Brokers with SASL listeners only replicate too: followers authenticate to the leader's
SASL_PLAINTEXT listener as ``inter.broker.user`` (SASL/PLAIN), and without those credentials
they cannot fetch, so they leave the ISR instead of ever being counted. A transaction coordinator
logs in the same way to send its markers to the other brokers (and leaders to ask it about a
producer's first batch)."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pki import ca
from tests.brokerd.replication.clustertest import ClusterBroker, start_brokers, wait_for
from tests.etcd_server import EtcdServer

USERS = {"alice": "alice-secret", "replicator": "replicator-secret"}


def _brokers(root: Path, etcd: EtcdServer, prefix: str, *, credentials: bool) -> list[ClusterBroker]:
    password = root / "inter-broker-password"
    password.write_text(USERS["replicator"] + "\n")
    settings: dict[str, object] = {"broker.session.timeout.ms": 2000, "replica.lag.time.max.ms": 2000}
    if credentials:
        settings.update({"inter.broker.user": "replicator", "inter.broker.password.file": str(password)})
    return [
        ClusterBroker(
            root / f"broker-{n}",
            host=f"127.0.0.{n}",
            node_id=n,
            plaintext=False,
            sasl=True,
            users=USERS,
            settings=settings,
            extra_args=["--coordination", etcd.url(prefix)],
        )
        for n in (1, 2, 3)
    ]


def _conf(brokers: list[ClusterBroker], **extra) -> dict:
    return {
        "bootstrap.servers": ",".join(f"{b.host}:{b.ports['SASL_PLAINTEXT']}" for b in brokers),
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
        "sasl.username": "alice", "sasl.password": USERS["alice"], **extra,
    }  # fmt: skip


def _partition(brokers):
    topic = AdminClient(_conf(brokers)).list_topics("t", timeout=10).topics["t"]
    return topic.error is None and topic.partitions.get(0)


def test_followers_authenticate_to_sasl_leaders(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = _brokers(tmp_path, etcd_server, etcd_prefix, credentials=True)
    try:
        start_brokers(brokers)
        admin = AdminClient(_conf(brokers))
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("t", 1, replication_factor=3)])["t"].result(timeout=20)
        first = wait_for(
            lambda: (p := _partition(brokers)) and sorted(p.isrs) == [1, 2, 3] and p, what="in sync"
        )
        producer = Producer(_conf(brokers, acks="all", **{"enable.idempotence": True}))
        for i in range(50):
            producer.produce("t", value=b"%d" % i, partition=0)
        assert producer.flush(30) == 0
        _transaction_over_sasl(brokers, admin)
        # Still three in sync well past replica.lag.time.max.ms: the followers keep fetching.
        time.sleep(3)
        assert sorted(_partition(brokers).isrs) == [1, 2, 3]
        leader = next(b for b in brokers if b.node_id == first.leader)
        leader.kill()
        wait_for(lambda: (p := _partition([b for b in brokers if b is not leader]))
                 and p.leader not in (-1, leader.node_id), what="a new leader")  # fmt: skip
        consumer = Consumer(_conf([b for b in brokers if b is not leader], **{"group.id": "g"}))
        consumer.assign([TopicPartition("t", 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 50 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(int(message.value()))
        consumer.close()
        assert got == list(range(50))
    finally:
        for broker in brokers:
            broker.kill()


def _transaction_over_sasl(brokers: list[ClusterBroker], admin: AdminClient) -> None:
    """A transaction over three partitions led by different brokers: its markers go from the
    coordinator to the other leaders over their SASL listeners."""
    admin.create_topics([NewTopic("x", 3, replication_factor=3)])["x"].result(timeout=20)
    txn = Producer(_conf(brokers, **{"transactional.id": "sasl-tx"}))
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(3):
        txn.produce("x", value=b"in-txn", partition=i)
    txn.commit_transaction(30)
    reader = Consumer(_conf(brokers, **{"group.id": "x-reader", "isolation.level": "read_committed"}))
    reader.assign([TopicPartition("x", i, 0) for i in range(3)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is not None and message.error() is None:
            got.append(message.partition())
    reader.close()
    assert sorted(got) == [0, 1, 2]


def test_without_inter_broker_credentials_followers_leave_the_isr(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = _brokers(tmp_path, etcd_server, etcd_prefix, credentials=False)
    try:
        start_brokers(brokers)
        admin = AdminClient(_conf(brokers))
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("t", 1, replication_factor=3)])["t"].result(timeout=20)
        p0 = wait_for(lambda: (p := _partition(brokers)) and len(p.isrs) == 1 and p, timeout=30,
                      what="the followers out of the ISR")  # fmt: skip
        assert p0.isrs == [p0.leader]
    finally:
        for broker in brokers:
            broker.kill()


class TlsClusterBroker(ClusterBroker):
    """A broker whose only client listener is SASL_SSL, as the platform provisions them."""

    def __init__(self, root: Path, *, authority: ca.Issued, **options) -> None:
        super().__init__(root, plaintext=False, sasl=True, **options)
        self.ports["SASL_SSL"] = 0
        issued = ca.issue_server_certificate(
            authority.key_pem, authority.cert_pem, common_name="broker", hosts=(self.host,), valid_days=1
        )
        self.cert_path, self.key_path = self.root / "broker.crt", self.root / "broker.key"
        self.key_path.write_text(issued.key_pem)
        self.cert_path.write_text(issued.cert_pem)

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--listener", cmd.index("serve"))
        assert cmd[at + 1].startswith("SASL_PLAINTEXT://")
        cmd[at + 1] = f"SASL_SSL://{self.host}:{self.ports['SASL_SSL']}"
        return [*cmd, "--tls-cert", str(self.cert_path), "--tls-key", str(self.key_path)]


def test_followers_fetch_over_tls_from_sasl_ssl_leaders(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    authority = ca.generate_ca("Kastle replication test CA")
    ca_path = tmp_path / "ca.pem"
    ca_path.write_text(authority.cert_pem)
    password = tmp_path / "inter-broker-password"
    password.write_text(USERS["replicator"])
    settings: dict[str, object] = {
        "broker.session.timeout.ms": 2000,
        "replica.lag.time.max.ms": 2000,
        "inter.broker.user": "replicator",
        "inter.broker.password.file": str(password),
        "inter.broker.tls.ca.file": str(ca_path),
    }
    brokers = [
        TlsClusterBroker(
            tmp_path / f"broker-{n}",
            authority=authority,
            host=f"127.0.0.{n}",
            node_id=n,
            users=USERS,
            settings=settings,
            extra_args=["--coordination", etcd_server.url(etcd_prefix)],
        )
        for n in (1, 2, 3)
    ]
    conf = {
        "bootstrap.servers": ",".join(f"{b.host}:{b.ports['SASL_SSL']}" for b in brokers),
        "security.protocol": "SASL_SSL", "ssl.ca.location": str(ca_path), "sasl.mechanism": "PLAIN",
        "sasl.username": "alice", "sasl.password": USERS["alice"],
    }  # fmt: skip
    try:
        start_brokers(brokers)
        conf["bootstrap.servers"] = ",".join(f"{b.host}:{b.ports['SASL_SSL']}" for b in brokers)
        admin = AdminClient(conf)
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("t", 1, replication_factor=3)])["t"].result(timeout=20)
        producer = Producer({**conf, "acks": "all", "enable.idempotence": True})
        for i in range(50):
            producer.produce("t", value=b"%d" % i, partition=0)
        assert producer.flush(30) == 0
        # Still three in sync well past replica.lag.time.max.ms: the followers keep fetching over TLS.
        time.sleep(3)
        partition = admin.list_topics("t", timeout=10).topics["t"].partitions[0]
        assert sorted(partition.isrs) == [1, 2, 3]
    finally:
        for broker in brokers:
            broker.kill()
