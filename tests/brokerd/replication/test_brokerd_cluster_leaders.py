"""In a cluster only a partition's leader serves it: Produce, Fetch and ListOffsets sent to
another broker answer NOT_LEADER_OR_FOLLOWER, and a request naming a leader epoch other than
the partition's answers FENCED_LEADER_EPOCH (behind) or UNKNOWN_LEADER_EPOCH (ahead), as
Kafka does. Raw requests, so that no client retries hide the answers."""

from __future__ import annotations

import dataclasses
import datetime
import struct
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from brokerd.protocol import kio_adapter
from tests.brokerd.brokerd_wire import Wire, make_batch, request_class
from tests.brokerd.replication.clustertest import cluster_brokers, start_brokers, wait_for
from tests.brokerd.test_brokerd_wire import fetch_request, produce
from tests.etcd_server import EtcdServer

NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH = 6, 74, 75


def _fetch(wire: Wire, topic: str, epoch: int) -> int:
    request = fetch_request(topic, 0)
    topics = request.topics
    part = dataclasses.replace(topics[0].partitions[0], current_leader_epoch=epoch)
    request = dataclasses.replace(request, topics=(dataclasses.replace(topics[0], partitions=(part,)),))
    return wire.request(request).responses[0].partitions[0].error_code


def _list_offsets(wire: Wire, topic: str, epoch: int) -> tuple[int, int]:
    mod = kio_adapter.request_module(2, 8)
    partition = mod.ListOffsetsPartition(partition_index=0, current_leader_epoch=epoch, timestamp=-1)
    request = request_class(2, 8)(
        replica_id=-1, isolation_level=0, topics=(mod.ListOffsetsTopic(name=topic, partitions=(partition,)),)
    )
    answer = wire.request(request).topics[0].partitions[0]
    return answer.error_code, answer.leader_epoch


