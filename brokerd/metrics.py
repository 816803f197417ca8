"""Broker metrics (Prometheus, one registry per broker) and the durable usage journal.

What counts (billing depends on this; docs/metering.md says the same)
---------------------------------------------------------------------
Usage is counted per *principal* (the SASL username, i.e. the API key; ``ANONYMOUS`` on a
PLAINTEXT listener) and per *topic*, in **record-batch bytes**: the bytes of the Kafka record
batches themselves (61-byte batch header + records, compressed as the producer sent them).
Not counted: TCP/TLS overhead, the 4-byte frame length, request/response headers, topic and
partition fields, error codes, SASL exchanges, metadata and admin requests. This is the
definition Confluent Cloud uses for its ingress/egress.

``kastle_bytes_in_total`` / ``kastle_records_in_total``
    Each record batch *appended to the log* by a Produce request: its byte length and the
    record count from its header. A batch that is refused (CORRUPT_MESSAGE,
    MESSAGE_TOO_LARGE, unknown topic, not authorized, ...) is not counted. A batch that a
    client re-sends after a lost acknowledgement is stored twice and counted twice.
``kastle_bytes_out_total`` / ``kastle_records_out_total``
    The ``records`` bytes of each partition in each Fetch response sent (including a
    truncated trailing batch, if the byte limits cut one), and the record counts of the
    complete batches in them. Counted when the response is built, before it is written.
``kastle_partition_bytes_in_total`` / ``kastle_partition_records_in_total`` /
``kastle_partition_bytes_out_total`` / ``kastle_partition_records_out_total``
    The same bytes and records per (topic, partition), over all principals. These are
    process-lifetime counters, not journaled: they restart from zero with the process, as
    Kafka's own per-topic meters do (Prometheus's rate() absorbs the reset). A deleted
    topic's series go away at the next scrape.
``kastle_partition_bytes_stored``
    Size of the partition's segment (.log) files on disk, sampled at scrape time; indexes
    excluded.

Durability of the counters (a ``kill -9`` loses no counted byte)
----------------------------------------------------------------
``UsageJournal`` keeps the in/out counters in ``<data-dir>/usage/``: a JSON snapshot of
totals plus an append-only binary journal. The produce path writes the journal entry for a
batch — principal, topic id, partition, the base offset the batch is about to get, byte and
record counts — with one ``write()`` *before* the batch is appended to the log, and the group
fsync that covers the log fsyncs the journal first (:meth:`UsageJournal.sync`). So whatever is
in the log is in the journal at least as durably. On start, after storage recovery, entries
whose base offset lies at or beyond their partition's recovered log end offset (the write never
happened, or a torn tail was truncated) are voided by :meth:`UsageJournal.reconcile`: a byte is
counted if and only if it is in the log. Fetch entries are written (one ``write()`` per
response) before the response is sent. After a restart the counters continue from the
snapshot plus the journal; they never reset unless the data directory is lost.

Other metrics (requests, latency, connections, throttle time) are process-lifetime
Prometheus counters and gauges: they restart from zero with the process, as Kafka's do.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crc32c import crc32c
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from brokerd.durable import atomic_write_json, fsync_dir

ANONYMOUS = "ANONYMOUS"

_FRAME = struct.Struct(">II")  # payload length, crc32c(payload)
_DEFINE = struct.Struct(">BI16sHH")  # kind, key id, topic id, len(principal), len(topic)
_IN = struct.Struct(">BIiqiqq")  # kind, key id, partition, base offset, records, bytes, ts ms
_OUT = struct.Struct(">BIqqq")  # kind, key id, records, bytes, ts ms
_VOID = struct.Struct(">BIiq")  # kind, key id, partition, base offset
_SEEN = struct.Struct(">BqH")  # kind, ts ms, len(principal)
K_DEFINE, K_IN, K_OUT, K_VOID, K_SEEN = 1, 2, 3, 4, 5

_NO_TOPIC_ID = b"\0" * 16
SEEN_WRITE_INTERVAL_MS = 60_000


@dataclass(slots=True)
class _Pending:
    key: tuple[str, str]
    topic_id: bytes
    partition: int
    base_offset: int
    records: int
    nbytes: int


class UsageJournal:
    """Persisted, monotonic usage counters per (principal, topic).

    Life cycle: ``UsageJournal(dir)`` loads the snapshot and replays journals (counting every
    entry, provisionally); the broker recovers storage, then calls :meth:`reconcile` with a
    function giving each partition's log end offset; that voids what the log does not hold,
    writes a fresh snapshot and opens a new journal generation. Then ``record_in`` (before
    each append), ``void_in`` (if the append failed), ``record_out``, ``touch``, ``sync`` (in
    the group fsync) and ``close`` (snapshot on clean shutdown).
    """

    def __init__(self, directory: Path | str, *, clock: Callable[[], float] = time.time,
                 max_journal_bytes: int = 64 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.max_journal_bytes = max_journal_bytes
        # totals[(principal, topic)] = [bytes_in, records_in, bytes_out, records_out]
        self.totals: dict[tuple[str, str], list[int]] = {}
        self.last_seen: dict[str, float] = {}
        self.generation = 0
        self._pending: list[_Pending] = []
        self._voids: set[tuple[bytes, int, int]] = set()
        self._fd: int | None = None
        self._ids: dict[tuple[str, str, bytes], int] = {}
        self._id_keys: dict[int, tuple[str, str]] = {}
        self._seen_written: dict[str, float] = {}
        self._journal_bytes = 0
        self._dirty = False
        self._load()

    # ------------------------------------------------------------------ loading
    def _journal_path(self, generation: int) -> Path:
        return self.dir / f"journal.{generation:012d}"

    def _load(self) -> None:
        snap = self.dir / "snapshot.json"
        if snap.exists():
            state = json.loads(snap.read_text())
            self.generation = int(state["generation"])
            for principal, topic, bi, ri, bo, ro in state["totals"]:
                self.totals[(principal, topic)] = [bi, ri, bo, ro]
            self.last_seen = {k: float(v) for k, v in state.get("last_seen", {}).items()}
        journals = sorted(p for p in self.dir.glob("journal.*") if p.suffix[1:].isdigit())
        for path in journals:
            gen = int(path.suffix[1:])
            if gen < self.generation:
                continue  # already folded into the snapshot
            self._replay(path)

    def _replay(self, path: Path) -> None:
        data = path.read_bytes()
        ids: dict[int, tuple[tuple[str, str], bytes]] = {}
        pos = 0
        while pos + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, pos)
            start = pos + _FRAME.size
            payload = data[start:start + length]
            if len(payload) < length or crc32c(payload) != crc or length == 0:
                break  # torn tail (power loss mid-write): nothing after it was acknowledged
            pos = start + length
            kind = payload[0]
            if kind in (K_IN, K_OUT, K_VOID) and int.from_bytes(payload[1:5], "big") not in ids:
                break  # an entry without its key definition: treat as the end of the journal
            if kind == K_DEFINE:
                _, kid, topic_id, lp, lt = _DEFINE.unpack_from(payload)
                off = _DEFINE.size
                principal = payload[off:off + lp].decode()
                topic = payload[off + lp:off + lp + lt].decode()
                ids[kid] = ((principal, topic), topic_id)
            elif kind == K_IN:
                _, kid, partition, base, records, nbytes, ts = _IN.unpack_from(payload)
                key, topic_id = ids[kid]
                self._pending.append(_Pending(key, topic_id, partition, base, records, nbytes))
                self._count(key, 0, nbytes, records, ts)
            elif kind == K_OUT:
                _, kid, records, nbytes, ts = _OUT.unpack_from(payload)
                key, _ = ids[kid]
                self._count(key, 2, nbytes, records, ts)
            elif kind == K_VOID:
                _, kid, partition, base = _VOID.unpack_from(payload)
                key, topic_id = ids[kid]
                self._voids.add((topic_id, partition, base))
            elif kind == K_SEEN:
                _, ts, lp = _SEEN.unpack_from(payload)
                principal = payload[_SEEN.size:_SEEN.size + lp].decode()
                self.last_seen[principal] = max(self.last_seen.get(principal, 0.0), ts / 1000.0)
        # Voids cancel their IN entry.
        if self._voids:
            keep = []
            for p in self._pending:
                if (p.topic_id, p.partition, p.base_offset) in self._voids:
                    self._voids.discard((p.topic_id, p.partition, p.base_offset))
                    self._uncount(p)
                else:
                    keep.append(p)
            self._pending = keep

    def _count(self, key: tuple[str, str], slot: int, nbytes: int, records: int, ts_ms: int) -> None:
        row = self.totals.get(key)
        if row is None:
            row = self.totals[key] = [0, 0, 0, 0]
        row[slot] += nbytes
        row[slot + 1] += records
        if ts_ms:
            seen = ts_ms / 1000.0
            if seen > self.last_seen.get(key[0], 0.0):
                self.last_seen[key[0]] = seen

    def _uncount(self, p: _Pending) -> None:
        row = self.totals[p.key]
        row[0] -= p.nbytes
        row[1] -= p.records

    # ------------------------------------------------------------------ recovery
    def reconcile(self, log_end_offset: Callable[[bytes, int], int | None]) -> int:
        """Void journaled produce entries the recovered log does not hold; start a new journal.

        ``log_end_offset(topic_id, partition)`` returns the partition's log end offset after
        storage recovery, or None if the partition no longer exists (then the entry stays
        counted: it was stored, and the topic deleted later). Returns the number of voided
        entries. Must be called once, before the broker accepts connections.
        """
        voided = 0
        for p in self._pending:
            end = log_end_offset(p.topic_id, p.partition)
            if end is not None and p.base_offset >= end:
                self._uncount(p)
                voided += 1
        self._pending = []
        self._voids.clear()
        self.snapshot()
        return voided

    # ------------------------------------------------------------------ writing
    def _open(self) -> int:
        if self._fd is None:
            path = self._journal_path(self.generation)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fsync_dir(self.dir)
            self._ids.clear()
            self._id_keys.clear()
            self._journal_bytes = os.fstat(self._fd).st_size
        return self._fd

    def _key_id(self, principal: str, topic: str, topic_id: bytes, out: list[bytes]) -> int:
        ident = (principal, topic, topic_id)
        kid = self._ids.get(ident)
        if kid is None:
            kid = len(self._ids) + 1
            self._ids[ident] = kid
            self._id_keys[kid] = (principal, topic)
            p, t = principal.encode(), topic.encode()
            out.append(_DEFINE.pack(K_DEFINE, kid, topic_id, len(p), len(t)) + p + t)
        return kid

    def _write(self, payloads: list[bytes]) -> None:
        buf = bytearray()
        for payload in payloads:
            buf += _FRAME.pack(len(payload), crc32c(payload))
            buf += payload
        fd = self._open()
        view = memoryview(buf)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self._journal_bytes += len(buf)
        self._dirty = True

    def record_in(self, principal: str, entries: Iterable[tuple[str, bytes | None, int, int, int, int]],
                  now: float | None = None) -> None:
        """Journal appended batches, *before* appending them: one write for a whole request.

        ``entries``: (topic, topic_id, partition, base_offset, records, nbytes).
        """
        ts = int((self.clock() if now is None else now) * 1000)
        self._open()
        payloads: list[bytes] = []
        counted = []
        for topic, topic_id, partition, base, records, nbytes in entries:
            tid = topic_id or _NO_TOPIC_ID
            kid = self._key_id(principal, topic, tid, payloads)
            payloads.append(_IN.pack(K_IN, kid, partition, base, records, nbytes, ts))
            counted.append(((principal, topic), nbytes, records))
        if not payloads:
            return
        self._write(payloads)
        for key, nbytes, records in counted:
            self._count(key, 0, nbytes, records, ts)
        self._seen_written[principal] = ts

    def void_in(self, principal: str, topic: str, topic_id: bytes | None, partition: int,
                base_offset: int, records: int, nbytes: int) -> None:
        """The append journaled by record_in failed: take it back."""
        tid = topic_id or _NO_TOPIC_ID
        self._open()
        payloads: list[bytes] = []
        kid = self._key_id(principal, topic, tid, payloads)
        payloads.append(_VOID.pack(K_VOID, kid, partition, base_offset))
        self._write(payloads)
        row = self.totals[(principal, topic)]
        row[0] -= nbytes
        row[1] -= records

    def record_out(self, principal: str, entries: Iterable[tuple[str, int, int]],
                   now: float | None = None) -> None:
        """Journal fetched data (topic, records, nbytes), before the response is sent."""
        ts = int((self.clock() if now is None else now) * 1000)
        self._open()
        payloads: list[bytes] = []
        counted = []
        for topic, records, nbytes in entries:
            if nbytes <= 0:
                continue
            kid = self._key_id(principal, topic, _NO_TOPIC_ID, payloads)
            payloads.append(_OUT.pack(K_OUT, kid, records, nbytes, ts))
            counted.append(((principal, topic), nbytes, records))
        if not counted:
            return
        self._write(payloads)
        for key, nbytes, records in counted:
            self._count(key, 2, nbytes, records, ts)
        self._seen_written[principal] = ts

    def touch(self, principal: str, now: float | None = None) -> None:
        """Record that ``principal`` made a request (for "key last used"). Cheap."""
        now = self.clock() if now is None else now
        self.last_seen[principal] = now
        ts = int(now * 1000)
        if ts - self._seen_written.get(principal, 0) >= SEEN_WRITE_INTERVAL_MS:
            self._seen_written[principal] = ts
            p = principal.encode()
            self._write([_SEEN.pack(K_SEEN, ts, len(p)) + p])

    def sync(self) -> None:
        """fsync the journal. Call in the group fsync, *before* fsyncing the logs."""
        if self._fd is not None and self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    def maybe_rotate(self) -> bool:
        """Fold the journal into a snapshot when it grew large. Call right after a group fsync."""
        if self._journal_bytes < self.max_journal_bytes:
            return False
        self.snapshot()
        return True

    def snapshot(self) -> None:
        """Write totals atomically as generation N+1, then drop journals older than it."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        new_gen = self.generation + 1
        state = {
            "generation": new_gen,
            "totals": [[p, t, *row] for (p, t), row in sorted(self.totals.items())],
            "last_seen": self.last_seen,
        }
        atomic_write_json(self.dir / "snapshot.json", state)
        self.generation = new_gen
        for path in self.dir.glob("journal.*"):
            if path.suffix[1:].isdigit() and int(path.suffix[1:]) < new_gen:
                path.unlink(missing_ok=True)
        self._dirty = False
        self._journal_bytes = 0

    def close(self) -> None:
        self.snapshot()


