"""Consumer-group figures for brokerd.

    python bench/groups_bench.py

Prints:
- time for 10 librdkafka consumers to form a stable group on a 20-partition topic
  (group.initial.rebalance.delay.ms=0; Kafka's default of 3 s would add to it);
- offset commits per second: over the wire (synchronous commits from 1 and 8 consumers) and
  in-process (the coordinator and its fsynced offsets log, 1 and 64 concurrent committers);
- restart time to serving with 1,000 partitions, without and with 100 groups stored.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench._common import Brokerd, print_results  # noqa: E402


def stable_group_seconds(bootstrap: str, members: int = 10, partitions: int = 20) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("formation", partitions, 1)])["formation"].result(10)
    halt = threading.Event()
    consumers = [
        Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "formation",
                "heartbeat.interval.ms": 100,
                "session.timeout.ms": 6000,
            }
        )
        for _ in range(members)
    ]

    def poll(c: Consumer) -> None:
        while not halt.is_set():
            c.poll(0.05)

    t0 = time.monotonic()
    for c in consumers:
        c.subscribe(["formation"])
    threads = [threading.Thread(target=poll, args=(c,), daemon=True) for c in consumers]
    for t in threads:
        t.start()
    try:
        while True:
            desc = admin.describe_consumer_groups(["formation"])["formation"].result(10)
            owned = [tp.partition for m in desc.members for tp in m.assignment.topic_partitions]
            if "STABLE" in str(desc.state) and len(desc.members) == members and len(set(owned)) == partitions:
                return time.monotonic() - t0
            time.sleep(0.01)
    finally:
        halt.set()
        for t in threads:
            t.join()
        for c in consumers:
            c.close()


def wire_commits_per_second(bootstrap: str, threads: int, seconds: float = 3.0) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(f"commits{threads}", 1, 1)])[f"commits{threads}"].result(10)
    count = [0] * threads

    def run(i: int) -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"committer-{threads}-{i}"})
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            c.commit(offsets=[TopicPartition(f"commits{threads}", 0, n)], asynchronous=False)
        count[i] = n
        c.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(count) / (time.monotonic() - t0)


def inproc_commits_per_second(concurrency: int, total: int = 5000) -> float:
    from brokerd.groups import CommitEntry, GroupConfig, GroupCoordinator

    async def main() -> float:
        with tempfile.TemporaryDirectory() as d:
            coord = GroupCoordinator(d, GroupConfig())
            await coord.start()
            per = total // concurrency

            async def committer(i: int) -> None:
                for n in range(per):
                    await coord.commit_offsets(f"g{i}", [CommitEntry("t", 0, n)])

            t0 = time.perf_counter()
            await asyncio.gather(*(committer(i) for i in range(concurrency)))
            rate = per * concurrency / (time.perf_counter() - t0)
            await coord.close()
            return rate

    return asyncio.run(main())


def restart_with_groups(root: Path) -> dict[str, float]:
    b = Brokerd(root, {})
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(f"many{i}", 10, 1) for i in range(100)]).values():
        f.result(30)
    b.stop()
    out = {"restart_1000_partitions_0_groups_s": b.start()}
    for g in range(100):
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"stored-{g}"})
        c.commit(offsets=[TopicPartition(f"many{g}", p, 1) for p in range(10)], asynchronous=False)
        c.close()
    b.stop()
    out["restart_1000_partitions_100_groups_s"] = b.start()
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    out["restart_after_kill9_1000_partitions_100_groups_s"] = b.start()
    log = (root / "brokerd.log").read_text()
    loaded = [line for line in log.splitlines() if "group coordinator loaded" in line][-1]
    out["group_coordinator_load_ms"] = float(loaded.split(" in ")[-1].split()[0])
    b.stop()
    return out


def main() -> int:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        b = Brokerd(Path(tmp) / "a", {"group.initial.rebalance.delay.ms": 0})
        b.start()
        try:
            results["stable_group_10_consumers_s"] = stable_group_seconds(b.bootstrap)
            results["commits_per_s_wire_1_consumer"] = wire_commits_per_second(b.bootstrap, 1)
            results["commits_per_s_wire_8_consumers"] = wire_commits_per_second(b.bootstrap, 8)
        finally:
            b.stop()
        results["commits_per_s_inproc_1"] = inproc_commits_per_second(1, 2000)
        results["commits_per_s_inproc_64"] = inproc_commits_per_second(64, 20000)
        results.update(restart_with_groups(Path(tmp) / "b"))
    print_results(results, places=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
