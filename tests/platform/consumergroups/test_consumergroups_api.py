"""Consumer groups over REST: a real brokerd provisioned inline (no worker), confluent-kafka consumers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, Producer

from clusters.models import Cluster, ClusterStatus
from tests.e2e.provisioning_stack import sasl
from tests.platform.api import Tenant, assert_error, assert_page
from tests.platform.inline_cluster import SECRET, provision_inline
from topics import services as topics

pytestmark = pytest.mark.django_db



class Running:
    """A tenant's RUNNING cluster with a 3-partition topic `orders` and an API key."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        cluster, self.key = provision_inline(tenant.organization)
        self.cluster: Cluster = cluster
        self.bootstrap = cluster.bootstrap_servers
        topics.topic_create(cluster=cluster, name="orders", partitions=3)
        self.base = f"/api/v1/clusters/{cluster.public_id}/consumer-groups"

    def conf(self, **extra):
        return sasl(self.bootstrap, self.key, SECRET, **extra)

    def produce(self, count: int) -> None:
        producer = Producer(self.conf(acks="all"))
        for i in range(count):
            producer.produce("orders", value=f"v{i}".encode(), partition=i % 3)
        assert producer.flush(15) == 0

    @contextmanager
    def consumer(self, group: str, client_id: str, **extra) -> Iterator[Consumer]:
        settings = {
            "group.id": group,
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            **extra,
        }
        consumer = Consumer(self.conf(**settings))
        try:
            yield consumer
        finally:
            consumer.close()  # LeaveGroup: the group is empty at once


def consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
    assert len(values) == count, values
    return values


@pytest.fixture
def running(host_env) -> Running:
    return Running(Tenant("owner"))


