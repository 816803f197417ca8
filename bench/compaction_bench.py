"""The log cleaner: its throughput, and what it costs producers on the same broker.

    python bench/compaction_bench.py [--mb 32] [--keys 20000] [--seconds 8] [--rounds 3]

1. Cleaner throughput, in process (no broker): a partition log of ``--mb`` MiB of keyed records
   (``--keys`` keys, many versions each, every codec), one cleaner pass over it; MB/s of log
   read by the pass, with the MB/s of a plain read of the same segments (the baseline: what the
   disk and the segment reader give) and their ratio.
2. Produce throughput on one brokerd, in alternating rounds of ``--seconds``: a compacted topic
   while its cleaner runs (small ``segment.ms``, low dirty ratio: passes back to back), a
   compacted topic no pass is due on (what the produce path's key check costs), against a
   delete-policy topic with the same segments; records/s of each and the ratios.

Loopback and a shared machine: compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT), str(ROOT / "bench")]

from _common import Brokerd, print_results  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from brokerd.records import validate_and_stamp  # noqa: E402
from brokerd.storage import LogSettings, PartitionLog  # noqa: E402
from brokerd.storage.cleaner import CleanerConfig, LogCleaner, _iter_batches  # noqa: E402
from tests.brokerd.compaction_checks import build_batch  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def build_log(directory: Path, mb: int, keys: int) -> PartitionLog:
    settings = LogSettings(segment_bytes=64 << 20, compact=True, min_cleanable_ratio=0.0)
    plog = PartitionLog.open("bench", 0, str(directory), settings, clean=True)
    now = int(time.time() * 1000)
    version = 0
    while plog.size_bytes() < mb << 20:
        version += 1
        for start in range(0, keys, 200):
            records = [(f"key-{k}".encode(), f"value-{version}-{k}-".encode() * 6, now)
                       for k in range(start, min(keys, start + 200))]
            batch = build_batch(records, codec=CODECS[(start // 200) % len(CODECS)])
            batches, count = validate_and_stamp(batch, plog.next_offset, 1 << 24)
            plog.append(batch, batches, count)
        if plog.active.size > 4 << 20:
            plog.roll()
    plog.roll()
    return plog


def plain_read_mb_s(plog: PartitionLog) -> float:
    started = time.perf_counter()
    total = 0
    for seg in plog.segments:
        with open(seg.path, "rb") as fh:
            fd = fh.fileno()
            for _pos, _h, raw in _iter_batches(fd, 0, seg.size):
                total += len(raw)
    return total / (1 << 20) / (time.perf_counter() - started)


def cleaner_throughput(mb: int, keys: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="compaction-bench-") as tmp:
        plog = build_log(Path(tmp) / "bench-0", mb, keys)
        size = plog.size_bytes()
        records = plog.next_offset
        baseline = plain_read_mb_s(plog)
        cleaner = LogCleaner(lambda: [plog], lambda: CleanerConfig())
        started = time.perf_counter()
        result = cleaner.run_pass()
        seconds = time.perf_counter() - started
        assert result is not None
        plog.close()
    cleaned = result.bytes_read / (1 << 20) / seconds
    return {
        "log size (MiB)": size / (1 << 20),
        "after cleaning (MiB)": (size - result.bytes_read + result.bytes_written) / (1 << 20),
        "cleaner pass (s)": seconds,
        "cleaner throughput (MB/s of log cleaned)": cleaned,
        "cleaner throughput (records/s cleaned)": records / seconds,
        "plain segment read (MB/s, baseline)": baseline,
        "cleaner / plain read": cleaned / baseline,
    }


def passes(admin_port: int, topic: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = rf'^kastle_log_cleaner_passes_total{{partition="0",topic="{topic}"}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def produce_for(bootstrap: str, topic: str, seconds: float, keys: int, payload: bytes) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 5,
                         "batch.size": 256_000, "compression.type": "lz4"})
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            try:
                producer.produce(topic, payload, key=f"key-{n % keys}".encode())
            except BufferError:
                producer.poll(0.01)
                continue
            n += 1
        producer.poll(0)
    assert producer.flush(60) == 0
    return n / (time.perf_counter() - started)


def produce_side_by_side(seconds: float, rounds: int, keys: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="compaction-bench-broker-") as tmp:
        broker = Brokerd(Path(tmp), {"log.cleaner.backoff.ms": 100})
        broker.start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            common = {"segment.ms": "500", "segment.bytes": str(1 << 20)}
            topics = {
                "compacted": {**common, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"},
                # compacted, but a ratio never exceeded: the produce path's key check alone
                "compacted-idle": {**common, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "1"},
                "deleted": {**common, "cleanup.policy": "delete"},
            }
            for name, config in topics.items():
                admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(10)
            payload = b"x" * 200
            rates: dict[str, list[float]] = {name: [] for name in topics}
            for _ in range(rounds):
                for name in topics:
                    rates[name].append(produce_for(broker.bootstrap, name, seconds, keys, payload))
            cleaned_passes = passes(broker.admin, "compacted")
        finally:
            broker.stop()
    compacted, deleted = statistics.median(rates["compacted"]), statistics.median(rates["deleted"])
    idle = statistics.median(rates["compacted-idle"])
    return {
        "produce, compacted topic, cleaner running (records/s)": compacted,
        "produce, compacted topic, no pass due (records/s)": idle,
        "produce, delete-policy topic (records/s, baseline)": deleted,
        "compacted, cleaner running / delete-policy": compacted / deleted,
        "compacted, no pass due / delete-policy": idle / deleted,
        "cleaner passes during the compacted rounds": cleaned_passes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=32)
    p.add_argument("--keys", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print_results(cleaner_throughput(args.mb, args.keys))
    print_results(produce_side_by_side(args.seconds, args.rounds, args.keys))


if __name__ == "__main__":
    main()
