"""An idempotent producer's retry after a failover is recognised by the new leader: the
followers took the producer state (id, epoch, sequences, offsets) from the replicated batches,
so a batch sent again to the new leader answers with its first offset and is not appended
twice, and a sequence gap is still refused."""

from __future__ import annotations

import datetime
from dataclasses import fields
from pathlib import Path

from brokerd_wire import Wire, request_class
from compaction_checks import build_batch
from confluent_kafka import Consumer, TopicPartition
from kio.index import load_payload_module
from kio.static.constants import EntityType

from tests.brokerd.replication.clustertest import cluster_brokers, partition_of, start_cluster, wait_for
from tests.etcd_server import EtcdServer

TOPIC = "ids"
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
PRODUCE = 9


def _build(cls: type, **kwargs):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def _produce(w: Wire, records: bytes) -> tuple[int, int]:
    """(error code, base offset) of an acks=all Produce of one batch to TOPIC-0."""
    module = load_payload_module(0, PRODUCE, EntityType.request)
    data = _build(module.TopicProduceData, name=TOPIC, partition_data=(
        _build(module.PartitionProduceData, index=0, records=bytes(records)),))  # fmt: skip
    response = w.request(_build(request_class(0, PRODUCE), transactional_id=None, acks=-1,
                                timeout=datetime.timedelta(seconds=10), topic_data=(data,)))  # fmt: skip
    partition = response.responses[0].partition_responses[0]
    return partition.error_code, partition.base_offset


def test_an_idempotent_retry_after_a_failover_is_not_appended_twice(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix)
    try:
        bootstrap = start_cluster(brokers, TOPIC)
        first = partition_of(bootstrap, TOPIC)
        leader = next(b for b in brokers if b.node_id == first.leader)
        with Wire(leader.port, host=leader.host) as w:
            init = w.request(_build(request_class(22, 4), transactional_id=None,
                                    transaction_timeout=datetime.timedelta(seconds=60),
                                    producer_id=-1, producer_epoch=-1))  # fmt: skip
            assert init.error_code == 0
            pid, epoch = init.producer_id, init.producer_epoch

            def batch(sequence: int, count: int) -> bytes:
                return bytes(build_batch([(b"k", b"v%d" % (sequence + i), 0) for i in range(count)],
                                         producer_id=pid, epoch=epoch, sequence=sequence))  # fmt: skip

            assert _produce(w, batch(0, 3)) == (0, 0)
            assert _produce(w, batch(3, 2)) == (0, 3)

        leader.kill()
        live = ",".join(b.bootstrap for b in brokers if b is not leader)
        moved = wait_for(lambda: (p := partition_of(live, TOPIC)) and p.leader not in (-1, leader.node_id)
                         and p,
                         timeout=30, what="a new leader")  # fmt: skip
        new_leader = next(b for b in brokers if b.node_id == moved.leader)
        with Wire(new_leader.port, host=new_leader.host) as w:
            # the producer never heard its last acknowledgement and sends the batch again
            assert _produce(w, batch(3, 2)) == (0, 3)
            assert _produce(w, batch(0, 3)) == (0, 0)
            assert _produce(w, batch(5, 1)) == (0, 5)  # and goes on where it was
            assert _produce(w, batch(9, 1))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER

        consumer = Consumer({"bootstrap.servers": live, "group.id": "reader", "enable.auto.commit": False})
        low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        consumer.close()
        assert (low, high) == (0, 6)  # 3 + 2 + 1 records: no retry appended twice
    finally:
        for broker in brokers:
            broker.kill()
