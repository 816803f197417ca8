"""Driving the exactly-once pipeline (eos_pipeline.py) under SIGKILL, and checking its output.

Shared by the standalone and the three-broker tests: topic A is filled with ``records`` inputs,
pipeline processes are started and SIGKILLed in turn (mid-transaction or not) while the test's
``fault`` callback may kill and restart brokers, until the group's committed offsets cover every
input; then topic B, read with read_committed, must hold each input's output exactly once.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from tests.brokerd.conftest import REPO

PIPELINE = Path(__file__).with_name("eos_pipeline.py")
GROUP = "eos-group"


@dataclass
class EosResult:
    inputs: int
    outputs: int
    duplicates: int
    missing: int
    unexpected: int
    pipeline_kills: int
    seconds: float

    def __str__(self) -> str:
        return (f"exactly-once pipeline: {self.inputs} inputs, {self.outputs} committed outputs, "
                f"{self.duplicates} duplicates, {self.missing} missing; {self.pipeline_kills} pipeline "
                f"kills; {self.seconds:.1f} s")  # fmt: skip


def fill(bootstrap: str, topic: str, records: int, partitions: int) -> None:
    source = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for i in range(records):
        source.produce(topic, key=b"%d" % i, value=b"%d" % i, partition=i % partitions)
    assert source.flush(60) == 0


def _pipeline(bootstrap: str, tid: str, partitions: int, per_txn: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(PIPELINE), bootstrap, "A", "B", GROUP, tid, str(partitions), str(per_txn)],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip


def committed(bootstrap: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        tps = c.committed([TopicPartition("A", p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    except KafkaException:
        return -1
    finally:
        c.close()


def read_committed(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "eos-check", "isolation.level": "read_committed",
        "enable.auto.commit": False, "enable.partition.eof": True,
    })  # fmt: skip
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[bytes] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < partitions and time.monotonic() < deadline:
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


def run(
    bootstrap: str, log: Path, *, records: int, partitions: int, tid: str = "eos-pipeline",
    per_txn: int = 500, kills: int = 6, fault: Callable[[int], None] = lambda kills: None,
    timeout: float = 150,
) -> EosResult:
    """Run pipelines until every input is committed, SIGKILLing one (up to ``kills`` times) once
    it has committed more since the last kill; ``fault(kills so far)`` runs after each kill.
    Returns the verdict on B."""
    rng = random.Random(7)
    started = time.monotonic()
    done_kills = 0
    killed_at = -1  # the committed count at the last kill: each kill waits for progress since
    proc = _pipeline(bootstrap, tid, partitions, per_txn, log)
    try:
        while (done := committed(bootstrap, partitions)) < records:
            assert time.monotonic() - started < timeout, (
                f"the pipeline stalled at {done} of {records}:\n{log.read_text()[-3000:]}"
            )
            # Kills follow progress, not the clock: a pipeline on a quiet machine commits every
            # record within a couple of seconds, before kills on a timer would come.
            time.sleep(rng.uniform(0.05, 0.2))
            if proc.poll() is None and done_kills < kills and done > killed_at:
                proc.kill()  # SIGKILL, mid-transaction or not
                done_kills += 1
                killed_at = done
                fault(done_kills)
            if proc.poll() is not None:
                proc.wait()
                proc = _pipeline(bootstrap, tid, partitions, per_txn, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    seconds = time.monotonic() - started
    outputs = read_committed(bootstrap, "B", partitions)
    counts = collections.Counter(outputs)
    expected = {b"out-%d" % i for i in range(records)}
    return EosResult(
        inputs=records, outputs=len(outputs), duplicates=sum(n - 1 for n in counts.values() if n > 1),
        missing=len(expected - set(counts)), unexpected=len(set(counts) - expected),
        pipeline_kills=done_kills, seconds=seconds,
    )  # fmt: skip
