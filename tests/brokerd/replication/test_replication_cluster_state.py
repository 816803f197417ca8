"""State a cluster keeps as one, against one shared cluster of three real brokerd processes (on
127.0.0.1, .2 and .3) on a real etcd: producer ids unique across the brokers and restarts."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, wait_for
from tests.etcd_server import EtcdServer

COORDINATOR_LOAD_IN_PROGRESS = 14


@pytest.fixture(scope="module")
def brokers(
    tmp_path_factory: pytest.TempPathFactory, etcd_server: EtcdServer
) -> Iterator[list[ClusterBroker]]:
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    brokers = cluster_brokers(tmp_path_factory.mktemp("state-cluster"), etcd_server, prefix)
    try:
        for broker in brokers:
            broker.start(timeout=30)
        admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        yield brokers
    finally:
        for broker in brokers:
            broker.kill()


def bootstrap(brokers: list[ClusterBroker]) -> str:
    return ",".join(b.bootstrap for b in brokers)


def producer_ids(broker: ClusterBroker, count: int) -> list[int]:
    """``count`` InitProducerId answers of ``broker`` (an idempotent producer's, no transactional id)."""
    ids: list[int] = []
    with Wire(broker.port, host=broker.host) as w:
        while len(ids) < count:
            answer = w.request(request_class(22, 4)(transactional_id=None,
                                                    transaction_timeout=datetime.timedelta(seconds=60),
                                                    producer_id=-1, producer_epoch=-1))  # fmt: skip
            if answer.error_code == COORDINATOR_LOAD_IN_PROGRESS:
                continue  # its next block is on the way (the client retries, as librdkafka does)
            assert answer.error_code == 0 and answer.producer_epoch == 0
            ids.append(answer.producer_id)
    return ids


def test_producer_ids_are_unique_across_brokers_and_restarts(brokers: list[ClusterBroker]) -> None:
    seen = [pid for broker in brokers for pid in producer_ids(broker, 5)]
    assert len(set(seen)) == len(seen), f"a producer id was handed out twice: {sorted(seen)}"
    # more than a block from one broker: it takes its next block from the cluster's counter
    many = producer_ids(brokers[0], 1100)
    assert len(set(many)) == 1100 and not set(many) & set(seen)
    seen += many
    victim = brokers[1]
    victim.kill()  # no clean stop: nothing is handed back
    victim.start(timeout=30)
    after = [pid for broker in brokers for pid in producer_ids(broker, 5)]
    assert len(set(after)) == len(after) and not set(after) & set(seen)
