"""The fault check, CI-sized: three brokers on 127.0.0.1/.2/.3 and a real etcd, an acks=all
idempotent producer writing a numbered queue while the partition's leader is killed with
SIGKILL and restarted, then a consumer reading everything back. As Jepsen's queue checker:
no acknowledged record is lost or duplicated, and offsets only grow."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd.replication.clustertest import cluster_brokers, wait_for
from tests.etcd_server import EtcdServer

KILLS = 3


def test_no_acknowledged_record_is_lost_when_leaders_are_killed(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, settings={"replica.lag.time.max.ms": 3000})
    try:
        for broker in brokers:
            broker.start(timeout=30)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("queue", 1, replication_factor=3)])["queue"].result(timeout=20)

        def partition():
            topic = (
                AdminClient({"bootstrap.servers": bootstrap}).list_topics("queue", timeout=10).topics["queue"]
            )
            return topic.error is None and topic.partitions.get(0)

        wait_for(lambda: (p := partition()) and sorted(p.isrs) == [1, 2, 3], what="the topic in sync")

        acked: dict[int, int] = {}  # value -> offset
        failed: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                 "linger.ms": 5, "message.timeout.ms": 60000})  # fmt: skip

            def delivered(err, msg) -> None:
                if err is None:
                    acked[int(msg.value())] = msg.offset()
                else:
                    failed.append(str(err))

            n = 0
            while not stop.is_set():
                producer.produce("queue", value=str(n).encode(), partition=0, on_delivery=delivered)
                producer.poll(0)
                n += 1
                time.sleep(0.002)
            producer.flush(60)

        writer = threading.Thread(target=produce, daemon=True)
        writer.start()
        failovers = []
        for _cycle in range(KILLS):
            wait_for(lambda: len(acked) > 50, what="writes flowing")
            p0 = wait_for(lambda: (p := partition()) and sorted(p.isrs) == [1, 2, 3] and p, timeout=60,
                          what="a full ISR")  # fmt: skip
            victim = next(b for b in brokers if b.node_id == p0.leader)
            before = len(acked)
            killed_at = time.monotonic()
            victim.kill()
            wait_for(lambda b=before: len(acked) > b + 20, timeout=30, what="writes resuming after the kill")
            failovers.append(time.monotonic() - killed_at)
            victim.start(timeout=30)
        stop.set()
        writer.join(90)
        assert not writer.is_alive()

        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition("queue", 0, 0)])
        seen: list[tuple[int, int]] = []  # (offset, value) in the order read
        end = max(acked.values()) + 1
        deadline = time.monotonic() + 60
        while (not seen or seen[-1][0] < end - 1) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append((message.offset(), int(message.value())))
        consumer.close()

        offsets = [o for o, _v in seen]
        assert offsets == sorted(set(offsets)), "offsets went backwards or repeated"
        values = [v for _o, v in seen]
        lost = sorted(set(acked) - set(values))
        duplicated = sorted(v for v in set(values) if values.count(v) > 1)
        assert not lost, f"{len(lost)} acknowledged record(s) lost, e.g. {lost[:10]}"
        assert not duplicated, f"duplicated: {duplicated[:10]}"
        assert all(dict(seen).get(offset) == value for value, offset in acked.items()), "acked offsets differ"
        print(f"{len(acked)} acknowledged, {len(failed)} failed, failovers (s): "
              f"{', '.join(f'{f:.2f}' for f in failovers)}")  # fmt: skip
    finally:
        for broker in brokers:
            broker.kill()