def test_list_describe_with_lag_reset_and_delete(running):
    client = running.tenant.client
    base = running.base
    running.produce(30)
    assert assert_page(client.get(base).json()) == []

    with running.consumer("billing", "reader-1") as reader:
        reader.subscribe(["orders"])
        consume(reader, 12)
        reader.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in reader.committed(reader.assignment(), timeout=10)}

        groups = assert_page(client.get(base).json())
        assert groups == [{"group_id": "billing", "state": "Stable", "type": "classic", "simple": False}]

        body = client.get(f"{base}/billing").json()
        assert body["state"] == "Stable" and body["partition_assignor"] in ("range", "roundrobin")
        assert body["coordinator"]["port"] == int(running.bootstrap.rpartition(":")[2])
        (member,) = body["members"]
        assert member["client_id"] == "reader-1" and member["host"] == "127.0.0.1"
        assert member["assignments"] == [{"topic": "orders", "partitions": [0, 1, 2]}]
        rows = {row["partition"]: row for row in body["offsets"]}
        assert set(rows) == {0, 1, 2}
        for p, row in rows.items():
            assert row["latest_offset"] == 10 and row["member_id"] == member["member_id"]
            if committed[p] >= 0:
                assert row["committed_offset"] == committed[p] and row["lag"] == 10 - committed[p]
            else:
                assert row["committed_offset"] is None and row["lag"] is None
        lag = sum(10 - o for o in committed.values() if o >= 0)  # unknown where nothing is committed
        assert body["total_lag"] == lag

        # While it has a member: no reset, no delete; a member may read but not write.
        error = assert_error(client.post(f"{base}/billing/reset-offsets", {"to": "earliest"}), 409)
        assert error["code"] == "group_not_empty" and error["details"]["members"] == 1
        assert_error(client.delete(f"{base}/billing"), 409, "group_not_empty")
        member_client = running.tenant.member("member").client
        assert member_client.get(f"{base}/billing").status_code == 200
        assert_error(member_client.post(f"{base}/billing/reset-offsets", {"to": "latest"}), 403)

    assert client.get(f"{base}/billing").json()["state"] == "Empty"

    # Dry run: what would be set, nothing changes.
    dry = client.post(f"{base}/billing/reset-offsets", {"to": "earliest", "dry_run": True})
    assert dry.status_code == 200, dry.content
    assert dry.json()["dry_run"] is True
    assert {(r["partition"], r["new_offset"]) for r in dry.json()["offsets"]} == {
        (p, 0) for p, o in committed.items() if o >= 0
    }
    assert client.get(f"{base}/billing").json()["total_lag"] == lag

    # Real resets: an offset (clamped to the partition's range), then a time, then the start.
    done = client.post(
        f"{base}/billing/reset-offsets", {"to": "offset", "value": 99, "topic": "orders", "partitions": [1]}
    ).json()
    assert done["offsets"] == [
        {"topic": "orders", "partition": 1, "previous_offset": committed[1] if committed[1] >= 0 else None,
         "new_offset": 10}
    ]  # fmt: skip
    future = client.post(
        f"{base}/billing/reset-offsets",
        {"to": "timestamp", "value": "2999-01-01T00:00:00Z", "topic": "orders"},
    ).json()
    assert [r["new_offset"] for r in future["offsets"]] == [10, 10, 10]  # nothing that late: the end
    assert client.get(f"{base}/billing").json()["total_lag"] == 0
    past = client.post(f"{base}/billing/reset-offsets", {"to": "timestamp", "value": 0, "topic": "orders"})
    assert [r["new_offset"] for r in past.json()["offsets"]] == [0, 0, 0]
    assert client.get(f"{base}/billing").json()["total_lag"] == 30

    # A consumer of the group now starts where the reset put it (not at "latest").
    with running.consumer("billing", "reader-2", **{"auto.offset.reset": "latest"}) as again:
        again.subscribe(["orders"])
        assert sorted(consume(again, 30)) == sorted(f"v{i}".encode() for i in range(30))

    actions = list(
        running.tenant.organization.audit_events.filter(action__startswith="consumer_group.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["consumer_group.reset_offsets"] * 3  # the dry run is not a write

    # Delete: gone from the list and the detail.
    assert client.delete(f"{base}/billing").status_code == 204
    assert_error(client.get(f"{base}/billing"), 404)
    assert_error(client.delete(f"{base}/billing"), 404)
    assert assert_page(client.get(base).json()) == []
    assert running.tenant.organization.audit_events.filter(action="consumer_group.delete").count() == 1


def test_reset_validation_and_a_new_group(running):
    client = running.tenant.client
    base = running.base
    running.produce(6)
    url = f"{base}/fresh/reset-offsets"
    assert "value" in assert_error(client.post(url, {"to": "offset"}), 400, "validation_error")["details"]
    assert "to" in assert_error(client.post(url, {"to": "yesterday"}), 400)["details"]
    assert "value" in assert_error(client.post(url, {"to": "timestamp", "value": "soon"}), 400)["details"]
    assert "topic" in assert_error(client.post(url, {"to": "latest"}), 400)["details"]  # nothing committed
    assert "topic" in assert_error(client.post(url, {"to": "latest", "topic": "nope"}), 400)["details"]
    assert "partitions" in assert_error(client.post(url, {"to": "latest", "partitions": [0]}), 400)["details"]
    error = assert_error(client.post(url, {"to": "latest", "topic": "orders", "partitions": [3]}), 400)
    assert "partitions" in error["details"]
    assert_error(client.get(f"{base}/fresh"), 404)

    # Resetting a group that does not exist yet creates it with those offsets (as Kafka does).
    made = client.post(url, {"to": "latest", "topic": "orders", "partitions": [0, 2]})
    assert made.status_code == 200, made.content
    body = client.get(f"{base}/fresh").json()
    assert body["state"] == "Empty" and body["members"] == []
    assert [(r["partition"], r["committed_offset"], r["lag"]) for r in body["offsets"]] == [
        (0, 2, 0),
        (2, 2, 0),
    ]
    assert assert_page(client.get(base).json())[0]["group_id"] == "fresh"
    assert_page(client.get(f"{base}?page_size=1").json())


def test_another_tenants_groups_are_404_and_a_stopped_cluster_is_409(running, make_tenant):
    running.produce(3)
    client = running.tenant.client
    assert (
        client.post(f"{running.base}/g/reset-offsets", {"to": "earliest", "topic": "orders"}).status_code
        == 200
    )
    other = make_tenant("owner").client
    for response in (
        other.get(running.base),
        other.get(f"{running.base}/g"),
        other.post(f"{running.base}/g/reset-offsets", {"to": "earliest"}),
        other.delete(f"{running.base}/g"),
    ):
        assert_error(response, 404)
    assert client.get(f"{running.base}/g").status_code == 200  # still there

    Cluster.objects.filter(pk=running.cluster.pk).update(status=ClusterStatus.DELETING)
    assert_error(client.get(running.base), 409, "cluster_not_running")
    assert_error(client.get(f"{running.base}/g"), 409, "cluster_not_running")
