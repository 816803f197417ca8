"""SASL_SSL vs SASL_PLAINTEXT on one brokerd: produce and consume throughput, and handshake time.

    python bench/tls_bench.py [--records 200000] [--size 1000]

One broker with both listeners (a platform-style CA and certificate from ``pki.ca``), one
librdkafka (confluent-kafka) client per run, acks=1, one partition per protocol. Loopback only;
the machine is shared and noisy, so compare the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.brokerd.test_brokerd_tls import TlsBroker  # noqa: E402


def produce(conf: dict, topic: str, records: int, payload: bytes) -> float:
    producer = Producer({**conf, "acks": "1", "linger.ms": 5, "batch.size": 1_000_000})
    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0
    return time.perf_counter() - started


def consume(conf: dict, topic: str, records: int) -> float:
    consumer = Consumer({**conf, "group.id": "bench", "fetch.max.bytes": 50_000_000})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, started = 0, time.perf_counter()
    while got < records:
        got += len(consumer.consume(10_000, 1.0))
    seconds = time.perf_counter() - started
    consumer.close()
    return seconds


def handshake_ms(port: int, ca_file: Path, rounds: int = 50) -> float:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    broker = TlsBroker(Path(tempfile.mkdtemp(prefix="tls-bench-")))
    broker.start()
    try:
        admin = AdminClient(broker.tls_config())
        for future in admin.create_topics([NewTopic("plain", 1), NewTopic("tls", 1)]).values():
            future.result(10)
        payload = b"x" * args.size
        mb = args.records * args.size / 1e6
        results = {}
        for name, conf, topic in (
            ("SASL_PLAINTEXT", broker.sasl_config("PLAIN"), "plain"),
            ("SASL_SSL", broker.tls_config(), "tls"),
        ):
            p = produce(conf, topic, args.records, payload)
            c = consume(conf, topic, args.records)
            results[name] = (mb / p, mb / c)
            print(f"{name:15} produce {mb / p:7.1f} MB/s   consume {mb / c:7.1f} MB/s")
        (pp, pc), (tp, tc) = results["SASL_PLAINTEXT"], results["SASL_SSL"]
        print(f"SASL_SSL / SASL_PLAINTEXT: produce {tp / pp:.2f}x, consume {tc / pc:.2f}x")
        handshake = handshake_ms(broker.ports["SASL_SSL"], broker.ca_path)
        print(f"TLS handshake (TLS 1.3, ECDSA P-256), median: {handshake:.2f} ms")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
