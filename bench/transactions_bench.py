"""Transactional produce against idempotent produce, on one brokerd or three, in the same run.

The same records (100-byte values, one partition per round-robin of 4, lz4) are produced by an
idempotent producer (the baseline) and by transactional producers committing every N records
for several N; each transaction costs InitProducerId once, then AddPartitionsToTxn, EndTxn, the
coordinator's fsynced state records and a marker per partition. Printed: records/s of each and
its ratio to the baseline (median of the rounds).

With ``--cluster``: three brokers on an etcd of their own, the topic and ``__transaction_state``
with three replicas and ``min.insync.replicas`` 2, so every state record and marker waits for the
in-sync replicas, and the markers of a transaction go to the brokers leading its partitions.

    python3 bench/transactions_bench.py [--records 10000] [--rounds 2] [--sizes 10,100,1000,10000] [--cluster]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "platform"), str(ROOT)]

from _common import Brokerd, print_results  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS = 4
VALUE = b"x" * 100
CONF = {"linger.ms": 5, "batch.size": 256_000, "compression.type": "lz4", "acks": "all"}


def idempotent(bootstrap: str, topic: str, records: int) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **CONF})
    for i in range(PARTITIONS):  # connected, producer id and metadata in hand before timing
        p.produce(topic, VALUE, partition=i)
    assert p.flush(30) == 0
    t0 = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, VALUE, partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(60) == 0
    return records / (time.perf_counter() - t0)


def transactional(bootstrap: str, topic: str, records: int, size: int, tid: str) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, **CONF})
    p.init_transactions(30)
    p.begin_transaction()  # connected and metadata in hand before timing, as the baseline
    for i in range(PARTITIONS):
        p.produce(topic, VALUE, partition=i)
    p.commit_transaction(30)
    t0 = time.perf_counter()
    for start in range(0, records, size):
        p.begin_transaction()
        for i in range(start, min(start + size, records)):
            while True:
                try:
                    p.produce(topic, VALUE, partition=i % PARTITIONS)
                    break
                except BufferError:
                    p.poll(0.01)
        p.commit_transaction(60)
    return records / (time.perf_counter() - t0)


@contextmanager
def standalone(root: Path) -> Iterator[tuple[str, int]]:
    broker = Brokerd(root, {"transaction.state.log.num.partitions": 4})
    broker.start()
    try:
        yield broker.bootstrap, 1
    finally:
        broker.stop()


@contextmanager
def cluster(root: Path) -> Iterator[tuple[str, int]]:
    from tests.brokerd.replication.clustertest import cluster_brokers, start_cluster
    from tests.etcd_server import EtcdServer

    etcd = EtcdServer.start(root / "etcd")
    settings = {"transaction.state.log.num.partitions": 4, "broker.session.timeout.ms": 6000}
    brokers = cluster_brokers(root, etcd, f"/bench/{uuid.uuid4().hex[:8]}/", settings=settings)
    try:
        yield start_cluster(brokers), 3
    finally:
        for broker in brokers:
            broker.kill()
        etcd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="10,100,1000,10000", help="records per transaction")
    ap.add_argument("--cluster", action="store_true", help="three brokers, replication factor 3")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="txn-bench-") as tmp, (
        cluster if args.cluster else standalone
    )(Path(tmp)) as (bootstrap, replicas):
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("bench", PARTITIONS, replicas)])["bench"].result(20)
        runs: dict[str, list[float]] = {"idempotent": []}
        for size in sizes:
            runs[f"transactional/{size}"] = []
        for r in range(args.rounds):  # alternating, so that drift hits every kind alike
            runs["idempotent"].append(idempotent(bootstrap, "bench", args.records))
            for size in sizes:
                rate = transactional(bootstrap, "bench", args.records, size, f"bench-{size}-{r}")
                runs[f"transactional/{size}"].append(rate)
    base = statistics.median(runs["idempotent"])
    results: dict[str, float] = {}
    for name, rates in runs.items():
        results[f"{name} records/s"] = statistics.median(rates)
        if name != "idempotent":
            results[f"{name} / idempotent"] = statistics.median(rates) / base
    print_results(results, places=3)


if __name__ == "__main__":
    main()