# ---------------------------------------------------------------------------- batch helpers

def batch_stats(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(records in complete batches, total bytes) of a run of record batches (v2 headers)."""
    view = memoryview(data)
    total = len(view)
    records = 0
    pos = 0
    while pos + 61 <= total:
        length = int.from_bytes(view[pos + 8:pos + 12], "big", signed=True)
        end = pos + 12 + length
        if length < 49 or end > total:
            break
        records += int.from_bytes(view[pos + 57:pos + 61], "big", signed=True)
        pos = end
    return records, total


# ---------------------------------------------------------------------------- registry

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: One row per partition: (topic, partition, bytes stored).
StorageSource = Callable[[], Iterable[tuple[str, int, int]]]


class _UsageCollector:
    def __init__(self, journal: UsageJournal) -> None:
        self.journal = journal

    def collect(self) -> Iterable[Any]:
        names = [("kastle_bytes_in", "Record-batch bytes appended by Produce, per principal and topic", 0),
                 ("kastle_records_in", "Records appended by Produce, per principal and topic", 1),
                 ("kastle_bytes_out", "Record-batch bytes served by Fetch, per principal and topic", 2),
                 ("kastle_records_out", "Records served by Fetch, per principal and topic", 3)]
        totals = list(self.journal.totals.items())
        for name, doc, slot in names:
            fam = CounterMetricFamily(name, doc, labels=["principal", "topic"])
            for (principal, topic), row in totals:
                fam.add_metric([principal, topic], row[slot])
            yield fam
        seen = GaugeMetricFamily("kastle_principal_last_seen_timestamp_seconds",
                                 "Unix time of the principal's latest request", labels=["principal"])
        for principal, ts in sorted(self.journal.last_seen.items()):
            seen.add_metric([principal], ts)
        yield seen


class _StorageCollector:
    def __init__(self, source: Callable[[], StorageSource | None]) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        stored = GaugeMetricFamily("kastle_partition_bytes_stored",
                                   "Bytes of segment (.log) files on disk per partition",
                                   labels=["topic", "partition"])
        partitions = GaugeMetricFamily("kastle_partitions", "Partitions hosted by this broker",
                                       labels=["topic"])
        per_topic: dict[str, int] = {}
        fn = self.source()
        for topic, partition, nbytes in (fn() if fn else ()):
            stored.add_metric([topic, str(partition)], nbytes)
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, n in sorted(per_topic.items()):
            partitions.add_metric([topic], n)
        total = GaugeMetricFamily("kastle_partitions_total_count", "All partitions hosted by this broker")
        total.add_metric([], sum(per_topic.values()))
        yield stored
        yield partitions
        yield total


class PartitionTraffic:
    """Bytes and records in and out per (topic, partition), for the tenant's metrics export.

    A dict update per partition of a request: the produce and fetch paths already hold the
    byte length and the record count (batch headers), so nothing is decoded for it.
    """

    def __init__(self, live_topics: Callable[[], Iterable[str]] | None = None) -> None:
        #: (topic, partition) -> [bytes_in, records_in, bytes_out, records_out]
        self.rows: dict[tuple[str, int], list[int]] = {}
        self.live_topics = live_topics

    def add(self, topic: str, partition: int, slot: int, nbytes: int, records: int) -> None:
        row = self.rows.get((topic, partition))
        if row is None:
            row = self.rows[(topic, partition)] = [0, 0, 0, 0]
        row[slot] += nbytes
        row[slot + 1] += records

    def collect(self) -> Iterable[Any]:
        if self.live_topics is not None:  # forget deleted topics, as Kafka removes their meters
            live = set(self.live_topics())
            for key in [k for k in self.rows if k[0] not in live]:
                del self.rows[key]
        rows = sorted(self.rows.items())
        for name, doc, slot in (
            ("kastle_partition_bytes_in", "Record-batch bytes appended by Produce to the partition", 0),
            ("kastle_partition_records_in", "Records appended by Produce to the partition", 1),
            ("kastle_partition_bytes_out", "Record-batch bytes served by Fetch from the partition", 2),
            ("kastle_partition_records_out", "Records served by Fetch from the partition", 3),
        ):
            fam = CounterMetricFamily(name, doc, labels=["topic", "partition"])
            for (topic, partition), row in rows:
                fam.add_metric([topic, str(partition)], row[slot])
            yield fam


class _CleanerCollector:
    """The log cleaner, per compacted partition (brokerd/storage/cleaner.py)."""

    def __init__(self, source: Callable[[], Any]) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        labels = ["topic", "partition"]
        ratio = GaugeMetricFamily("kastle_log_cleaner_dirty_ratio",
                                  "Dirty bytes / (clean + dirty bytes) of the cleanable range, last measured",
                                  labels=labels)
        cleaned = CounterMetricFamily("kastle_log_cleaner_bytes_cleaned",
                                      "Bytes of log read and rewritten by cleaner passes", labels=labels)
        duration = GaugeMetricFamily("kastle_log_cleaner_pass_duration_seconds",
                                     "Duration of the latest cleaner pass", labels=labels)
        delay = GaugeMetricFamily("kastle_log_cleaner_max_compaction_delay_seconds",
                                  "How far the oldest dirty record is past max.compaction.lag.ms",
                                  labels=labels)
        running = GaugeMetricFamily("kastle_log_cleaner_pass_in_progress",
                                    "1 while a cleaner pass runs on the partition", labels=labels)
        passes = CounterMetricFamily("kastle_log_cleaner_passes", "Completed cleaner passes", labels=labels)
        cleaner = self.source()
        for topic, partition, st in (cleaner.rows() if cleaner is not None else ()):
            key = [topic, str(partition)]
            ratio.add_metric(key, st.dirty_ratio)
            cleaned.add_metric(key, st.bytes_cleaned)
            duration.add_metric(key, st.last_pass_seconds)
            delay.add_metric(key, st.max_delay_ms / 1000.0)
            running.add_metric(key, 1 if st.in_progress else 0)
            passes.add_metric(key, st.passes)
        yield from (ratio, cleaned, duration, delay, running, passes)


class BrokerMetrics:
    """All metrics of one broker, on a private (non-global) CollectorRegistry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, journal: UsageJournal, *, storage: StorageSource | None = None,
                 live_topics: Callable[[], Iterable[str]] | None = None) -> None:
        disable_created_metrics()  # no *_created series: they double the scrape for nothing
        self.journal = journal
        self.storage = storage
        r = self.registry = CollectorRegistry(auto_describe=False)
        r.register(_UsageCollector(journal))
        self.partition_traffic = PartitionTraffic(live_topics)
        r.register(self.partition_traffic)
        r.register(_StorageCollector(lambda: self.storage))
        self.cleaner: Any = None  # the broker's LogCleaner, once started
        r.register(_CleanerCollector(lambda: self.cleaner))
        self.requests = Counter("kastle_requests", "Requests handled, by API and error code",
                                ["api", "error"], registry=r)
        self.latency = Histogram("kastle_request_latency_seconds",
                                 "Time from a request's arrival to its response being queued",
                                 ["api"], buckets=LATENCY_BUCKETS, registry=r)
        self.connections = Gauge("kastle_connections", "Open client connections", ["listener"], registry=r)
        self.connections_opened = Counter("kastle_connections_opened", "Connections accepted",
                                          ["listener"], registry=r)
        self.connections_rejected = Counter("kastle_connections_rejected",
                                            "Connections refused by a connection limit", ["reason"],
                                            registry=r)
        self.principal_connections = Gauge("kastle_principal_connections",
                                           "Open authenticated connections per principal",
                                           ["principal"], registry=r)
        self.throttle_time = Counter("kastle_throttle_time_seconds",
                                     "Throttle time returned to clients (KIP-219), per principal and quota",
                                     ["principal", "quota"], registry=r)
        self.throttled = Counter("kastle_throttled_responses", "Responses that carried a throttle time",
                                 ["principal", "quota"], registry=r)
        self.malformed = Counter("kastle_malformed_requests",
                                 "Frames that could not be parsed (connection closed)", registry=r)
        self.zero_copy_bytes = Counter("kastle_fetch_zero_copy_bytes",
                                       "Fetch record bytes sent straight from segment files (sendfile)",
                                       registry=r)
        self._latency_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, api: str, seconds: float, errors: Mapping[str, int] | None = None) -> None:
        """One handled request: latency, and its error codes (``{"NONE": 1}`` if omitted)."""
        child = self._latency_children.get(api)
        if child is None:
            child = self._latency_children[api] = self.latency.labels(api)
        child.observe(seconds)
        for error, n in (errors or {"NONE": 1}).items():
            key = (api, error)
            c = self._request_children.get(key)
            if c is None:
                c = self._request_children[key] = self.requests.labels(api, error)
            c.inc(n)

    def observe_throttle(self, principal: str, quota: str, throttle_ms: int) -> None:
        if throttle_ms > 0:
            self.throttle_time.labels(principal, quota).inc(throttle_ms / 1000.0)
            self.throttled.labels(principal, quota).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
