"""Fetch by sendfile against Fetch by copying: two brokers of this tree, ``fetch.zero.copy`` on and off.

    python bench/fetch_zero_copy_bench.py [--rounds 6] [--records 200000]

Both brokers get the same records (1 KB, one partition, written once); then each round a
confluent-kafka consumer reads them all back from offset 0 from each broker in turn (the first
alternating). Prints medians of consume MB/s and of broker CPU seconds per GB sent (user+system,
from /proc: less noisy than throughput on a shared machine), and the ratios sendfile / copy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Brokerd, print_results
from bench.brokerd_bench import PAYLOAD, _create, lean_consume, produce_throughput


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="zc-bench-") as tmp:
        brokers = {}
        try:
            for name, on in (("sendfile", True), ("copy", False)):
                b = Brokerd(Path(tmp) / name, {"fetch.zero.copy": on})
                b.start()
                brokers[name] = b
                _create(b.bootstrap, "t")
                produce_throughput(b.bootstrap, "t", "1", args.records)
                figures[name] = {"mb_s": [], "cpu_s_per_gb": []}
            names = list(brokers)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    b = brokers[name]
                    before = cpu_seconds(b.proc.pid)
                    mb_s = lean_consume(b.bootstrap, "t", args.records)
                    cpu = cpu_seconds(b.proc.pid) - before
                    gb = args.records * len(PAYLOAD) / 1e9
                    figures[name]["mb_s"].append(mb_s)
                    figures[name]["cpu_s_per_gb"].append(cpu / gb)
                    print(f"round {r + 1} {name}: consume_mb_s={mb_s:.1f} broker_cpu_s_per_gb={cpu / gb:.2f}",
                          flush=True)
        finally:
            for b in brokers.values():
                b.stop()
    results = {}
    for name, f in figures.items():
        for key, values in f.items():
            results[f"{name}_{key}"] = statistics.median(values)
    results["sendfile_vs_copy_consume_ratio"] = results["sendfile_mb_s"] / results["copy_mb_s"]
    results["sendfile_vs_copy_cpu_ratio"] = results["sendfile_cpu_s_per_gb"] / results["copy_cpu_s_per_gb"]
    print_results(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
