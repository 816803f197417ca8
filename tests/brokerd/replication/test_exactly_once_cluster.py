"""Exactly-once consume-transform-produce on a three-broker cluster, under SIGKILL.

10,000 records of topic A (replication factor 3) go through ``eos_pipeline.py`` into topic B in
transactions that commit the consumed offsets. The pipeline process is SIGKILLed again and again,
and so is the broker coordinating the pipeline's transactional id (then restarted): the new
leader of the id's ``__transaction_state`` partition takes over, completing or aborting what the
dead one left. Topic B, read with read_committed, must then hold every input's output exactly
once; the test reports the duplicates and the missing records (both must be 0).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from brokerd_wire import Wire, request_class
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd import eos_run
from tests.brokerd.replication.clustertest import cluster_brokers, partition_of, start_cluster, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

RECORDS = 10_000
PARTITIONS = 2
TID = "eos-pipeline"


def _coordinator(brokers, tid: str) -> int:
    """The node FindCoordinator(transaction) names for ``tid`` (0 while there is none)."""
    b = next(b for b in brokers if b.proc is not None and b.proc.poll() is None)
    with Wire(b.ports["PLAINTEXT"], b.host) as w:
        resp = w.request(request_class(10, 3)(key=tid, key_type=1))
    return resp.node_id if resp.error_code == 0 else 0


def test_pipeline_is_exactly_once_when_the_coordinators_broker_is_killed(tmp_path: Path, etcd_server) -> None:
    settings = {
        "transaction.state.log.num.partitions": 3,
        "offsets.topic.num.partitions": 3,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
        "group.initial.rebalance.delay.ms": 0,
    }
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    brokers = cluster_brokers(tmp_path, etcd_server, prefix, settings=settings)
    killed: list[int] = []
    try:
        bootstrap = start_cluster(brokers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for name in ("A", "B"):
            admin.create_topics([NewTopic(name, PARTITIONS, 3)])[name].result(20)
            for i in range(PARTITIONS):
                wait_for(lambda n=name, i=i: (p := partition_of(bootstrap, n, i)) and len(p.isrs) == 3,
                         what=f"{name}-{i} in sync")  # fmt: skip
        eos_run.fill(bootstrap, "A", RECORDS, PARTITIONS)
        wait_for(lambda: _coordinator(brokers, TID), what="a transaction coordinator")

        def fault(kills: int) -> None:
            if kills in (1, 2):  # the broker coordinating the pipeline's transactions
                node = wait_for(lambda: _coordinator(brokers, TID), timeout=30, what="the coordinator")
                victim = next(b for b in brokers if b.node_id == node)
                victim.kill()
                killed.append(node)
                victim.start(timeout=60)

        result = eos_run.run(bootstrap, tmp_path / "pipeline.log", records=RECORDS, partitions=PARTITIONS,
                             tid=TID, per_txn=25, fault=fault, timeout=150)  # fmt: skip
        print(f"{result}; coordinator brokers killed: {killed}")
        assert (result.duplicates, result.missing, result.unexpected) == (0, 0, 0)
        assert result.pipeline_kills >= 2 and len(killed) == 2
    finally:
        for b in brokers:
            b.stop()
