"""Replication: failover under SIGKILL, and what RF=3 costs against one broker.

    python bench/replication_bench.py [--kills 20] [--records 20000] [--size 1000]

Three brokerd on 127.0.0.1/.2/.3 with a real etcd (default settings: a 6 s session), one
partition with three replicas:

- **failover**: an acks=all idempotent producer writes a numbered queue while the
  partition's leader is killed with SIGKILL ``--kills`` times and restarted. For each kill:
  the time until the producer's next acknowledged write (p50, p99, max) and until the
  restarted broker is back in the full ISR. Then Jepsen's queue check on everything read
  back: acknowledged records lost or duplicated (both must be 0).
- **cost**: produce throughput and p99 acknowledgement latency of RF=3 acks=all and RF=3
  acks=1 against RF=1 on one broker alone (acks=all), all measured in this run; the ratios
  are the figures to compare (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from _common import print_results  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.brokerd.conftest import Broker  # noqa: E402
from tests.brokerd.replication.clustertest import cluster_brokers, wait_for  # noqa: E402
from tests.brokerd.replication.test_replication_faults import check_queue, read_back  # noqa: E402
from tests.etcd_server import EtcdServer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def produce_run(bootstrap: str, topic: str, records: int, size: int, acks: str) -> tuple[float, float]:
    """(MB/s, p99 acknowledgement latency in ms) of ``records`` writes of ``size`` bytes."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                         "enable.idempotence": acks == "all"})  # fmt: skip
    payload = b"x" * size
    latencies: list[float] = []

    def delivered(err, _msg, sent=None) -> None:
        if err is None:
            latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    for _ in range(records):
        sent = time.perf_counter()
        while True:
            try:
                producer.produce(
                    topic, payload, partition=0, on_delivery=lambda e, m, s=sent: delivered(e, m, s)
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - start
    return records * size / elapsed / 1e6, percentile(latencies, 0.99) * 1000


def create(bootstrap: str, topic: str, rf: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, replication_factor=rf)])[topic].result(timeout=30)


def partition(bootstrap: str, topic: str):
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic]
    return meta.error is None and meta.partitions.get(0)


def failover(brokers, bootstrap: str, kills: int) -> dict[str, float]:
    create(bootstrap, "queue", 3)
    wait_for(lambda: (p := partition(bootstrap, "queue")) and len(p.isrs) == 3, what="in sync")
    acked: dict[int, int] = {}
    produced = [0]  # how many values the producer has handed to the client so far
    stop = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 120000})  # fmt: skip

        def delivered(err, msg) -> None:
            if err is None:
                acked[int(msg.value())] = msg.offset()

        n = 0
        while not stop.is_set():
            producer.produce("queue", value=str(n).encode(), partition=0, on_delivery=delivered)
            producer.poll(0)
            n += 1
            produced[0] = n
            time.sleep(0.002)
        producer.flush(120)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    resume, rejoin = [], []
    for cycle in range(kills):
        p0 = wait_for(lambda: (p := partition(bootstrap, "queue")) and len(p.isrs) == 3 and p, timeout=120,
                      what="a full ISR")  # fmt: skip
        victim = next(b for b in brokers if b.node_id == p0.leader)
        killed = time.monotonic()
        victim.kill()
        after = produced[0]  # a write handed over after the kill: its acknowledgement is the failover
        wait_for(lambda a=after: any(v >= a for v in list(acked)[-50:]), timeout=60, interval=0.01,
                 what="writes resuming")  # fmt: skip
        resume.append(time.monotonic() - killed)
        restarted = time.monotonic()
        victim.start(timeout=60)
        wait_for(lambda: (p := partition(bootstrap, "queue")) and len(p.isrs) == 3, timeout=120,
                 what="back in the ISR")  # fmt: skip
        rejoin.append(time.monotonic() - restarted)
        print(f"kill {cycle + 1}: broker {victim.node_id}, writes resumed after {resume[-1]:.2f} s, "
              f"back in the ISR {rejoin[-1]:.2f} s after its restart", flush=True)  # fmt: skip
    stop.set()
    writer.join(180)
    lost, duplicated, problems = check_queue(acked, read_back(bootstrap, max(acked.values()) + 1))
    return {
        "kills": kills,
        "acknowledged records": len(acked),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "other problems": len(problems),
        "failover p50 (s)": statistics.median(resume),
        "failover p99 (s)": percentile(resume, 0.99),
        "failover max (s)": max(resume),
        "ISR rejoin p50 (s)": statistics.median(rejoin),
        "ISR rejoin max (s)": max(rejoin),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replication-bench-") as tmp:
        root = Path(tmp)
        etcd = EtcdServer.start(root / "etcd")
        alone = Broker(root / "alone")
        brokers = cluster_brokers(root, etcd, f"/bench/{uuid.uuid4().hex[:8]}/",
                                  settings={"broker.session.timeout.ms": 6000})  # fmt: skip
        try:
            alone.start(timeout=30)
            for broker in brokers:
                broker.start(timeout=30)
            bootstrap = ",".join(b.bootstrap for b in brokers)
            wait_for(
                lambda: (
                    len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers) == 3
                )
            )
            create(alone.bootstrap, "rf1", 1)
            create(bootstrap, "rf3", 3)
            wait_for(lambda: (p := partition(bootstrap, "rf3")) and len(p.isrs) == 3, what="rf3 in sync")
            base_mb, base_p99 = produce_run(alone.bootstrap, "rf1", args.records, args.size, "all")
            all_mb, all_p99 = produce_run(bootstrap, "rf3", args.records, args.size, "all")
            one_mb, one_p99 = produce_run(bootstrap, "rf3", args.records, args.size, "1")
            print_results({
                "RF=1 alone acks=all MB/s": base_mb,
                "RF=1 alone acks=all p99 ms": base_p99,
                "RF=3 acks=all MB/s": all_mb,
                "RF=3 acks=all p99 ms": all_p99,
                "RF=3 acks=1 MB/s": one_mb,
                "RF=3 acks=1 p99 ms": one_p99,
                "RF=3 acks=all / RF=1 throughput": all_mb / base_mb,
                "RF=3 acks=all / RF=1 p99": all_p99 / base_p99,
                "RF=3 acks=1 / RF=1 throughput": one_mb / base_mb,
            })  # fmt: skip
            print_results(failover(brokers, bootstrap, args.kills))
        finally:
            for broker in [alone, *brokers]:
                broker.kill()
            etcd.stop()


if __name__ == "__main__":
    main()
