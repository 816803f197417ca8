"""kill -9 the broker over and over while producing with acks=all and acks=1.

After every restart each acknowledged record must be readable at its acknowledged offset and
offsets must be contiguous. The broker's test-only flush journal (``test.flush.journal``)
records the flushed end offset of each partition after every group fsync; each acks=all
acknowledgement must already be covered by it when the client sees the acknowledgement.
A kill -9 keeps the page cache, so that journal is what proves the fsync happened first.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROUNDS = 20
PARTITIONS = 2


class Journal:
    """Tails the broker's flush journal: topic, partition -> highest flushed end offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.flushed: dict[tuple[str, int], int] = defaultdict(int)
        self._pos = 0
        self._partial = b""

    def refresh(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._pos)
            data = fh.read()
        self._pos += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            topic, partition, end = line.decode().split("\t")
            key = (topic, int(partition))
            self.flushed[key] = max(self.flushed[key], int(end))


def read_all(bootstrap: str, topic: str) -> dict[int, list]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "verify",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out: dict[int, list] = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 20
        while sum(len(v) for v in out.values()) < sum(ends.values()):
            assert time.monotonic() < deadline, "could not read back the log"
            for msg in consumer.consume(1000, 0.2):
                assert not msg.error(), msg.error()
                out[msg.partition()].append((msg.offset(), msg.value()))
        return out
    finally:
        consumer.close()


def test_kill_dash_nine_loses_no_acknowledged_record(broker_factory, tmp_path) -> None:
    journal_path = tmp_path / "flush.journal"
    broker = broker_factory(
        settings={
            "test.flush.journal": journal_path,
            "log.segment.bytes": 256 * 1024,  # rolls segments during the test too
        }
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for topic in ("all", "one"):
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    journal = Journal(journal_path)
    acked: dict[str, dict[tuple[int, int], bytes]] = {"all": {}, "one": {}}
    violations: list[str] = []
    rng = random.Random(1234)
    counter = 0

    def on_delivery(err, msg) -> None:
        if err is not None:
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        acked[topic][(partition, offset)] = msg.value()
        if topic == "all":
            journal.refresh()
            if journal.flushed[(topic, partition)] <= offset:
                violations.append(f"acks=all offset {partition}/{offset} acknowledged before it was flushed")

    for _round in range(ROUNDS):
        producers = {
            "all": Producer(
                {
                    "bootstrap.servers": broker.bootstrap,
                    "acks": "all",
                    "linger.ms": 1,
                    "message.timeout.ms": 3000,
                    "enable.idempotence": False,
                }
            ),
            "one": Producer(
                {
                    "bootstrap.servers": broker.bootstrap,
                    "acks": 1,
                    "linger.ms": 1,
                    "message.timeout.ms": 3000,
                    "enable.idempotence": False,
                }
            ),
        }
        kill_at = time.monotonic() + rng.uniform(0.05, 0.3)
        while time.monotonic() < kill_at:
            for topic, producer in producers.items():
                for _ in range(20):
                    counter += 1
                    producer.produce(
                        topic,
                        f"{topic}-{counter}".encode() * 4,
                        partition=counter % PARTITIONS,
                        on_delivery=on_delivery,
                    )
                producer.poll(0)
            time.sleep(0.002)
        broker.kill()
        for producer in producers.values():
            producer.poll(0.05)
            producer.purge()
            producer.flush(2)
        broker.start()
        for topic in ("all", "one"):
            stored = read_all(broker.bootstrap, topic)
            for p, records in stored.items():
                offsets = [o for o, _v in records]
                assert offsets == list(range(len(offsets))), f"{topic}/{p}: offsets are not contiguous"
            by_offset = {(p, o): v for p, records in stored.items() for o, v in records}
            for key, value in acked[topic].items():
                assert by_offset.get(key) == value, f"{topic} {key}: acknowledged record lost or moved"
        assert not violations, violations[:5]
    assert len(acked["all"]) > 100 and len(acked["one"]) > 100
