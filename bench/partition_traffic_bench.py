#!/usr/bin/env python3
"""Cost of brokerd's per-partition traffic counters on the produce and fetch paths.

The baseline is the metering work those paths already did before the counters existed, measured
in the same run: journaling one produced batch (`UsageJournal.record_in`, one write()) and
counting one fetched partition (`batch_stats` over its records). The counters add one dict
update per partition of a request (`PartitionTraffic.add`), with nothing decoded.

    python3 bench/partition_traffic_bench.py [--batches 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brokerd.metrics import BrokerMetrics, UsageJournal, batch_stats


def fetched_records(batches: int = 10, payload: int = 1000) -> bytes:
    """`batches` v2 batch headers of `payload` bytes each, as a Fetch response carries them."""
    body = bytes(49 + payload)
    head = struct.pack(">qi", 0, len(body)) + body
    return (head[:57] + struct.pack(">i", 10) + head[61:]) * batches


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=20000, help="calls per round")
    p.add_argument("--rounds", type=int, default=5, help="the best round is reported")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        journal = UsageJournal(tmp)
        journal.reconcile(lambda topic_id, partition: None)
        traffic = BrokerMetrics(journal, live_topics=lambda: ["orders"]).partition_traffic
        records = fetched_records()

        def best(fn) -> float:
            return min(timeit.repeat(fn, number=args.batches, repeat=args.rounds)) / args.batches

        produce = best(lambda: journal.record_in("key", [("orders", b"t" * 16, 3, 0, 10, 1061)]))
        fetch = best(lambda: batch_stats(records))
        counter = best(lambda: traffic.add("orders", 3, 0, 1061, 10))
        journal.close()
    print(f"produce path, journal one batch (baseline): {produce * 1e6:8.3f} us")
    print(f"fetch path, count one partition (baseline): {fetch * 1e6:8.3f} us")
    print(f"per-partition counter update:               {counter * 1e6:8.3f} us")
    print(f"ratio against the produce baseline: {counter / produce:.3f}")
    print(f"ratio against the fetch baseline:   {counter / fetch:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
