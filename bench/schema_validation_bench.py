"""Broker-side schema validation: what it costs producers.

One brokerd, a `_schemas` topic holding a registered schema (Confluent's record layout, as the
platform's registry writes it), and two topics of the same shape: one with
``confluent.value.schema.validation=true``, one without. The same producer load (records framed
with magic byte 0 and the registered id, lz4 batches) runs against each in alternating rounds;
the bench prints the medians and their ratio. A third figure prices the scan alone: records/s
through ``record_problems`` on a batch in memory.

    python3 bench/schema_validation_bench.py [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import Brokerd, print_results
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from brokerd.records import validate_and_stamp
from brokerd.schemas import SchemaIds, record_problems
from brokerd.storage import LogManager, LogSettings
from tests.brokerd.compaction_checks import build_batch

SCHEMA_ID = 1
SCHEMA = json.dumps({"type": "record", "name": "Reading", "fields": [{"name": "v", "type": "string"}]})


def register(bootstrap: str, subject: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    key = {"keytype": "SCHEMA", "subject": subject, "version": 1, "magic": 1}
    value = {"subject": subject, "version": 1, "id": SCHEMA_ID, "schema": SCHEMA, "deleted": False}
    producer.produce("_schemas", key=json.dumps(key).encode(), value=json.dumps(value).encode())
    assert producer.flush(10) == 0


def produce_for(bootstrap: str, topic: str, seconds: float, payload: bytes) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 5,
                         "batch.size": 256_000, "compression.type": "lz4"})
    failed: list = []
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            try:
                producer.produce(topic, payload, on_delivery=lambda err, _m: err and failed.append(err))
            except BufferError:
                producer.poll(0.01)
                continue
            n += 1
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not failed, failed[:1]  # every record must have been accepted, validated or not
    return n / (time.perf_counter() - started)


def produce_side_by_side(seconds: float, rounds: int) -> dict[str, float]:
    payload = b"\x00" + struct.pack(">I", SCHEMA_ID) + b"\x02" + b"x" * 195
    with tempfile.TemporaryDirectory(prefix="schema-validation-bench-") as tmp:
        broker = Brokerd(Path(tmp))
        broker.start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            topics = {
                "_schemas": {"cleanup.policy": "compact"},
                "validated": {"confluent.value.schema.validation": "true"},
                "unvalidated": {},
            }
            for name, config in topics.items():
                admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(10)
            register(broker.bootstrap, "validated-value")
            rates: dict[str, list[float]] = {"validated": [], "unvalidated": []}
            for _ in range(rounds):
                for name in rates:
                    rates[name].append(produce_for(broker.bootstrap, name, seconds, payload))
        finally:
            broker.stop()
    on, off = statistics.median(rates["validated"]), statistics.median(rates["unvalidated"])
    return {
        "produce, validation on (records/s)": on,
        "produce, validation off, same topic shape (records/s, baseline)": off,
        "validation on / off": on / off,
    }


def scan_only(records: int) -> dict[str, float]:
    """The check alone, in memory: a 1000-record lz4 batch checked against a folded `_schemas`."""
    with tempfile.TemporaryDirectory(prefix="schema-validation-scan-") as tmp:
        logs = LogManager(tmp, LogSettings())
        schemas = SchemaIds(logs)
        schemas.live = {SCHEMA_ID: frozenset({"t-value"})}
        settings = LogSettings(value_schema_validation=True)
        value = b"\x00" + struct.pack(">I", SCHEMA_ID) + b"x" * 195
        batch = bytearray(build_batch([(None, value, 0)] * 1000, codec="lz4"))
        validate_and_stamp(batch, 0, 1 << 30, None)
        started = time.perf_counter()
        checked = 0
        while checked < records:
            assert not record_problems(schemas, "t", 0, batch, settings)
            checked += 1000
        elapsed = time.perf_counter() - started
    return {"check alone, lz4 batches of 1000 (records/s)": checked / elapsed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scan-records", type=int, default=500_000)
    args = p.parse_args()
    print_results(produce_side_by_side(args.seconds, args.rounds))
    print_results(scan_only(args.scan_records))


if __name__ == "__main__":
    main()
