"""The full fault checker, long: a replicated cluster under load through many fault cycles.

    python bench/fault_bench.py [--cycles 24] [--faults kill-leader,pause,...] [--session-ms 3000]

Three brokerd (advertised on 127.0.0.1/.2/.3, reached through fault-injecting proxies) with an
etcd of their own; idempotent acks=all producers on a topic of 4 partitions with three replicas
and min.insync.replicas 2, a consumer group of two committing what it read, and an observer of
the committed offsets, and transactional producers (commits and aborts across partitions; off with
--no-transactions). The fault types are cycled in order: kill -9 of a partition leader, of
the group coordinator's broker and of the broker coordinating a transactional producer's id
(the leader of its __transaction_state partition), SIGSTOP/SIGCONT pauses (every other one
longer than the etcd session), a network partition of one broker from the others and from
etcd, an etcd crash and restart on its data, and a rolling restart (SIGTERM, one broker at a
time, full ISR between).

Printed: one line per cycle, then the verdict of the checker (tests/brokerd/replication/
fault_checker.py): acknowledged records, lost and duplicated (both must be 0), the other
violations, the transactions' atomicity (committed partly visible, aborted visible, lost commits:
all 0), and per fault type how long writes took to resume, how long until every ISR was
full after the heal, and the longest time a partition went without an acknowledgement.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from tests.brokerd.replication.fault_checker import Faults, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=24)
    parser.add_argument("--faults", help="fault types, cycled in this order (default: all)")
    parser.add_argument("--session-ms", type=int, default=3000, help="coordination.session.timeout.ms")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-transactions", action="store_true",
                        help="without the transactional workload (tests/brokerd/replication/txn_workload.py)")
    parser.add_argument("--keep", metavar="DIR",
                        help="run in DIR and keep the brokers' logs there, and the history (history.json)")
    args = parser.parse_args()
    every = [f for f in Faults.TYPES if not (args.no_transactions and f in Faults.NEED_TRANSACTIONS)]
    kinds = args.faults.split(",") if args.faults else every
    unknown = set(kinds) - set(Faults.TYPES)
    if unknown:
        parser.error(f"unknown fault types {sorted(unknown)}; known: {', '.join(Faults.TYPES)}")
    faults = list(itertools.islice(itertools.cycle(kinds), args.cycles))
    settings = {
        "coordination.session.timeout.ms": args.session_ms,
        "replica.lag.time.max.ms": 2 * args.session_ms,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        dump = root / "history.json" if args.keep else None
        verdict, _cycles, _history = run(
            root, faults, settings=settings, partitions=args.partitions, seed=args.seed, dump=dump,
            transactions=not args.no_transactions,
        )
    verdict["run time (s)"] = round(time.monotonic() - started, 1)
    problems = verdict.pop("problems") + verdict.pop("group problems")
    problems += verdict.pop("transaction problems", [])
    width = max(len(k) for k in verdict)
    for key, value in verdict.items():
        print(f"{key:<{width}}  {value}")
    for problem in problems:
        print("PROBLEM:", problem)
    broken = ("committed partly visible", "aborted visible", "lost commits")
    atomicity = sum(verdict.get(k, 0) for k in broken)
    sys.exit(1 if problems or verdict["lost"] or verdict["duplicated"] or atomicity else 0)


if __name__ == "__main__":
    main()
