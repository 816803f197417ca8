"""Exactly-once consume-transform-produce under SIGKILL, on a standalone broker.

10,000 records of topic A go through ``eos_pipeline.py`` (read_committed, transactions with the
consumed offsets committed inside them) into topic B. The pipeline process is SIGKILLed again
and again, and the broker (the transaction coordinator) once; each time a new pipeline process
takes over. Topic B, read with read_committed, must then hold every input's output exactly once:
the test reports the duplicates and the missing records, and both must be 0.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd.conftest import REPO, Broker

RECORDS = 10_000
PARTITIONS = 2
PIPELINE = Path(__file__).with_name("eos_pipeline.py")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker", settings={
        "transaction.state.log.num.partitions": 2,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
    })  # fmt: skip
    b.start()
    yield b
    b.stop()


def _pipeline(b: Broker, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(PIPELINE), b.bootstrap, "A", "B", "eos-group", "eos-pipeline",
             str(PARTITIONS)],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip


def _committed(b: Broker) -> int:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "eos-group"})
    try:
        tps = c.committed([TopicPartition("A", p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    except KafkaException:
        return -1
    finally:
        c.close()


def _read_committed(b: Broker, topic: str) -> list[bytes]:
    c = Consumer({
        "bootstrap.servers": b.bootstrap, "group.id": "eos-check", "isolation.level": "read_committed",
        "enable.auto.commit": False, "enable.partition.eof": True,
    })  # fmt: skip
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        values: list[bytes] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                raise KafkaException(m.error())
            at_end.discard(m.partition())
            values.append(m.value())
        return values
    finally:
        c.close()


def test_pipeline_is_exactly_once_under_sigkill(broker, tmp_path) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for name in ("A", "B"):
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(10)
    source = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for i in range(RECORDS):
        source.produce("A", key=b"%d" % i, value=b"%d" % i, partition=i % PARTITIONS)
    assert source.flush(30) == 0

    rng = random.Random(7)
    log = tmp_path / "pipeline.log"
    kills = broker_kills = 0
    proc = _pipeline(broker, log)
    deadline = time.monotonic() + 150
    try:
        while (done := _committed(broker)) < RECORDS:
            assert time.monotonic() < deadline, (
                f"the pipeline stalled at {done} of {RECORDS}:\n{log.read_text()[-3000:]}"
            )
            time.sleep(rng.uniform(0.8, 2.0))
            if proc.poll() is None and kills < 6:
                proc.kill()  # SIGKILL, mid-transaction or not
                kills += 1
            if kills == 3 and not broker_kills:  # the coordinator's broker, once
                broker.kill()
                broker.start(timeout=60)  # recovery of every log, on a machine shared with others
                broker_kills += 1
            if proc.poll() is not None:
                proc.wait()
                proc = _pipeline(broker, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    outputs = _read_committed(broker, "B")
    counts = collections.Counter(outputs)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    expected = {b"out-%d" % i for i in range(RECORDS)}
    missing = len(expected - set(counts))
    unexpected = len(set(counts) - expected)
    print(
        f"exactly-once pipeline: {RECORDS} inputs, {len(outputs)} committed outputs, "
        f"{duplicates} duplicates, {missing} missing; {kills} pipeline kills, {broker_kills} broker kill"
    )
    assert (duplicates, missing, unexpected) == (0, 0, 0)
    assert kills >= 3 and broker_kills == 1