def _batches(records: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 12 <= len(records):
        (length,) = struct.unpack_from(">i", records, pos + 8)
        out.append(records[pos : pos + 12 + length])
        pos += 12 + length
    return out


def _offset_for_epoch(wire: Wire, topic: str, epoch: int, current: int = -1) -> tuple[int, int, int]:
    mod = kio_adapter.request_module(23, 4)
    partition = mod.OffsetForLeaderPartition(partition=0, current_leader_epoch=current, leader_epoch=epoch)
    request = request_class(23, 4)(
        replica_id=-1, topics=(mod.OffsetForLeaderTopic(topic=topic, partitions=(partition,)),)
    )
    answer = wire.request(request).topics[0].partitions[0]
    return answer.error_code, answer.leader_epoch, answer.end_offset


def _metadata_topic(wire: Wire, topic: str):
    mod = kio_adapter.request_module(3, 12)
    wanted = (mod.MetadataRequestTopic(name=topic, topic_id=None),)
    answer = wire.request(kio_adapter.build(request_class(3, 12), topics=wanted,
                                            allow_auto_topic_creation=False,
                                            include_topic_authorized_operations=False))  # fmt: skip
    return answer.topics[0]


def _topic_id(wire: Wire, topic: str):
    return _metadata_topic(wire, topic).topic_id


def _offline_replicas(wire: Wire, topic: str) -> list[int]:
    return sorted(_metadata_topic(wire, topic).partitions[0].offline_replicas)


def _produce_by_id(wire: Wire, topic_id, records: bytes) -> int:
    """Produce v13 (KIP-516): the topic named by its id."""
    mod = kio_adapter.request_module(0, 13)
    partition = mod.PartitionProduceData(index=0, records=records)
    data = mod.TopicProduceData(topic_id=topic_id, partition_data=(partition,))
    answer = wire.request(kio_adapter.build(request_class(0, 13), transactional_id=None, acks=-1,
                                            timeout=datetime.timedelta(seconds=5), topic_data=(data,)))
    return answer.responses[0].partition_responses[0].error_code


def test_only_the_leader_serves_a_partition_and_leader_epochs_are_checked(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix)
    try:
        start_brokers(brokers)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("t", 1, replication_factor=3)])["t"].result(timeout=20)

        def partition():
            topic = admin.list_topics("t", timeout=10).topics["t"]
            return topic.error is None and topic.partitions.get(0)

        p0 = wait_for(partition, what="the topic")
        leader = next(b for b in brokers if b.node_id == p0.leader)
        other = next(b for b in brokers if b.node_id != p0.leader)
        with Wire(leader.port, host=leader.host) as w:
            wait_for(lambda: _fetch(w, "t", 0) == 0, what="the leader to serve")
            answer = w.request(produce(w, "t", 0, make_batch([(None, b"x")])))
            assert answer.responses[0].partition_responses[0].error_code == 0
            assert _fetch(w, "t", 1) == UNKNOWN_LEADER_EPOCH
            assert _list_offsets(w, "t", 0) == (0, 0)
            assert _list_offsets(w, "t", 1)[0] == UNKNOWN_LEADER_EPOCH
        with Wire(other.port, host=other.host) as w:
            answer = w.request(produce(w, "t", 0, make_batch([(None, b"y")])))
            assert answer.responses[0].partition_responses[0].error_code == NOT_LEADER_OR_FOLLOWER
            assert _fetch(w, "t", -1) == NOT_LEADER_OR_FOLLOWER
            assert _list_offsets(w, "t", -1)[0] == NOT_LEADER_OR_FOLLOWER

        # The leader dies: an in-sync follower takes over with a new leader epoch, and a
        # request still naming epoch 0 is fenced there.
        leader.kill()
        p0 = wait_for(lambda: (p := partition()) and p.leader not in (-1, leader.node_id) and p,
                      what="a new leader")  # fmt: skip
        new = next(b for b in brokers if b.node_id == p0.leader)
        with Wire(new.port, host=new.host) as w:
            wait_for(lambda: _list_offsets(w, "t", -1)[0] == 0, what="the new leader to serve")
            # Metadata names the killed broker's replica offline once its registration is gone.
            wait_for(lambda: _offline_replicas(w, "t") == [leader.node_id], what="the replica offline")
            _error, epoch = _list_offsets(w, "t", -1)
            assert epoch >= 1
            assert _fetch(w, "t", 0) == FENCED_LEADER_EPOCH
            assert _list_offsets(w, "t", 0)[0] == FENCED_LEADER_EPOCH
            assert _fetch(w, "t", epoch) == 0
            # Its epoch cache, rebuilt from the batches it copied: epoch 0 began at 0 and ended
            # at 1 (the one record); its own epoch began at 1.
            assert _offset_for_epoch(w, "t", 0) == (0, 0, 1)
            assert _offset_for_epoch(w, "t", epoch) == (0, epoch, 1)
            assert _offset_for_epoch(w, "t", epoch + 1) == (0, -1, -1)
            assert _offset_for_epoch(w, "t", 0, current=0)[0] == FENCED_LEADER_EPOCH
            # Batches carry the epoch of the leader that appended them (for followers' caches).
            answer = w.request(produce(w, "t", 0, make_batch([(None, b"z")])))
            assert answer.responses[0].partition_responses[0].base_offset == 1
            records = w.request(fetch_request("t", 0)).responses[0].partitions[0].records
            assert [struct.unpack_from(">i", b, 12)[0] for b in _batches(records)] == [0, epoch]
        third = next(b for b in brokers if b not in (leader, new))  # a live follower
        with Wire(third.port, host=third.host) as w:
            assert _offset_for_epoch(w, "t", 0)[0] == NOT_LEADER_OR_FOLLOWER
        # Produce v13 names the topic by id: every live broker knows the cluster's id of the topic
        ids = set()
        for broker in (new, third):
            with Wire(broker.port, host=broker.host) as w:
                ids.add(_topic_id(w, "t"))
        [topic_id] = ids
        with Wire(third.port, host=third.host) as w:
            assert _produce_by_id(w, topic_id, make_batch([(None, b"y")])) == NOT_LEADER_OR_FOLLOWER
        with Wire(new.port, host=new.host) as w:
            assert _produce_by_id(w, topic_id, make_batch([(None, b"by id")])) == 0
    finally:
        for broker in brokers:
            broker.kill()
