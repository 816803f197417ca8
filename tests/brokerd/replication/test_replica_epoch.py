"""KIP-903: a follower rejoins an ISR only as the incarnation of its broker registered now.

Followers fetch with Fetch v15, whose ReplicaState carries their broker epoch (the revision
of their registration in etcd). A broker that restarted after an unclean stop may have lost
the unflushed tail of its log; a fetch sent by its previous incarnation (stale epoch) must
never bring it back into the ISR, however far that fetch claims to have read. Raw requests,
so that the test plays a follower whose fetches it chooses."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from brokerd.coordination.keys import Keys
from brokerd.protocol import kio_adapter
from tests.brokerd.brokerd_wire import Wire, make_batch, request_class
from tests.brokerd.replication.clustertest import cluster_brokers, partition_of, start_cluster, wait_for
from tests.brokerd.replication.test_brokerd_cluster_leaders import _topic_id
from tests.brokerd.test_brokerd_wire import produce
from tests.etcd_server import EtcdServer

MS = datetime.timedelta(milliseconds=1)


def _registered_epoch(etcd: EtcdServer, prefix: str, node_id: int) -> int:
    async def read() -> int:
        client = etcd.client()
        try:
            entry = await client.get(Keys(prefix).broker(node_id))
            assert entry is not None
            return entry.create_revision
        finally:
            await client.close()

    return asyncio.run(asyncio.wait_for(read(), 30))


def _follower_fetch(wire: Wire, topic_id, replica_id: int, replica_epoch: int, offset: int) -> int:
    mod = kio_adapter.request_module(1, 15)
    partition = mod.FetchPartition(partition=0, current_leader_epoch=-1, fetch_offset=offset,
                                   last_fetched_epoch=-1, log_start_offset=-1,
                                   partition_max_bytes=1 << 20)  # fmt: skip
    request = kio_adapter.build(
        request_class(1, 15),
        replica_state=mod.ReplicaState(replica_id=replica_id, replica_epoch=replica_epoch),
        max_wait=0 * MS, min_bytes=0, max_bytes=1 << 20, isolation_level=0, session_id=0,
        session_epoch=-1, topics=(mod.FetchTopic(topic_id=topic_id, partitions=(partition,)),),
        forgotten_topics_data=(), rack_id="",
    )  # fmt: skip
    return wire.request(request).responses[0].partitions[0].error_code


def test_a_fetch_from_a_stale_broker_epoch_never_brings_a_replica_back_into_the_isr(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    # A short replica.lag.time.max.ms so that a paused follower leaves the ISR quickly; its
    # lease (broker.session.timeout.ms) outlives the test, so it stays registered meanwhile.
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, settings={"replica.lag.time.max.ms": 1500})
    brokers[2].settings["broker.session.timeout.ms"] = 120000
    paused = None
    try:
        bootstrap = start_cluster(brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("t", 1, replica_assignment=[[1, 2, 3]])])["t"].result(timeout=20)
        wait_for(lambda: (p := partition_of(bootstrap, "t")) and p.leader == 1 and len(p.isrs) == 3,
                 what="t led by broker 1 with every replica in sync")  # fmt: skip
        epoch = _registered_epoch(etcd_server, etcd_prefix, 3)

        # Broker 3 stops fetching (paused, its registration stays): the leader drops it.
        paused = brokers[2].pid
        os.kill(paused, signal.SIGSTOP)
        leader = brokers[0]
        with Wire(leader.port, host=leader.host) as w:
            answer = w.request(produce(w, "t", 0, make_batch([(None, b"x")]), acks=1))
            assert answer.responses[0].partition_responses[0].error_code == 0
            wait_for(lambda: sorted(partition_of(bootstrap, "t").isrs) == [1, 2], what="3 out of the ISR")
            topic_id = _topic_id(w, "t")
            end = 1

            # A fetch at the log end from a previous incarnation of broker 3: not added.
            for _ in range(10):
                assert _follower_fetch(w, topic_id, 3, epoch - 1, end) == 0
            # (the leader would drop it again after replica.lag.time.max.ms: watch meanwhile)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert sorted(partition_of(bootstrap, "t").isrs) == [1, 2]
                time.sleep(0.05)
            # The same fetch from the incarnation registered now rejoins it.
            assert _follower_fetch(w, topic_id, 3, epoch, end) == 0
            wait_for(lambda: sorted(partition_of(bootstrap, "t").isrs) == [1, 2, 3], what="broker 3 back")
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
        for broker in brokers:
            broker.kill()
