"""A rolling restart of three brokers (SIGTERM each in turn, waiting for the full ISR between
them) under an acks=all idempotent producer and a consumer group committing offsets: the
controlled shutdown moves each broker's leaderships, group coordinators included, before it
stops, so the clients see only retriable errors and nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.brokerd.replication.clustertest import cluster_brokers, start_cluster, wait_for
from tests.brokerd.replication.test_replication_faults import check_queue
from tests.etcd_server import EtcdServer

TOPIC = "events"
PARTITIONS = 3
GROUP = "rolling"
# What a client may see while leaderships move: it retries them.
RETRIABLE = {
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError._NO_OFFSET,
}  # fmt: skip


def _in_sync(bootstrap: str) -> bool:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    topics = [metadata.topics.get(TOPIC), metadata.topics.get("__consumer_offsets")]
    return all(
        t is not None and t.error is None and t.partitions
        and all(p.leader >= 0 and sorted(p.isrs) == [1, 2, 3] for p in t.partitions.values())
        for t in topics
    )  # fmt: skip


def test_rolling_restart_costs_clients_only_retriable_errors(
    tmp_path: Path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(
        tmp_path, etcd_server, etcd_prefix,
        settings={"group.initial.rebalance.delay.ms": 0, "offsets.topic.num.partitions": 10},
    )  # fmt: skip
    try:
        bootstrap = start_cluster(brokers, TOPIC, PARTITIONS)

        stop = threading.Event()
        produced = threading.Event()  # the producer flushed: every acknowledgement is in
        acked: dict[int, tuple[int, int]] = {}  # value -> (partition, offset)
        producer_errors: list[str] = []
        consumer_errors: list[str] = []
        consumed: list[int] = []
        commits: dict[int, list[int]] = {}  # partition -> committed offsets, in commit order

        def produce() -> None:
            producer = Producer({
                "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                "message.timeout.ms": 60000,
                "error_cb": lambda e: e.fatal() and producer_errors.append(f"fatal: {e}"),
            })  # fmt: skip

            def delivered(err, msg) -> None:
                if err is None:
                    acked[int(msg.value())] = (msg.partition(), msg.offset())
                else:
                    producer_errors.append(str(err))

            n = 0
            while not stop.is_set():
                producer.produce(TOPIC, value=str(n).encode(), on_delivery=delivered)
                producer.poll(0)
                n += 1
                time.sleep(0.004)
            producer.flush(60)

        def consume() -> None:
            consumer = Consumer({
                "bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                "error_cb": lambda e: e.code() not in RETRIABLE and consumer_errors.append(f"client: {e}"),
            })  # fmt: skip
            consumer.subscribe([TOPIC])
            since_commit = 0
            while not (
                produced.is_set() and (set(acked) <= set(consumed) or time.monotonic() > drain_deadline)
            ):
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().code() not in RETRIABLE:
                        consumer_errors.append(f"poll: {message.error()}")
                    continue
                consumed.append(int(message.value()))
                since_commit += 1
                if since_commit >= 50:
                    since_commit = 0
                    try:
                        for tp in consumer.commit(asynchronous=False) or []:
                            if tp.offset >= 0:  # -1001: nothing consumed from it to commit
                                commits.setdefault(tp.partition, []).append(tp.offset)
                    except KafkaException as exc:
                        if exc.args[0].code() not in RETRIABLE:
                            consumer_errors.append(f"commit: {exc.args[0]}")
            consumer.close()

        drain_deadline = float("inf")
        writer = threading.Thread(target=produce, daemon=True)
        reader = threading.Thread(target=consume, daemon=True)
        writer.start()
        reader.start()
        wait_for(lambda: len(consumed) > 100, timeout=60, what="the group consuming")

        for broker in brokers:
            wait_for(lambda: _in_sync(bootstrap), timeout=90, what="a full ISR everywhere")
            before = len(acked)
            assert broker.stop(timeout=60) == 0, broker.stderr_tail()
            broker.start(timeout=60)
            wait_for(lambda b=before: len(acked) > b + 50, timeout=60, what="writes flowing again")
        wait_for(lambda: _in_sync(bootstrap), timeout=90, what="a full ISR at the end")

        stop.set()
        writer.join(90)
        drain_deadline = time.monotonic() + 60
        produced.set()
        reader.join(90)
        assert not writer.is_alive() and not reader.is_alive()

        assert not producer_errors, producer_errors[:5]
        assert not consumer_errors, consumer_errors[:5]
        lost = sorted(set(acked) - set(consumed))
        assert not lost, f"{len(lost)} acknowledged record(s) the group never consumed, e.g. {lost[:10]}"
        for partition, offsets in commits.items():
            assert offsets == sorted(offsets), f"committed offsets of {partition} went backwards"
        # the log itself: every acknowledged record once, at its acknowledged offset
        for partition in range(PARTITIONS):
            mine = {v: o for v, (p, o) in acked.items() if p == partition}
            seen = _read_partition(bootstrap, partition, max(mine.values()) + 1)
            lost, duplicated, problems = check_queue(mine, seen)
            assert not lost and not duplicated and not problems, (partition, lost[:5], duplicated[:5],
                                                                  problems)  # fmt: skip
        for broker in brokers:
            assert "controlled shutdown: leaderships moved" in broker.log_text() + broker.stderr_tail()
        print(f"{len(acked)} acknowledged, {len(consumed)} consumed, commits per partition: "
              f"{ {p: len(o) for p, o in commits.items()} }")  # fmt: skip
    finally:
        for broker in brokers:
            broker.kill()


def _read_partition(bootstrap: str, partition: int, end: int) -> list[tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, partition, 0)])
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 20
    while (not seen or seen[-1][0] < end - 1) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append((message.offset(), int(message.value())))
    consumer.close()
    return seen
