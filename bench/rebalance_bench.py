"""Rebalance time of a 10-consumer group gaining and losing a member: classic against consumer protocol.

    python bench/rebalance_bench.py [--rounds 3]

One brokerd, a 20-partition topic, 10 librdkafka consumers polled by threads. For each protocol
(classic with the default eager range assignor, classic with cooperative-sticky, and
``group.protocol=consumer`` with the broker's uniform assignor) it measures, in the same run:

- join: an 11th member subscribes -> every partition owned again by exactly one member;
- leave: a member closes -> the same with 10 members;
- and once, a rolling upgrade of a classic (eager) group to the consumer protocol, member by
  member (group.consumer.migration.policy=bidirectional): a new member joins, an old one leaves;

as the members' own rebalance callbacks see it (a partition counts as owned once the callback
gave it), and how many partitions were revoked from members that kept them afterwards (eager
rebalancing stops every partition; incremental ones only the moved ones). Medians over the
rounds, then the ratio classic / consumer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench._common import Brokerd, print_results  # noqa: E402

PARTITIONS = 20
MEMBERS = 10
PROTOCOLS = {
    "classic-eager": {"group.protocol": "classic", "partition.assignment.strategy": "range"},
    "classic-cooperative": {
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky",
    },
    "consumer": {"group.protocol": "consumer"},
}


class Member:
    def __init__(self, bootstrap: str, group: str, topic: str, conf: dict) -> None:
        self.owned: set[int] = set()
        self.stopped: set[int] = set()  # partitions revoked since the last mark
        self._halt = threading.Event()
        settings = {"bootstrap.servers": bootstrap, "group.id": group, **conf}
        if conf["group.protocol"] == "classic":
            settings.update({"heartbeat.interval.ms": 200, "session.timeout.ms": 6000})
        self.consumer = Consumer(settings)
        self.consumer.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _assign(self, _c, partitions) -> None:
        self.owned |= {p.partition for p in partitions}

    def _revoke(self, _c, partitions) -> None:
        gone = {p.partition for p in partitions}
        self.stopped |= gone
        self.owned -= gone

    def _run(self) -> None:
        while not self._halt.is_set():
            self.consumer.poll(0.02)

    def close(self) -> None:
        self._halt.set()
        self.thread.join(10)
        self.consumer.close()


def settled(members: list[Member]) -> bool:
    owned = [p for m in members for p in m.owned]
    return len(owned) == len(set(owned)) == PARTITIONS


def wait_settled(members: list[Member], timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    # a rebalance must start before the group can settle again: give the coordinator a moment
    # to notice (the first check may see the old, still complete, assignment)
    while time.monotonic() - t0 < timeout:
        if settled(members) and time.monotonic() - t0 > 0.05:
            return time.monotonic() - t0
        time.sleep(0.005)
    raise RuntimeError("group did not settle")


def needlessly_stopped(members: list[Member], before: dict[int, set[int]]) -> int:
    """Partitions revoked from a member that owns them again afterwards."""
    return sum(len(m.stopped & before.get(id(m), set()) & m.owned) for m in members)


def run_protocol(bootstrap: str, name: str, conf: dict, rounds: int) -> dict[str, float]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"rebalance-{name}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    members = [Member(bootstrap, topic, topic, conf) for _ in range(MEMBERS)]
    joins, leaves, stops = [], [], []
    try:
        wait_settled(members)
        time.sleep(1)
        for _ in range(rounds):
            for m in members:
                m.stopped.clear()
            before = {id(m): set(m.owned) for m in members}
            t0 = time.monotonic()
            members.append(Member(bootstrap, topic, topic, conf))
            while not settled(members) or not members[-1].owned:
                time.sleep(0.005)
            joins.append(time.monotonic() - t0)
            stops.append(needlessly_stopped(members[:-1], before))
            time.sleep(1)
            gone = members.pop(0)
            t0 = time.monotonic()
            gone.close()
            while not settled(members):
                time.sleep(0.005)
            leaves.append(time.monotonic() - t0)
            time.sleep(1)
    finally:
        for m in members:
            m.close()
    return {
        f"{name}: join (s)": statistics.median(joins),
        f"{name}: leave (s)": statistics.median(leaves),
        f"{name}: partitions stopped needlessly per join": statistics.median(stops),
    }


def run_rolling_upgrade(bootstrap: str, conf: dict) -> dict[str, float]:
    """A 10-member classic group replaced member by member by consumer-protocol ones (the group
    converts while it has members): each step a new member joins, then an old one leaves."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "rebalance-rolling-upgrade"
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    old = [Member(bootstrap, topic, topic, conf) for _ in range(MEMBERS)]
    new: list[Member] = []
    steps = []
    try:
        wait_settled(old)
        time.sleep(1)
        started = time.monotonic()
        while old:
            t0 = time.monotonic()
            new.append(Member(bootstrap, topic, topic, PROTOCOLS["consumer"]))
            while not settled(old + new) or not new[-1].owned:
                time.sleep(0.005)
            old.pop(0).close()
            while not settled(old + new):
                time.sleep(0.005)
            steps.append(time.monotonic() - t0)
        total = time.monotonic() - started
    finally:
        for m in old + new:
            m.close()
    return {
        "rolling upgrade: per member replaced (s)": statistics.median(steps),
        "rolling upgrade: total (s)": total,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Brokerd(
            Path(tmp),
            {
                "group.initial.rebalance.delay.ms": 0,
                "group.min.session.timeout.ms": 500,
                "group.consumer.heartbeat.interval.ms": 200,
                "group.consumer.session.timeout.ms": 6000,
            },
        )
        broker.start()
        try:
            results: dict[str, float] = {}
            for name, conf in PROTOCOLS.items():
                results.update(run_protocol(broker.bootstrap, name, conf, args.rounds))
            results.update(run_rolling_upgrade(broker.bootstrap, PROTOCOLS["classic-eager"]))
        finally:
            broker.stop()
    for phase in ("join", "leave"):
        consumer = results[f"consumer: {phase} (s)"]
        for classic in ("classic-eager", "classic-cooperative"):
            results[f"{classic} / consumer, {phase}"] = results[f"{classic}: {phase} (s)"] / consumer
    print_results(results, places=3)


if __name__ == "__main__":
    main()
