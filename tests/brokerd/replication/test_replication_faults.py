"""The fault check, CI-sized: three brokers on 127.0.0.1/.2/.3 and a real etcd, an acks=all
idempotent producer writing a numbered queue while the partition's leader is killed with
SIGKILL and restarted, then a consumer reading everything back. As Jepsen's queue checker:
no acknowledged record is lost or duplicated, and offsets only grow."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.index import load_payload_module
from kio.static.constants import EntityType

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import cluster_brokers, start_brokers, wait_for
from tests.etcd_server import EtcdServer

KILLS = 3


def check_queue(acked: dict[int, int], seen: list[tuple[int, int]]) -> tuple[list, list, list]:
    """Jepsen's queue check over what a consumer read (offset, value), in order, against what
    the producer had acknowledged (value -> offset): (lost, duplicated, other problems)."""
    offsets = [o for o, _v in seen]
    values = [v for _o, v in seen]
    lost = sorted(set(acked) - set(values))
    duplicated = sorted(v for v in set(values) if values.count(v) > 1)
    problems = []
    if offsets != sorted(set(offsets)):
        problems.append("offsets went backwards or repeated")
    read = dict(seen)
    moved = [v for v, o in acked.items() if v in read.values() and read.get(o) != v]
    if moved:
        problems.append(f"{len(moved)} acknowledged record(s) not at their acknowledged offset")
    return lost, duplicated, problems


def read_back(bootstrap: str, end: int, idle: float = 10.0) -> list[tuple[int, int]]:
    """Everything in queue-0 below ``end``, or what there is once nothing came for ``idle`` s."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False})
    consumer.assign([TopicPartition("queue", 0, 0)])
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + idle
    while (not seen or seen[-1][0] < end - 1) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append((message.offset(), int(message.value())))
            deadline = time.monotonic() + idle
    consumer.close()
    return seen


def test_no_acknowledged_record_is_lost_when_leaders_are_killed(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, settings={"replica.lag.time.max.ms": 3000})
    try:
        start_brokers(brokers)
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
        writer = threading.Thread(target=_produce_queue, args=(bootstrap, acked, stop, failed), daemon=True)
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

        seen = read_back(bootstrap, max(acked.values()) + 1)
        lost, duplicated, problems = check_queue(acked, seen)
        assert not lost, f"{len(lost)} acknowledged record(s) lost, e.g. {lost[:10]}"
        assert not duplicated, f"duplicated: {duplicated[:10]}"
        assert not problems, problems
        print(f"{len(acked)} acknowledged, {len(failed)} failed, failovers (s): "
              f"{', '.join(f'{f:.2f}' for f in failovers)}")  # fmt: skip
    finally:
        for broker in brokers:
            broker.kill()


def test_the_checker_reports_loss_when_writes_are_acknowledged_by_the_leader_alone(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    """The negative control: acks=1 acknowledges at the leader alone. The followers are paused
    (SIGSTOP, shorter than the session and lag timeouts, so they stay in the ISR), the leader
    acknowledges a burst and dies, and an in-sync follower that never copied the burst takes
    over: the same checker must report the burst lost."""
    # A session long enough that the paused followers keep their registrations (and so their
    # ISR places): only the leader's death changes the cluster.
    brokers = cluster_brokers(
        tmp_path, etcd_server, etcd_prefix, settings={"broker.session.timeout.ms": 8000}
    )
    try:
        start_brokers(brokers)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, what="3 brokers")
        admin.create_topics([NewTopic("queue", 1, replication_factor=3)])["queue"].result(timeout=20)

        def partition():
            topic = (
                AdminClient({"bootstrap.servers": bootstrap}).list_topics("queue", timeout=10).topics["queue"]
            )
            return topic.error is None and topic.partitions.get(0)

        p0 = wait_for(lambda: (p := partition()) and sorted(p.isrs) == [1, 2, 3] and p, what="in sync")
        leader = next(b for b in brokers if b.node_id == p0.leader)
        followers = [b for b in brokers if b is not leader]
        acked: dict[int, int] = {}

        def delivered(err, msg) -> None:
            if err is None:
                acked[int(msg.value())] = msg.offset()

        producer = Producer({"bootstrap.servers": leader.bootstrap, "acks": 1, "linger.ms": 0})
        for n in range(100):  # copied by the followers before the pause
            producer.produce("queue", value=str(n).encode(), partition=0, on_delivery=delivered)
        producer.flush(10)
        # the leader's high watermark reaches 100 once every follower has fetched them
        watcher = Consumer({"bootstrap.servers": leader.bootstrap, "group.id": "watcher"})
        wait_for(lambda: watcher.get_watermark_offsets(TopicPartition("queue", 0), timeout=5, cached=False)[1]
                 >= 100, what="the followers to copy the first records")  # fmt: skip
        watcher.close()
        for follower in followers:
            os.kill(follower.pid, signal.SIGSTOP)
        # Their fetches in flight long-poll at most 0.5 s: let them be answered (empty) before
        # the burst, or the burst would wait in the followers' socket buffers.
        time.sleep(1.5)
        try:
            for n in range(100, 300):  # acknowledged by the leader alone
                producer.produce("queue", value=str(n).encode(), partition=0, on_delivery=delivered)
            producer.flush(5)
            leader.kill()
        finally:
            for follower in followers:
                os.kill(follower.pid, signal.SIGCONT)
        assert len(acked) == 300
        wait_for(lambda: (p := partition()) and p.leader in {f.node_id for f in followers}, timeout=30,
                 what="a follower leading")  # fmt: skip
        leader.start(timeout=30)
        # the log ends short of what was acknowledged: read until nothing more comes for a while
        lost, _duplicated, _problems = check_queue(acked, read_back(bootstrap, 300, idle=4.0))
        assert lost, "the checker found no loss although writes were acknowledged by the leader alone"
        assert set(lost) <= set(range(100, 300))
    finally:
        for broker in brokers:
            broker.kill()


