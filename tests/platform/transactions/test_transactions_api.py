"""A cluster's open transactions over REST, and aborting a hanging one: a real brokerd provisioned
inline (no worker), a confluent-kafka transactional producer left with an open transaction."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.e2e.provisioning_stack import sasl
from tests.platform.api import Tenant, assert_error, assert_page
from tests.platform.inline_cluster import SECRET, provision_inline
from topics import services as topics

pytestmark = pytest.mark.django_db


def read_committed_watermarks(cluster, key: str, topic: str) -> tuple[int, int]:
    """(log start, last stable offset) of partition 0, as a read_committed consumer sees them."""
    conf = {"group.id": "check", "isolation.level": "read_committed"}
    reader = Consumer(sasl(cluster.bootstrap_servers, key, SECRET, **conf))
    try:
        return reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        reader.close()


def test_list_open_transactions_and_abort_a_hanging_one(host_env):
    tenant = Tenant("owner")
    cluster, key = provision_inline(tenant.organization)
    topics.topic_create(cluster=cluster, name="orders", partitions=1)
    base = f"/api/v1/clusters/{cluster.public_id}/transactions"
    client = tenant.client
    assert assert_page(client.get(base).json()) == []

    producer = Producer(sasl(cluster.bootstrap_servers, key, SECRET, **{"transactional.id": "app-1"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("orders", value=b"left open", partition=0)
    assert producer.flush(15) == 0

    (row,) = assert_page(client.get(base).json())
    assert row["transactional_id"] == "app-1" and row["state"] == "Ongoing"
    assert row["partitions"] == [{"topic": "orders", "partitions": [0]}]
    assert row["timeout_ms"] == 60000 and row["age_ms"] >= 0
    pid = row["producer_id"]

    member = tenant.member("member").client
    assert member.get(base).status_code == 200
    assert_error(member.post(f"{base}/abort", {"topic": "orders", "partition": 0, "producer_id": pid}), 403)
    error = assert_error(
        client.post(f"{base}/abort", {"topic": "orders", "partition": 0, "producer_id": pid + 1}), 409
    )
    assert error["code"] == "no_open_transaction"

    done = client.post(f"{base}/abort", {"topic": "orders", "partition": 0, "producer_id": pid})
    assert done.status_code == 200, done.content
    assert done.json() == {
        "topic": "orders",
        "partition": 0,
        "producer_id": pid,
        "producer_epoch": row["producer_epoch"],
        "first_offset": 0,
    }
    # the partition's last stable offset passed the abort marker; the record stays hidden
    assert read_committed_watermarks(cluster, key, "orders") == (0, 2)
    # numbers the wire cannot carry are refused as invalid, not sent to the broker
    for field, value in (("partition", 2**31), ("producer_id", 2**63)):
        body = {"topic": "orders", "partition": 0, "producer_id": pid, field: value}
        assert field in assert_error(client.post(f"{base}/abort", body), 400)["details"]
    # nothing open there any more: a second abort is refused
    again = client.post(f"{base}/abort", {"topic": "orders", "partition": 0, "producer_id": pid})
    assert assert_error(again, 409)["code"] == "no_open_transaction"
    producer.abort_transaction(30)
