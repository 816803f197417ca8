"""10,000 malformed frames while a well-behaved client keeps producing and consuming.

The broker must stay up, the good client must see no error and lose nothing, and RSS must
stay bounded.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import threading
import time

from admintest import rss_kb
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FRAMES = 10_000


def _header(api_key: int, version: int, corr: int = 1, flexible: bool = False) -> bytes:
    cid = b"evil"
    return struct.pack(">hhih", api_key, version, corr, len(cid)) + cid + (b"\0" if flexible else b"")


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _attacks(rng: random.Random):
    """(kind, bytes to send, number of malformed frames in it, use the SASL listener)."""
    garbage = lambda n: rng.randbytes(n)  # noqa: E731
    kinds = [
        ("random", lambda: (garbage(rng.randint(1, 200)), 1, False)),
        ("truncated", lambda: (struct.pack(">i", 1000) + _header(3, 12, flexible=True)[:6], 1, False)),
        ("huge-length", lambda: (struct.pack(">i", 0x7FFFFFFF) + garbage(32), 1, False)),
        ("negative-length", lambda: (struct.pack(">i", -5) + garbage(8), 1, False)),
        ("unknown-api", lambda: (_frame(_header(rng.randint(100, 30000), 0) + garbage(10)), 1, False)),
        ("unknown-version", lambda: (_frame(_header(rng.choice([3, 0, 1, 32, 49]), 99) + garbage(10)),
                                     1, False)),
        ("garbage-body", lambda: (_frame(_header(*rng.choice(
            [(3, 12, True), (0, 9, True), (1, 12, True), (19, 7, True), (32, 4, True), (33, 2, True),
             (44, 1, True), (37, 3, True), (21, 2, True), (35, 4, True), (48, 1, True), (49, 1, True),
             (23, 4, True), (60, 1, True), (3, 1, False), (0, 3, False)])) + garbage(rng.randint(0, 300))),
            1, False)),
        ("short-header", lambda: (_frame(garbage(rng.randint(0, 7))), 1, False)),
        ("pipelined", lambda: (_frame(_header(18, 0)) + b"".join(
            _frame(_header(3, 12, flexible=True) + garbage(40)) for _ in range(5)), 5, False)),
        ("pre-auth", lambda: (_frame(_header(3, 1) + b"\xff\xff\xff\xff"), 1, True)),
    ]
    while True:
        kind, make = rng.choice(kinds)
        data, n, sasl = make()
        yield kind, data, n, sasl


async def _attack(port: int, sasl_port: int, stats: dict) -> None:
    rng = random.Random(4)
    gen = _attacks(rng)
    sem = asyncio.Semaphore(48)

    async def one(data: bytes, sasl: bool) -> None:
        async with sem:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", sasl_port if sasl else port)
            except OSError:
                stats["connect_errors"] += 1
                return
            try:
                writer.write(data)
                await writer.drain()
                writer.write_eof()
                await asyncio.wait_for(reader.read(65536), 2)
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

    async def slowloris() -> None:
        conns = []
        for _ in range(40):
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            conns.append(w)
        payload = _frame(_header(3, 12, flexible=True) + b"\0" * 20)
        for i in range(len(payload)):
            for w in conns:
                if not w.is_closing():
                    w.write(payload[i:i + 1])
            await asyncio.sleep(0.1)
            if stats["done"]:
                break
        stats["slowloris_frames"] = len(conns)
        for w in conns:
            w.close()

    loris = asyncio.ensure_future(slowloris())
    tasks = []
    sent = 0
    while sent < FRAMES:
        kind, data, n, sasl = next(gen)
        sent += n
        stats[kind] = stats.get(kind, 0) + n
        tasks.append(asyncio.ensure_future(one(data, sasl)))
        if len(tasks) >= 256:
            await asyncio.gather(*tasks)
            tasks = []
    await asyncio.gather(*tasks)
    stats["frames"] = sent
    stats["done"] = True
    await loris


def test_hostile_input(broker_factory) -> None:
    b = broker_factory(sasl=True)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic("good", 3, 1)]).values():
        f.result(timeout=10)
    rss_before = rss_kb(b.pid)
    errors: list = []
    delivered: list = []
    stop = threading.Event()
    produced_all = threading.Event()  # set once the producer has flushed (delivered is final)

    def good_client() -> None:
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 30000})

        def cb(err, msg):
            (errors if err else delivered).append(err or msg.offset())

        i = 0
        while not stop.is_set():
            p.produce("good", f"v{i}".encode(), key=str(i).encode(), on_delivery=cb)
            p.poll(0)
            i += 1
            time.sleep(0.002)
        p.flush(30)

    consumed = []

    def good_consumer() -> None:
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused", "enable.auto.commit": False})
        c.assign([TopicPartition("good", p, 0) for p in range(3)])
        deadline = None
        while not produced_all.is_set() or len(consumed) < len(delivered):
            if produced_all.is_set():
                deadline = deadline or time.monotonic() + 30
                if time.monotonic() > deadline:
                    break
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
            else:
                consumed.append(msg.value())
        c.close()

    threads = [threading.Thread(target=good_client), threading.Thread(target=good_consumer)]
    for t in threads:
        t.start()
    stats = {"connect_errors": 0, "done": False}
    peak = rss_before
    t0 = time.monotonic()
    sasl_port = b.ports["SASL_PLAINTEXT"]
    loop_thread = threading.Thread(target=lambda: asyncio.run(_attack(b.port, sasl_port, stats)))
    loop_thread.start()
    while loop_thread.is_alive():
        peak = max(peak, rss_kb(b.pid))
        loop_thread.join(0.1)
    elapsed = time.monotonic() - t0
    stop.set()
    threads[0].join(60)
    produced_all.set()
    threads[1].join(40)
    assert b.proc.poll() is None, "broker died"
    assert b.healthz() == 200
    assert stats["frames"] >= FRAMES, stats
    assert stats["connect_errors"] == 0, stats
    assert not errors, errors[:5]
    assert len(delivered) > 50
    assert sorted(consumed) == sorted(f"v{i}".encode() for i in range(len(delivered)))
    rss_after = rss_kb(b.pid)
    # bounded: the attack must not grow the broker by more than a few tens of MB
    assert peak - rss_before < 64 * 1024, (rss_before, peak, rss_after)
    print(f"hostile: {stats['frames']} frames in {elapsed:.1f}s, rss {rss_before}->{peak} (peak)"
          f"->{rss_after} kB, good client delivered {len(delivered)}; {os.getpid()}")
