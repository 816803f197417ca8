"""Exactly-once consume-transform-produce under SIGKILL, on a standalone broker.

10,000 records of topic A go through ``eos_pipeline.py`` (read_committed, transactions of at
most 250 records with the consumed offsets committed inside them) into topic B. The pipeline
process is SIGKILLed again and again, and the broker (the transaction coordinator) once; each
time a new pipeline process takes over. Topic B, read with read_committed, must then hold every
input's output exactly once: the test reports the duplicates and the missing records, and both
must be 0.
"""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd import eos_run
from tests.brokerd.conftest import Broker

RECORDS = 10_000
PARTITIONS = 2


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker", settings={
        "transaction.state.log.num.partitions": 2,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
    })  # fmt: skip
    b.start()
    yield b
    b.stop()


def test_pipeline_is_exactly_once_under_sigkill(broker, tmp_path) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for name in ("A", "B"):
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(10)
    eos_run.fill(broker.bootstrap, "A", RECORDS, PARTITIONS)
    broker_kills = 0

    def fault(kills: int) -> None:
        nonlocal broker_kills
        if kills == 2:  # the coordinator's broker, once
            broker.kill()
            broker.start(timeout=60)  # recovery of every log, on a machine shared with others
            broker_kills += 1

    result = eos_run.run(broker.bootstrap, tmp_path / "pipeline.log", records=RECORDS, partitions=PARTITIONS,
                         per_txn=250, fault=fault)  # fmt: skip
    print(f"{result}; {broker_kills} broker kill")
    assert (result.duplicates, result.missing, result.unexpected) == (0, 0, 0)
    assert result.pipeline_kills >= 3 and broker_kills == 1