def test_a_killed_leader_is_fenced_fast_and_clients_are_told_no_leader_meanwhile(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    """Fast failure detection with a 30 s session: a follower whose connection to the killed
    leader is refused reports it, answers Metadata with no leader (LEADER_NOT_AVAILABLE) for
    the partition while the controller is paused, and once the controller runs again it
    probes the leader's listener, fences it and elects an in-sync follower, long before the
    lease could expire; the acks=all producer loses nothing."""
    settings = {"broker.session.timeout.ms": 30000}
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, settings=settings)
    try:
        start_brokers(brokers)
        bootstrap = ",".join(b.bootstrap for b in brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        meta = wait_for(
            lambda: (m := admin.list_topics(timeout=10)).controller_id > 0 and len(m.brokers) == 3 and m,
            what="3 brokers and a controller",
        )
        controller = next(b for b in brokers if b.node_id == meta.controller_id)
        leader, follower = (b for b in brokers if b is not controller)
        order = [leader.node_id, follower.node_id, controller.node_id]
        admin.create_topics([NewTopic("queue", 1, replica_assignment=[order])])["queue"].result(timeout=20)
        wait_for(lambda: (p := _partition(follower)) is not None and p.leader_id == leader.node_id
                 and sorted(p.isr_nodes) == [1, 2, 3], what="the topic in sync")  # fmt: skip

        acked: dict[int, int] = {}
        stop = threading.Event()
        writer = threading.Thread(target=_produce_queue, args=(bootstrap, acked, stop), daemon=True)
        writer.start()
        wait_for(lambda: len(acked) > 50, what="writes flowing")
        os.kill(controller.pid, signal.SIGSTOP)
        try:
            leader.kill()
            # the follower's connection to the leader broke: it reports no leader to clients
            row = wait_for(lambda: (p := _partition(follower)) is not None and p.leader_id == -1 and p,
                           timeout=15, what="Metadata without a leader")  # fmt: skip
            assert row.error_code == 5  # LEADER_NOT_AVAILABLE: clients ask again soon
            assert leader.node_id in row.isr_nodes  # nothing was fenced yet: the controller is paused
        finally:
            os.kill(controller.pid, signal.SIGCONT)
        row = wait_for(lambda: (p := _partition(follower)) is not None and p.leader_id in (follower.node_id,
                       controller.node_id) and p, timeout=15, what="an in-sync follower leading")  # fmt: skip
        assert leader.node_id not in row.isr_nodes
        assert "fenced broker" in controller.log_path.read_text()
        before = len(acked)
        wait_for(lambda: len(acked) > before + 20, timeout=30, what="writes resuming")
        stop.set()
        writer.join(90)
        lost, duplicated, problems = check_queue(acked, read_back(bootstrap, max(acked.values()) + 1))
        assert not lost and not duplicated and not problems, (lost[:10], duplicated[:10], problems)
    finally:
        for broker in brokers:
            broker.kill()


def _partition(broker):
    """Partition queue-0 as ``broker`` alone answers Metadata v12 for it (None if unknown)."""
    with Wire(broker.port, host=broker.host) as w:
        answer = w.request(request_class(3, 12)(topics=(_metadata_topic("queue"),),
                                                allow_auto_topic_creation=False,
                                                include_topic_authorized_operations=False))  # fmt: skip
    topics = [t for t in answer.topics if t.name == "queue" and t.error_code == 0]
    return topics[0].partitions[0] if topics and topics[0].partitions else None


def _metadata_topic(name: str):
    return load_payload_module(3, 12, EntityType.request).MetadataRequestTopic(topic_id=None, name=name)


def _produce_queue(
    bootstrap: str, acked: dict[int, int], stop: threading.Event, failed: list | None = None
) -> None:
    """Write 0, 1, 2, ... to queue-0 with acks=all and idempotence until ``stop``; ``acked``
    gets value -> offset of every acknowledged write, ``failed`` the errors."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 60000})  # fmt: skip

    def delivered(err, msg) -> None:
        if err is None:
            acked[int(msg.value())] = msg.offset()
        elif failed is not None:
            failed.append(str(err))

    n = 0
    while not stop.is_set():
        producer.produce("queue", value=str(n).encode(), partition=0, on_delivery=delivered)
        producer.poll(0)
        n += 1
        time.sleep(0.002)
    producer.flush(60)
