"""Replicated clusters end to end: a Standard cluster of 3 brokers on 3 hosts (127.0.0.1/.2/.3),
each host with its own worker and data root, brokers meeting in a real etcd with authentication on;
a spare host (127.0.0.4) takes over the brokers of a host lost for good, and the room for growing a
Dedicated cluster.

REST -> PostgreSQL -> Celery (a control worker, three host workers, beat) -> brokerd processes
registered in etcd -> Kafka clients. The cluster's etcd user is made at provisioning and removed on
delete; its brokers hold that user's password only.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from django.test import Client as DjangoClient
from django.urls import reverse

from clusters.models import Broker
from sharedkit import coordination
from tests.e2e.provisioning_stack import plain_login, provisioning_env, sasl, wait_status
from tests.etcd_server import EtcdServer
from tests.helpers import environ, wait_until
from tests.platform.api import Tenant, assert_page

HOSTS = {"a": "127.0.0.1", "b": "127.0.0.2", "c": "127.0.0.3"}
SPARE = {"d": "127.0.0.4"}
# A host silent for 6 s is gone; its brokers are replaced elsewhere as soon as it is.
THROTTLE = str(50 * 1024 * 1024)  # the default replication throttle of moving replicas, bytes/s
FAST_REPLACEMENT = {"KASTLE_HOST_TIMEOUT": "6", "KASTLE_REPLACE_AFTER": "6", "KASTLE_REASSIGN_BATCH": "3"}


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    server = EtcdServer.start(tmp_path_factory.mktemp("etcd"))
    server.enable_auth()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _env(etcd):
    with (
        provisioning_env(),
        environ(
            KASTLE_ETCD_URL=f"http://127.0.0.1:{etcd.client_port}",
            KASTLE_ETCD_ROOT_PASSWORD=EtcdServer.ROOT_PASSWORD,
            **FAST_REPLACEMENT,
        ),
    ):
        yield


@pytest.fixture(scope="module")
def hosts(_env, celery_services):
    celery_services.start_worker("worker", queues=["kastle"], concurrency=2, wait=False)
    for name, address in {**HOSTS, **SPARE}.items():
        celery_services.start_host_worker(name, address, concurrency=1, wait=False)
    celery_services.wait_ready("worker", *(f"worker-{name}" for name in {**HOSTS, **SPARE}))
    return celery_services


@pytest.fixture
def three_hosts(hosts, celery_worker):
    from clusters.models import Host

    # the module's default worker registered `local` before; a previous module's host may linger
    Host.objects.exclude(name__in=[*HOSTS, *SPARE]).delete()
    wait_until(
        lambda: set(Host.objects.values_list("name", flat=True)) == {*HOSTS, *SPARE},
        timeout=30,
        message="hosts a, b, c and d registered",
    )
    yield hosts
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


def _internal_admin(cluster_id: str, bootstrap: str) -> AdminClient:
    from clusters.models import Cluster

    cluster = Cluster.objects.get(public_id=cluster_id)
    return AdminClient(sasl(bootstrap, cluster.internal_username, cluster.internal_password()))


class Traffic:
    """A producer (acks=all) and a consumer group running side by side on one topic: which values
    were acknowledged, which were consumed, and any error that is not retriable."""

    def __init__(self, bootstrap: str, key: str, secret: str, topic: str, prefix: str = "t") -> None:
        self.prefix = prefix
        self.acked: set[bytes] = set()
        self.consumed: set[bytes] = set()
        self.fatal: list = []
        self._stop_producing = threading.Event()
        self._stop_consuming = threading.Event()
        self._producer = Producer(sasl(bootstrap, key, secret, acks="all", **{"linger.ms": 2}))
        self._consumer = Consumer(sasl(bootstrap, key, secret, **{
            "group.id": "e2e-traffic", "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "auto.commit.interval.ms": 200, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
        }))  # fmt: skip
        self._consumer.subscribe([topic])
        self._conf = sasl(bootstrap, key, secret)
        self.topic = topic
        self._threads = [
            threading.Thread(target=self._produce, daemon=True),
            threading.Thread(target=self._consume, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _delivered(self, err, msg) -> None:
        if err is None:
            self.acked.add(msg.value())
        elif not err.retriable():
            self.fatal.append(err)

    def _produce(self) -> None:
        i = 0
        while not self._stop_producing.is_set():
            value = f"{self.prefix}-{i}".encode()
            self._producer.produce(self.topic, value=value, on_delivery=self._delivered)
            self._producer.poll(0.005)
            i += 1
        self._producer.flush(60)

    def _consume(self) -> None:
        while not self._stop_consuming.is_set():
            for msg in self._consumer.consume(num_messages=500, timeout=0.2):
                if msg.error() is None:
                    self.consumed.add(msg.value())
                elif msg.error().fatal():
                    self.fatal.append(msg.error())
        self._consumer.close()

    def finish(self, timeout: float = 60) -> None:
        """Stop producing; wait until every acknowledged value was consumed (none may be lost)."""
        self._stop_producing.set()
        self._threads[0].join(70)
        deadline = time.monotonic() + timeout
        while not self.acked <= self.consumed and time.monotonic() < deadline:
            time.sleep(0.2)
        self._stop_consuming.set()
        self._threads[1].join(30)
        missing = self.acked - self.consumed
        if missing:  # lost, or is the group stuck? Read the partitions themselves.
            stored = _read_all(self._conf, self.topic)
            lost = missing - stored
            raise AssertionError(
                f"{len(missing)} acknowledged records not consumed through the group; "
                f"{len(lost)} of them are not in the log either (lost): {sorted(lost)[:5]}"
            )


def _read_all(conf: dict, topic: str) -> set[bytes]:
    from confluent_kafka import TopicPartition

    consumer = Consumer({**conf, "group.id": "e2e-audit", "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        seen: dict[int, int] = dict.fromkeys(parts, 0)
        values: set[bytes] = set()
        deadline = time.monotonic() + 30
        while any(seen[p] < ends[p] for p in parts) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is None:
                    values.add(msg.value())
                    seen[msg.partition()] = msg.offset() + 1
        return values
    finally:
        consumer.close()


def _broker_config(cid: str, node_id: int, name: str) -> str | None:
    """A broker's own config value, asked of that broker (a client bootstrapped before it joined
    would not know where it is); None while it does not answer."""
    broker = Broker.objects.select_related("host").filter(cluster__public_id=cid, node_id=node_id).first()
    if broker is None or broker.port is None:
        return None
    admin = _internal_admin(cid, f"{broker.host.address}:{broker.port}")
    try:
        described = admin.describe_configs([ConfigResource("BROKER", str(node_id))], request_timeout=5)
        return next(iter(described.values())).result(10)[name].value
    except (KafkaException, TimeoutError):
        return None


def _registry_call(cid: str, key: dict, method: str, path: str, body: dict | None = None):
    token = base64.b64encode(f"{key['key']}:{key['secret']}".encode()).decode()
    client = DjangoClient(HTTP_AUTHORIZATION=f"Basic {token}")
    return getattr(client, method)(
        f"/schema-registry/{cid}{path}", data=json.dumps(body) if body else None,
        content_type="application/vnd.schemaregistry.v1+json",
    )  # fmt: skip


def _validated_on_every_broker(client, cid: str, bootstrap: str, key: dict, admin: AdminClient) -> None:
    """A schema registered through the registry is known to every broker: each leads a partition of
    a validating topic and accepts a record with its id, and refuses an unknown id."""
    schema = {"type": "record", "name": "Entry", "fields": [{"name": "id", "type": "string"}]}
    made = _registry_call(cid, key, "post", "/subjects/ledger-value/versions", {"schema": json.dumps(schema)})
    assert made.status_code == 200, made.content
    schema_id = made.json()["id"]
    schemas = admin.list_topics(topic="_schemas", timeout=10).topics["_schemas"].partitions[0]
    assert sorted(schemas.replicas) == [1, 2, 3], "a replica of _schemas on every broker"
    on = {"name": "ledger", "partitions": 3, "configs": {"confluent.value.schema.validation": "true"}}
    assert client.post(f"/api/v1/clusters/{cid}/topics", on, format="json").status_code == 201
    ledger = admin.list_topics(topic="ledger", timeout=10).topics["ledger"]
    leaders = {p.id: p.leader for p in ledger.partitions.values()}
    assert sorted(leaders.values()) == [1, 2, 3]
    producer = Producer(sasl(bootstrap, key["key"], key["secret"], acks="all",
                             **{"retries": 0, "message.timeout.ms": 15000}))  # fmt: skip
    outcomes: dict[tuple[int, int], int] = {}
    reasons: dict[tuple[int, int], str] = {}

    def record(schema: int, partition: int) -> None:
        def done(err, msg, at=(schema, partition)):
            outcomes[at] = 0 if err is None else err.code()
            reasons[at] = "" if err is None else err.str()

        framed = b"\x00" + struct.pack(">I", schema) + b"\x06e-1"
        producer.produce("ledger", framed, partition=partition, on_delivery=done)

    for schema in (schema_id, schema_id + 1000):  # one batch each: a refusal takes the whole batch
        for partition in leaders:
            record(schema, partition)
        assert producer.flush(30) == 0
    for partition, leader in leaders.items():
        assert outcomes[(schema_id, partition)] == 0, (f"broker {leader} knows the registered id", reasons)
        assert outcomes[(schema_id + 1000, partition)] == KafkaError.INVALID_RECORD, leader


def test_standard_cluster_on_three_hosts(three_hosts, etcd):
    tenant = Tenant("owner")
    client = tenant.client
    plans = {p["name"]: p for p in assert_page(client.get("/api/v1/plans").json())}
    assert (plans["standard"]["brokers"], plans["standard"]["replication_factor"]) == (3, 3)
    assert plans["standard"]["min_insync_replicas"] == 2
    assert (plans["dedicated"]["brokers_min"], plans["dedicated"]["brokers_max"]) == (3, 12)

    made = client.post(
        "/api/v1/clusters", {"name": "orders", "plan": "standard", "security_protocol": "SASL_PLAINTEXT"}
    )
    assert made.status_code == 202, made.content
    cluster = wait_status(client, made.json()["id"], "RUNNING", timeout=60)
    cid = cluster["id"]
    assert cluster["brokers"] == 3 and cluster["placement_warning"] == ""
    bootstrap = cluster["bootstrap_servers"].split(",")
    assert sorted(b.rsplit(":", 1)[0] for b in bootstrap) == sorted(HOSTS.values())

    brokers = assert_page(client.get(f"/api/v1/clusters/{cid}/brokers").json())
    assert [b["node_id"] for b in brokers] == [1, 2, 3]
    assert sorted(b["host"] for b in brokers) == sorted(HOSTS), "one broker per host"
    assert all(b["status"] == "online" and b["rack"] == b["host"] for b in brokers)
    assert sorted(b["address"] for b in brokers) == sorted(bootstrap)

    # Every broker is in Metadata, each with its host as rack.
    admin = _internal_admin(cid, cluster["bootstrap_servers"])
    metadata = admin.list_topics(timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values()) == sorted(bootstrap)

    # The cluster's etcd user exists; its brokers hold its password only, readable by the owner only.
    secret = three_hosts.host_data_dir("a") / "hosts" / "a" / "clusters" / cid / "etcd-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text() == coordination.cluster_password(cid)
    config = (secret.parent / "broker-1").glob("brokerd.toml")
    text = next(config).read_text()
    assert f'"coordination.user" = "kastle-{cid}"' in text and EtcdServer.ROOT_PASSWORD not in text

    # A topic created without a replication factor gets the plan's: 3 replicas, leaders spread.
    response = client.post(f"/api/v1/clusters/{cid}/topics", {"name": "payments", "partitions": 3})
    assert response.status_code == 201, response.content
    topic = admin.list_topics(topic="payments", timeout=10).topics["payments"]
    assert sorted(len(p.replicas) for p in topic.partitions.values()) == [3, 3, 3]
    assert sorted(p.leader for p in topic.partitions.values()) == [1, 2, 3]
    detail = client.get(f"/api/v1/clusters/{cid}").json()
    assert detail["health"]["partitions"] == 3 and detail["health"]["offline_partitions"] == 0
    assert detail["health"]["brokers_online"] == 3
    assert (
        sum(b["partitions_led"] for b in assert_page(client.get(f"/api/v1/clusters/{cid}/brokers").json()))
        == 3
    )

    # The portal's overview says so in words, and the topic page shows leaders, replicas and ISR.
    portal = DjangoClient()
    portal.force_login(tenant.user)
    overview = portal.get(reverse("web:cluster", args=[cid])).content.decode()
    assert "Health: healthy" in overview and "3 of 3 brokers are up." in overview
    topic_page = portal.get(reverse("web:topic", args=[cid, "payments"])).content.decode()
    assert "In sync (ISR)" in topic_page and "none (offline)" not in topic_page

    # A key works on every broker; revoked, every broker refuses it within 2 s.
    key = client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": "svc"}).json()
    for address in bootstrap:
        wait_until(lambda a=address: plain_login(a, key["key"], key["secret"]), timeout=10)
    # Its ACLs reach every broker: it writes to the partitions each broker leads, with acks=all, so
    # each write is acknowledged only once the followers copied it over the brokers' SASL_SSL
    # listeners (as the cluster's inter-broker user, verified against the cluster's CA).
    errors: list = []
    producer = Producer(sasl(cluster["bootstrap_servers"], key["key"], key["secret"], acks="all"))
    for partition in range(3):
        producer.produce(
            "payments", b"v", partition=partition, on_delivery=lambda e, m: e and errors.append(e)
        )
    assert producer.flush(20) == 0 and not errors, errors
    _validated_on_every_broker(client, cid, cluster["bootstrap_servers"], key, admin)
    assert client.delete(f"/api/v1/clusters/{cid}/api-keys/{key['key']}").status_code == 204
    for address in bootstrap:
        wait_until(
            lambda a=address: not plain_login(a, key["key"], key["secret"]),
            timeout=2,
            interval=0.05,
            message=f"the revoked key refused by {address}",
        )

    # A broker that crashes on a live host is restarted in place (same address) and serves again,
    # while a producer (acks=all) and a consumer group run: no acknowledged record is lost.
    key = client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": "traffic"}).json()
    for address in bootstrap:
        wait_until(lambda a=address: plain_login(a, key["key"], key["secret"]), timeout=10)
    traffic = Traffic(cluster["bootstrap_servers"], key["key"], key["secret"], "payments")
    wait_until(lambda: len(traffic.consumed) > 50, timeout=30, message="traffic flowing")
    victim = Broker.objects.select_related("host").get(cluster__public_id=cid, node_id=2)
    address, old_pid = f"{victim.host.address}:{victim.port}", victim.pid
    acked_before = len(traffic.acked)
    os.kill(old_pid, signal.SIGKILL)
    wait_until(
        lambda: Broker.objects.get(pk=victim.pk).pid not in (None, old_pid),
        timeout=60,
        interval=0.2,
        message="the crashed broker restarted",
    )
    victim.refresh_from_db()
    assert f"{victim.host.address}:{victim.port}" == address
    wait_until(lambda: 2 in admin.list_topics(timeout=5).brokers, timeout=30, message="broker 2 in Metadata")
    wait_until(
        lambda: client.get(f"/api/v1/clusters/{cid}").json()["health"]["under_replicated_partitions"] == 0,
        timeout=60,
        interval=0.3,
        message="every partition back in full ISR after the crash",
    )
    time.sleep(0.5)  # a little traffic with the ISR full again
    traffic.finish()
    assert not traffic.fatal, traffic.fatal[:3]
    assert len(traffic.acked) > acked_before, "records were acknowledged across the crash"

    # A rolling restart over REST, with a producer (acks=all) and a consumer group running: one
    # broker at a time, each back on its address and in full ISR before the next; nothing lost.
    before = {b.node_id: (b.pid, f"{b.host.address}:{b.port}") for b in
              Broker.objects.select_related("host").filter(cluster__public_id=cid)}  # fmt: skip
    traffic = Traffic(cluster["bootstrap_servers"], key["key"], key["secret"], "payments", prefix="r")
    wait_until(lambda: len(traffic.consumed) > 50, timeout=30, message="traffic flowing")
    started = client.post(f"/api/v1/clusters/{cid}/restart")
    assert started.status_code == 202, started.content
    progress = started.json()["restart"]
    assert progress["state"] == "running" and progress["brokers"] == [1, 2, 3]
    assert client.post(f"/api/v1/clusters/{cid}/restart").status_code == 409  # one at a time
    finished = wait_until(
        lambda: (r := client.get(f"/api/v1/clusters/{cid}").json()["restart"])["state"] != "running" and r,
        timeout=150,
        interval=0.3,
        message="the rolling restart to finish",
    )
    assert finished["state"] == "done" and finished["restarted"] == [1, 2, 3], finished
    traffic.finish()
    assert not traffic.fatal, traffic.fatal[:3]
    after = {b.node_id: (b.pid, f"{b.host.address}:{b.port}") for b in
             Broker.objects.select_related("host").filter(cluster__public_id=cid)}  # fmt: skip
    assert all(after[n][0] != before[n][0] and after[n][1] == before[n][1] for n in before), (before, after)
    assert client.get(f"/api/v1/clusters/{cid}").json()["health"]["under_replicated_partitions"] == 0
    assert "Rolling restart done" in portal.get(reverse("web:cluster", args=[cid])).content.decode()

    # A host lost for good (its worker and its brokers stopped), with a producer (acks=all) and a
    # consumer group running: the cluster is degraded with the reason, then, the grace period over,
    # its broker starts on the spare host with the same node id and an empty disk, registers with a
    # new epoch and address, copies its partitions from the other replicas, and every ISR is full
    # again. Nothing acknowledged is lost; the audit log records the replacement.
    victim.refresh_from_db()  # restarted since
    lost = victim.host.name
    epoch_before = coordination.cluster_state(cid).brokers[victim.node_id].epoch
    traffic = Traffic(cluster["bootstrap_servers"], key["key"], key["secret"], "payments", prefix="h")
    wait_until(lambda: len(traffic.consumed) > 50, timeout=30, message="traffic flowing")
    three_hosts.kill(f"worker-{lost}")
    os.kill(victim.pid, signal.SIGKILL)
    lost_at = time.monotonic()
    degraded = wait_until(
        lambda: (c := client.get(f"/api/v1/clusters/{cid}").json())["health"]["state"] == "degraded" and c,
        timeout=20,
        interval=0.2,
        message="health to show a broker down",
    )
    assert degraded["degraded_reason"], degraded
    replaced = wait_until(
        lambda: (
            (c := client.get(f"/api/v1/clusters/{cid}").json())["replacement"]
            and c["replacement"]["state"] == "replacing"
            and c
        ),
        timeout=40,
        interval=0.2,
        message="the lost host's broker to be replaced",
    )
    assert replaced["replacement"]["moves"] == {str(victim.node_id): {"from": lost, "to": "d"}}, replaced
    assert "stopped reporting" in replaced["degraded_reason"] and "host d" in replaced["degraded_reason"]
    new_address = f"{SPARE['d']}:{Broker.objects.get(pk=victim.pk).port}"
    assert new_address in replaced["bootstrap_servers"].split(",")
    portal_text = portal.get(reverse("web:cluster", args=[cid])).content.decode()
    assert (
        "Replacing a lost host&#x27;s brokers" in portal_text
        or "Replacing a lost host's brokers" in portal_text
    )
    healthy = wait_until(
        lambda: (c := client.get(f"/api/v1/clusters/{cid}").json())["replacement"]["state"] == "done" and c,
        timeout=90,
        interval=0.3,
        message="the replacement back in every ISR",
    )
    replaced_in = time.monotonic() - lost_at
    assert healthy["health"]["state"] == "healthy" and healthy["health"]["under_replicated_partitions"] == 0
    assert healthy["degraded_reason"] == "" and not healthy["degraded"]
    registration = coordination.cluster_state(cid).brokers[victim.node_id]
    assert registration.epoch > epoch_before, "a new broker epoch"
    metadata = admin.list_topics(timeout=10)
    assert f"{metadata.brokers[victim.node_id].host}:{metadata.brokers[victim.node_id].port}" == new_address
    data = (
        three_hosts.host_data_dir("d")
        / "hosts"
        / "d"
        / "clusters"
        / cid
        / f"broker-{victim.node_id}"
        / "data"
    )
    assert any(data.glob("payments-*")), "the replacement holds the partitions it copied"
    statuses = {
        b["node_id"]: (b["status"], b["host"])
        for b in assert_page(client.get(f"/api/v1/clusters/{cid}/brokers").json())
    }
    assert statuses[victim.node_id] == ("online", "d") and {s for s, _ in statuses.values()} == {"online"}
    traffic.finish()
    assert not traffic.fatal, traffic.fatal[:3]
    from accounts.models import AuditEvent

    actions = list(AuditEvent.objects.filter(target_id=cid).values_list("action", flat=True))
    assert "cluster.broker.replace" in actions and "cluster.broker.replaced" in actions, actions
    print(f"lost host's broker replaced and in full ISR after {replaced_in:.1f} s")
    # The lost host comes back (for the next test): its stale copy of the broker is stopped and removed.
    three_hosts.restart(f"worker-{lost}")
    stale = three_hosts.host_data_dir(lost) / "hosts" / lost / "clusters" / cid / f"broker-{victim.node_id}"
    wait_until(lambda: not stale.exists(), timeout=30, message="the returning host's stale broker removed")

    # Deleting stops every broker and removes the cluster's keys and user from etcd.
    assert coordination.cluster_keys(cid) > 0
    assert client.delete(f"/api/v1/clusters/{cid}").status_code == 202
    wait_status(client, cid, "DELETED", timeout=45)
    assert coordination.cluster_keys(cid) == 0
    assert not secret.parent.exists()


def test_dedicated_cluster_grows_with_a_reassignment(three_hosts):
    """A Dedicated cluster of 3 grows to 4 over REST while a producer (acks=all) and a consumer group
    run: the new broker starts on a host of its own and registers, replicas move over to balance a
    few partitions at a time (progress on the cluster object and in the portal), the schema registry's
    `_schemas` gains a replica on it, new topics spread over all four, and nothing is lost."""
    tenant = Tenant("owner")
    client = tenant.client
    made = client.post(
        "/api/v1/clusters",
        {"name": "grow", "plan": "dedicated", "brokers": 3, "security_protocol": "SASL_PLAINTEXT"},
    )
    assert made.status_code == 202, made.content
    cluster = wait_status(client, made.json()["id"], "RUNNING", timeout=60)
    cid = cluster["id"]
    for refused, code, words in ((3, 400, "already"), (2, 400, "shrinking"), (13, 400, "at most 12")):
        answer = client.post(f"/api/v1/clusters/{cid}/brokers", {"count": refused}, format="json")
        assert answer.status_code == code and words in answer.json()["error"]["message"], answer.content
    answer = client.post(f"/api/v1/clusters/{cid}/brokers", {"count": 6}, format="json")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "insufficient_capacity", (
        answer.content
    )
    assert answer.json()["error"]["details"] == {"hosts_available": 1, "hosts_needed": 3}

    key = client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": "grow"}).json()
    for address in cluster["bootstrap_servers"].split(","):
        wait_until(lambda a=address: plain_login(a, key["key"], key["secret"]), timeout=10)
    schema = {"type": "record", "name": "Row", "fields": [{"name": "id", "type": "string"}]}
    registered = _registry_call(
        cid, key, "post", "/subjects/rows-value/versions", {"schema": json.dumps(schema)}
    )
    assert registered.status_code == 200, registered.content
    assert client.post(f"/api/v1/clusters/{cid}/topics", {"name": "rows", "partitions": 6}).status_code == 201
    traffic = Traffic(cluster["bootstrap_servers"], key["key"], key["secret"], "rows", prefix="g")
    wait_until(lambda: len(traffic.consumed) > 50, timeout=30, message="traffic flowing")

    started = client.post(f"/api/v1/clusters/{cid}/brokers", {"count": 4}, format="json")
    assert started.status_code == 202, started.content
    assert started.json()["brokers"] == 4 and started.json()["scale"]["state"] == "starting"
    assert client.post(f"/api/v1/clusters/{cid}/brokers", {"count": 5}, format="json").status_code == 409
    seen: set[str] = set()
    rates: set[str | None] = set()  # the new broker's replication throttle while replicas move to it

    def finished():
        scale = client.get(f"/api/v1/clusters/{cid}").json()["scale"]
        seen.add(scale["state"])
        if scale["state"] == "reassigning" and THROTTLE not in rates:
            rates.add(_broker_config(cid, 4, "follower.replication.throttled.rate"))
        return scale if scale["state"] in ("done", "failed") else None

    scale = wait_until(finished, timeout=120, interval=0.3, message="the growth to finish")
    assert scale["state"] == "done", scale
    assert "reassigning" in seen and scale["moved"] == scale["partitions"] > 0, (seen, scale)
    traffic.finish()
    assert not traffic.fatal, traffic.fatal[:3]

    brokers = assert_page(client.get(f"/api/v1/clusters/{cid}/brokers").json())
    assert [b["node_id"] for b in brokers] == [1, 2, 3, 4]
    assert len({b["host"] for b in brokers}) == 4 and all(b["status"] == "online" for b in brokers)
    detail = client.get(f"/api/v1/clusters/{cid}").json()
    assert len(detail["bootstrap_servers"].split(",")) == 4
    admin = _internal_admin(cid, detail["bootstrap_servers"])
    assert THROTTLE in rates, rates  # the moves were throttled, and the throttle is gone:
    assert _broker_config(cid, 4, "follower.replication.throttled.rate") == str(2**63 - 1)
    rows_configs = admin.describe_configs([ConfigResource("TOPIC", "rows")])
    assert next(iter(rows_configs.values())).result(10)["follower.replication.throttled.replicas"].value in (
        "",
        None,
    )
    topics = admin.list_topics(timeout=10).topics
    load = {n: 0 for n in (1, 2, 3, 4)}
    for name, topic in topics.items():
        if name == "_schemas":
            assert sorted(topic.partitions[0].replicas) == [1, 2, 3, 4], (
                "a replica of _schemas on every broker"
            )
            continue
        for part in topic.partitions.values():
            for replica in part.replicas:
                load[replica] += 1
    assert max(load.values()) - min(load.values()) <= 1, load
    wait_until(
        lambda: client.get(f"/api/v1/clusters/{cid}").json()["health"]["under_replicated_partitions"] == 0,
        timeout=30,
        message="every partition in full ISR after the moves",
    )
    assert (
        client.post(f"/api/v1/clusters/{cid}/topics", {"name": "fresh", "partitions": 4}).status_code == 201
    )
    fresh = admin.list_topics(topic="fresh", timeout=10).topics["fresh"]
    assert {r for p in fresh.partitions.values() for r in p.replicas} == {1, 2, 3, 4}
    portal = DjangoClient()
    portal.force_login(tenant.user)
    assert "Grown to 4 brokers" in portal.get(reverse("web:cluster", args=[cid])).content.decode()
    assert client.delete(f"/api/v1/clusters/{cid}").status_code == 202


def test_dedicated_cluster_needs_a_host_per_broker(three_hosts):
    client = Tenant("owner").client
    refused = client.post("/api/v1/clusters", {"name": "big", "plan": "dedicated", "brokers": 13})
    assert refused.status_code == 400
    assert "3 to 12 brokers" in refused.json()["error"]["details"]["brokers"][0]
    made = client.post(
        "/api/v1/clusters",
        {"name": "big", "plan": "dedicated", "brokers": 5, "security_protocol": "SASL_PLAINTEXT"},
    )
    assert made.status_code == 202, made.content
    failed = wait_status(client, made.json()["id"], "FAILED", timeout=30)
    assert "needs 5 broker hosts" in failed["status_reason"] and "only 4" in failed["status_reason"]
