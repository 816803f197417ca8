"""The full fault checker, CI-sized (tests/brokerd/replication/fault_checker.py; the long run is
bench/fault_bench.py): three brokers behind fault-injecting proxies with an etcd of their own,
idempotent acks=all producers on four partitions (RF 3, min.insync.replicas 2) and a consumer
group committing, through a kill -9 of a partition leader, of the group's coordinator and of a
transactional producer's coordinator (the leader of its __transaction_state partition), a
SIGSTOP pause, a network partition of a leader from the other brokers and etcd, an etcd crash
and restart, and a rolling restart (SIGTERM one broker at a time). Then Jepsen's checks on the whole history.
Transactional producers run alongside (txn_workload.py): no committed transaction partly visible,
no aborted record visible to read_committed, no lost commit.

The negative control runs the same checker on the part-1 unsafe setting (acks=1, the leader
acknowledging alone) with the fault that makes it lose writes, and the checker must say so.
The checker's own rules are shown on small made-up histories."""

from __future__ import annotations

from pathlib import Path

from tests.brokerd.replication.fault_checker import Faults, History, check, run

SETTINGS = {"coordination.session.timeout.ms": 2000, "replica.lag.time.max.ms": 4000}


def test_no_acknowledged_write_is_lost_or_duplicated_through_kills_pauses_partitions_and_restarts(
    tmp_path: Path,
) -> None:
    faults = list(Faults.TYPES)
    verdict, cycles, _history = run(tmp_path, faults, settings=SETTINGS, log=print, transactions=True)
    print({k: v for k, v in verdict.items() if "examples" not in k})
    assert verdict["acknowledged"] > 1000
    assert verdict["lost"] == 0, verdict["lost examples"]
    assert verdict["duplicated"] == 0, verdict["duplicated examples"]
    assert verdict["problems"] == []
    assert verdict["notes"] == []
    # Committed offsets live in the replicated __consumer_offsets: they never go backwards,
    # and the group consumed everything below what it committed, through every fault.
    assert verdict["group problems"] == []
    assert all(c.writes_resumed_s is not None and c.recovered_s is not None for c in cycles), cycles
    # Transactions are atomic through the same faults, as read_committed consumers see them.
    assert verdict["transactions committed (acknowledged)"] > 10
    assert verdict["committed partly visible"] == 0, verdict["committed partly visible examples"]
    assert verdict["aborted visible"] == 0, verdict["aborted visible examples"]
    assert verdict["lost commits"] == 0, verdict["lost commits examples"]
    assert verdict["transactional records twice"] == 0
    assert verdict["transaction problems"] == []


def test_the_checker_reports_loss_when_the_leader_acknowledges_alone(tmp_path: Path) -> None:
    # Sessions long enough that the paused followers keep their ISR places: only the
    # leader's death changes the cluster, and a follower without the burst takes over.
    settings = {"coordination.session.timeout.ms": 8000, "replica.lag.time.max.ms": 8000}
    verdict, cycles, _history = run(tmp_path, ["unreplicated-tail"], settings=settings, acks="1")
    assert cycles[0].notes == []  # the burst was acknowledged by the leader alone
    assert verdict["lost"] > 0


def _history(log: dict, acked: dict, seen=None, offsets=()) -> History:
    history = History()
    history.log = log
    history.acked = acked
    for consumer, partitions in (seen or {}).items():
        for p, records in partitions.items():
            history.seen[consumer][p] = records
    history.offsets = list(offsets)
    return history


def test_the_checker_rules_on_made_up_histories() -> None:
    good = _history(
        {0: [(0, "a"), (1, "b")]},
        {"a": (0, 0), "b": (0, 1)},
        {0: {0: [(0, "a"), (1, "b")]}},
        [(0.0, 1.0, 0, 2, "commit"), (1.5, 2.0, 0, 2, "read")],
    )
    assert check(good)["problems"] == [] and check(good)["lost"] == 0

    # A delivery reported without an offset is checked for presence only.
    unknown = check(_history({0: [(0, "a"), (1, "b")]}, {"a": (0, 0), "b": (0, None)}))
    assert unknown["problems"] == [] and unknown["lost"] == 0
    assert check(_history({0: [(0, "a")]}, {"a": (0, 0), "b": (0, None)}))["lost"] == 1

    lost = check(_history({0: [(0, "a")]}, {"a": (0, 0), "b": (0, 1)}))
    assert lost["lost"] == 1 and lost["lost examples"] == ["b"]

    duplicated = check(_history({0: [(0, "a"), (1, "a")]}, {"a": (0, 0)}))
    assert duplicated["duplicated"] == 1

    gap = check(_history({0: [(0, "a"), (2, "b")]}, {}))
    assert any("not contiguous" in p for p in gap["problems"])

    # The final read got two values at one offset (a re-read after a leader change must agree).
    conflicting = _history({0: [(0, "a")]}, {"a": (0, 0)})
    conflicting.read_conflicts.append((0, 0, "a", "x"))
    assert any("two values" in p for p in check(conflicting)["problems"])

    moved = check(_history({0: [(0, "b"), (1, "a")]}, {"a": (0, 0)}))
    assert any("not at their acknowledged offset" in p for p in moved["problems"])

    diverged = check(_history({0: [(0, "a")]}, {}, {1: {0: [(0, "x")]}}))
    assert any("differ from the final log" in p for p in diverged["problems"])

    # A read that starts after a commit was acknowledged must see at least that commit.
    backwards = check(
        _history(
            {0: [(0, "a"), (1, "b")]},
            {},
            {0: {0: [(0, "a"), (1, "b")]}},
            [(0.0, 1.0, 0, 2, "commit"), (2.0, 2.5, 0, 1, "read")],
        )
    )
    assert any("went backwards" in p for p in backwards["group problems"])
    # Overlapping in time is not an order: no violation.
    overlapping = check(
        _history(
            {0: [(0, "a"), (1, "b")]},
            {},
            {0: {0: [(0, "a"), (1, "b")]}},
            [(0.0, 1.0, 0, 2, "commit"), (0.5, 2.5, 0, 1, "read")],
        )
    )
    assert overlapping["problems"] == [] and overlapping["group problems"] == []

    skipped = check(
        _history({0: [(0, "a"), (1, "b")]}, {}, {0: {0: [(1, "b")]}}, [(0.0, 1.0, 0, 2, "commit")])
    )
    assert any("never consumed" in p for p in skipped["group problems"])
