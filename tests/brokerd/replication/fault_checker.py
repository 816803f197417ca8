"""The full fault checker, shared by the CI test (tests/brokerd/replication/test_fault_checker.py)
and the bench (bench/fault_bench.py).

A cluster of three brokerd processes (advertised on 127.0.0.1/.2/.3) with an etcd of its
own, every broker reached through the fault-injecting proxies of ``faultnet``. A workload
runs against it the whole time: idempotent producers (acks=all) writing numbered values to
several partitions of a topic with three replicas and ``min.insync.replicas`` 2, a consumer
group committing what it read, and an observer reading the group's committed offsets. Faults
are injected one cycle at a time; each cycle waits for the cluster to be whole again (every
partition's ISR full) before the next.

The history is then checked as Jepsen's queue checker would, against a final read of every
partition from offset 0:

- no acknowledged write lost, and each at the offset its acknowledgement named;
- no value twice in the log (idempotence is on);
- offsets contiguous from 0 in every partition (no compaction, no transactions);
- every record a consumer saw is the record at that offset in the final log (all consumers
  see one log), and the group consumed every offset below what it committed;
- committed offsets never go backwards: a read of the group's offsets that starts after
  another read or an acknowledged commit finished sees at least that offset.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import signal
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.conftest import Broker
from tests.brokerd.replication.clustertest import start_brokers, wait_for
from tests.brokerd.replication.faultnet import ETCD, FaultNet, free_port
from tests.etcd_server import EtcdServer

if TYPE_CHECKING:
    from tests.brokerd.replication.txn_workload import TxnWorkload

TOPIC = "jepsen"
GROUP = "jepsen-group"


class FaultBroker(Broker):
    """A broker bound on 127.0.1.N and advertised on 127.0.0.N (same port), where its proxy
    listens: everyone reaches it through the proxy."""

    def __init__(self, root: Path, *, host: str, bind_host: str, **options) -> None:
        super().__init__(root, **options)
        self.host = host
        self.bind_host = bind_host

    def command(self) -> list[str]:
        cmd = super().command()
        for i, part in enumerate(cmd[:-1]):
            if part in ("--listener", "--admin-listener"):
                cmd[i + 1] = cmd[i + 1].replace("127.0.0.1:", f"{self.bind_host}:")
        return [*cmd, "--advertised-host", self.host]

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports['PLAINTEXT']}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.bind_host}:{self.ports['admin']}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class FaultCluster:
    def __init__(self, root: Path, *, settings: dict | None = None, count: int = 3) -> None:
        self.root = Path(root)
        self.etcd = EtcdServer.start(self.root / "etcd")
        self.net = FaultNet(self.pids)
        self.session_s = (settings or {}).get("coordination.session.timeout.ms", 6000) / 1000
        prefix = f"faults/{uuid.uuid4().hex[:8]}"
        self.brokers: list[FaultBroker] = []
        for node_id in range(1, count + 1):
            host, bind = f"127.0.0.{node_id}", f"127.0.1.{node_id}"
            port = free_port(host, bind)
            self.net.proxy((host, port), (bind, port), owner=node_id)
            etcd_port = free_port("127.0.0.1")
            self.net.proxy(("127.0.0.1", etcd_port), self.etcd.endpoint, owner=ETCD, source=node_id)
            broker = FaultBroker(
                self.root / f"broker-{node_id}",
                host=host,
                bind_host=bind,
                node_id=node_id,
                settings={"coordination.session.timeout.ms": 2000, **(settings or {})},
                extra_args=[
                    "--coordination",
                    f"etcd://127.0.0.1:{etcd_port}/{prefix}",
                    "--rack",
                    f"rack-{node_id}",
                ],
            )
            broker.ports["PLAINTEXT"] = port
            self.brokers.append(broker)
        self.bootstrap = ",".join(b.bootstrap for b in self.brokers)
        self._admin: AdminClient | None = None

    def pids(self) -> dict[int, object]:
        return {b.proc.pid: b.node_id for b in self.brokers if b.running}

    def start(self) -> FaultCluster:
        start_brokers(self.brokers, timeout=60)
        wait_for(
            lambda: len(self.admin().list_topics(timeout=10).brokers) == len(self.brokers),
            timeout=60,
            what="every broker registered",
        )
        return self

    def close(self) -> None:
        for broker in self.brokers:
            if broker.running:
                os.kill(broker.pid, signal.SIGCONT)
            broker.kill()
        self.net.close()
        self.etcd.stop()

    def broker(self, node_id: int) -> FaultBroker:
        return next(b for b in self.brokers if b.node_id == node_id)

    # --- what the cluster says ----------------------------------------------------------------
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})
        return self._admin

    def create_topic(self, partitions: int) -> None:
        topic = NewTopic(TOPIC, partitions, replication_factor=3, config={"min.insync.replicas": "2"})
        self.admin().create_topics([topic])[TOPIC].result(timeout=30)
        wait_for(
            lambda: (s := self.partitions()) and len(s) == partitions and self.in_sync(),
            timeout=60,
            what="the topic in sync",
        )

    def metadata(self):
        try:
            return self.admin().list_topics(timeout=5)
        except KafkaException:
            return None

    def partitions(self, topic: str = TOPIC) -> dict:
        meta = self.metadata()
        if meta is None or topic not in meta.topics or meta.topics[topic].error is not None:
            return {}
        return dict(meta.topics[topic].partitions)

    def in_sync(self) -> bool:
        """Every broker registered, every partition of every topic (internal ones included)
        led, with its whole replica set in the ISR."""
        meta = self.metadata()
        if meta is None or len(meta.brokers) != len(self.brokers):
            return False
        for topic in meta.topics.values():
            if topic.error is not None:
                return False
            for p in topic.partitions.values():
                if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                    return False
        return True

    def wait_in_sync(self, timeout: float = 120) -> None:
        try:
            wait_for(
                lambda: all(b.running for b in self.brokers) and self.in_sync(), timeout=timeout, interval=0.2
            )
        except AssertionError:
            raise AssertionError(f"not every ISR full after {timeout} s: {self.describe()}") from None

    def describe(self) -> str:
        """Who is registered, what each partition's leader and ISR are, and each broker's health."""
        meta = self.metadata()
        health = {b.node_id: (b.healthz() if b.running else "down") for b in self.brokers}
        if meta is None:
            return f"no metadata; health {health}"
        parts = [
            f"{name}-{i}: leader {p.leader} isr {sorted(p.isrs)}"
            for name, topic in sorted(meta.topics.items())
            for i, p in sorted(topic.partitions.items())
        ]
        return f"brokers {sorted(meta.brokers)}, health {health}; " + "; ".join(parts)

    def leader_of(self, partition: int) -> int:
        return wait_for(
            lambda: (p := self.partitions().get(partition)) and p.leader >= 0 and p.leader,
            what=f"a leader of {TOPIC}-{partition}",
        )

    def coordinator(self, notes: list[str] | None = None) -> int:
        """The group coordinator's broker id, as DescribeGroups names it. An admin client whose
        look-up keeps failing is replaced (librdkafka's admin client, after a broker it knew
        restarted, was seen failing every DescribeGroups for a minute while a new client found
        the coordinator at once); the failure goes into ``notes``."""
        errors: list[str] = []
        started = time.monotonic()

        def ask():
            try:
                return self.admin().describe_consumer_groups([GROUP])[GROUP].result(timeout=5).coordinator.id
            except (KafkaException, TimeoutError) as e:  # TimeoutError: no answer within 5 s
                errors.append(str(e.args[0]) if e.args else type(e).__name__)
                if time.monotonic() - started > 10 and len(errors) % 3 == 0:
                    self._admin = None  # a fresh client: its own connections and metadata
                return None

        try:
            found = wait_for(ask, timeout=60)
        except AssertionError:
            raise AssertionError(f"no coordinator named for 60 s: {errors[-1:]}") from None
        if errors and notes is not None:
            notes.append(f"{len(errors)} failed look-up(s) of the coordinator first, e.g. {errors[-1]}")
        return found

    def txn_coordinator(self, tid: str) -> int:
        """The broker id FindCoordinator(transaction) names for ``tid``, asked of a running broker."""

        def ask() -> int | None:
            for b in self.brokers:
                if not b.running:
                    continue
                try:
                    with Wire(b.ports["PLAINTEXT"], b.host) as w:
                        resp = w.request(request_class(10, 3)(key=tid, key_type=1))
                except OSError:
                    continue
                if resp.error_code == 0:
                    return resp.node_id
            return None

        return wait_for(ask, timeout=60, what=f"the transaction coordinator of {tid}")


# --- the workload -------------------------------------------------------------------------------
@dataclass
class History:
    acked: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # value -> (partition, offset)
    ack_times: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    acked_sent: dict[int, float] = field(default_factory=dict)  # partition -> latest send time acknowledged
    failed: dict[str, str] = field(default_factory=dict)  # value -> delivery error (indeterminate)
    fatal: list[str] = field(default_factory=list)  # producers' fatal errors
    # consumer -> partition -> [(offset, value)] in the order delivered
    seen: dict[int, dict[int, list[tuple[int, str]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    # (start, end, partition, offset, kind): kind "read" (the observer) or "commit" (acknowledged)
    offsets: list[tuple[float, float, int, int, str]] = field(default_factory=list)
    commit_errors: Counter = field(default_factory=Counter)
    consumer_errors: Counter = field(default_factory=Counter)
    log: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # the final read, per partition
    read_errors: Counter = field(default_factory=Counter)  # the final read's client errors
    read_conflicts: list[tuple[int, int, str, str]] = field(default_factory=list)  # two values at an offset


class Workload:
    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        *,
        producers: int = 2,
        consumers: int = 2,
        acks: str = "all",
        interval: float = 0.004,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.acks = acks
        self.interval = interval
        self.history = History()
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._produce, args=(i,), daemon=True) for i in range(producers)
        ]
        self.consumer_threads = [
            threading.Thread(target=self._consume, args=(i,), daemon=True) for i in range(consumers)
        ]
        self.observer = threading.Thread(target=self._observe_offsets, daemon=True)

    def start(self) -> Workload:
        for thread in [*self.threads, *self.consumer_threads, self.observer]:
            thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in [*self.threads, *self.consumer_threads, self.observer]:
            thread.join(150)
        self._read_offsets()  # one last observation, after every commit
        if hasattr(self, "_offsets_reader"):
            self._offsets_reader.close()

    # --- producers ----------------------------------------------------------------------------
    def _producer(self, fatal: threading.Event) -> Producer:
        def error(err) -> None:
            if err.fatal():
                self.history.fatal.append(str(err))
                fatal.set()

        idempotent = self.acks == "all"
        return Producer(
            {
                "log_level": 2,
                "bootstrap.servers": self.bootstrap,
                "acks": self.acks,
                "enable.idempotence": idempotent,
                "linger.ms": 5,
                "message.timeout.ms": 120000,
                "error_cb": error,
            }
        )

    def _delivered(self, value: str, partition: int, sent: float, err, msg) -> None:
        h = self.history
        if err is not None:
            h.failed[value] = str(err)
            return
        h.acked[value] = (partition, msg.offset())
        h.ack_times[partition].append(time.monotonic())
        if sent > h.acked_sent.get(partition, 0.0):
            h.acked_sent[partition] = sent

    def _produce(self, index: int) -> None:
        fatal = threading.Event()
        producer = self._producer(fatal)
        n = 0
        while not self.stop_event.is_set():
            if fatal.is_set():  # a fatal error ends an idempotent producer: a new one carries on
                fatal = threading.Event()
                producer = self._producer(fatal)
            value, partition = f"{index}-{n}", (n + index) % self.partitions
            try:
                producer.produce(
                    TOPIC,
                    value=value.encode(),
                    partition=partition,
                    on_delivery=partial(self._delivered, value, partition, time.monotonic()),
                )
            except BufferError:
                self._poll(producer, 0.05, fatal)
                continue
            except KafkaException:  # fatal: the error callback saw it, and a new producer takes over
                fatal.set()
                continue
            n += 1
            self._poll(producer, 0, fatal)
            time.sleep(self.interval)
        self._poll(producer, None, fatal)

    @staticmethod
    def _poll(producer: Producer, timeout: float | None, fatal: threading.Event) -> None:
        """Serve delivery reports (``timeout`` None: flush). A producer in a fatal state raises
        from here too; what it had not delivered stays unacknowledged (indeterminate)."""
        try:
            producer.flush(120) if timeout is None else producer.poll(timeout)
        except (KafkaException, SystemError):
            fatal.set()

    # --- the consumer group -------------------------------------------------------------------
    def _consume(self, index: int) -> None:
        consumer = Consumer(
            {
                "log_level": 2,
                "bootstrap.servers": self.bootstrap,
                "group.id": GROUP,
                "client.id": f"checker-{index}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            }
        )
        consumer.subscribe([TOPIC])
        seen = self.history.seen[index]
        while not self.stop_event.is_set():
            messages = consumer.consume(500, 0.5)
            got = False
            for m in messages:
                if m.error() is not None:
                    self.history.consumer_errors[m.error().name()] += 1
                    continue
                seen[m.partition()].append((m.offset(), m.value().decode()))
                got = True
            if not got:
                continue
            started = time.monotonic()
            try:
                committed = consumer.commit(asynchronous=False)
            except KafkaException as e:
                self.history.commit_errors[e.args[0].name()] += 1
                continue
            ended = time.monotonic()
            with self.lock:
                for tp in committed or []:
                    if tp.error is None and tp.offset >= 0:
                        self.history.offsets.append((started, ended, tp.partition, tp.offset, "commit"))
        consumer.close()

    def _read_offsets(self) -> None:
        """One read of the group's committed offsets (OffsetFetch, as a consumer of the group
        that never joins it asks at start-up)."""
        started = time.monotonic()
        try:
            reader = self._offsets_reader
        except AttributeError:
            reader = self._offsets_reader = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": GROUP,
                    "log_level": 2,
                    "enable.auto.commit": False,
                }
            )
        try:
            result = reader.committed([TopicPartition(TOPIC, p) for p in range(self.partitions)], timeout=5)
        except KafkaException:
            return
        ended = time.monotonic()
        with self.lock:
            for tp in result:
                if tp.error is None:
                    self.history.offsets.append((started, ended, tp.partition, tp.offset, "read"))

    def _observe_offsets(self) -> None:
        while not self.stop_event.wait(0.5):
            self._read_offsets()

    # --- progress -----------------------------------------------------------------------------
    def acked_count(self) -> int:
        return len(self.history.acked)

    def writes_resumed(self, since: float) -> bool:
        """Every partition acknowledged a write sent after ``since``."""
        sent = self.history.acked_sent
        return all(sent.get(p, 0.0) > since for p in range(self.partitions))

    def write_stall(self, start: float, end: float) -> float:
        """The longest time any partition went without an acknowledgement in [start, end]."""
        worst = 0.0
        for p in range(self.partitions):
            times = self.history.ack_times[p]
            i = bisect.bisect_left(times, start)
            previous = start
            for t in times[i:]:
                if t > end:
                    break
                worst = max(worst, t - previous)
                previous = t
            worst = max(worst, end - previous)
        return worst

    def read_back(self, timeout: float = 60) -> None:
        """The final log: every partition read from offset 0 to its high watermark.

        The high watermark is asked again until it no longer moves and covers every
        acknowledged offset (a leader elected late, the preferred-leader rebalance for one,
        starts from the high watermark it heard as a follower, which may trail by a fetch), or
        ``timeout`` passes: an acknowledged offset never below it is then reported lost. A
        record delivered twice at one offset (the client fetching again after a leader change)
        is one record; two values at one offset are a problem."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"{GROUP}-read-back",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",  # a reset re-reads; it never skips
                "log_level": 2,
            }
        )
        acked_end: dict[int, int] = defaultdict(int)
        for p, o in self.history.acked.values():
            if o is not None:
                acked_end[p] = max(acked_end[p], o + 1)
        try:
            for p in range(self.partitions):
                consumer.assign([TopicPartition(TOPIC, p, 0)])
                at: dict[int, str] = {}
                deadline = time.monotonic() + timeout
                high, rereads = -1, 0
                while time.monotonic() < deadline:
                    _low, now = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
                    read_to = max(at) + 1 if at else 0
                    if read_to >= now and now == high and now >= acked_end[p]:
                        break
                    high = now
                    if read_to >= now:
                        if len(at) < read_to and rereads < 2:  # offsets skipped: read it all again
                            rereads += 1
                            consumer.assign([TopicPartition(TOPIC, p, 0)])
                        else:
                            time.sleep(0.5)  # the high watermark settling
                        continue
                    for m in consumer.consume(1000, 0.5):
                        if m.error() is not None:
                            self.history.read_errors[m.error().name()] += 1
                            continue
                        value = m.value().decode()
                        if at.setdefault(m.offset(), value) != value:
                            self.history.read_conflicts.append((p, m.offset(), at[m.offset()], value))
                self.history.log[p] = sorted(at.items())
        finally:
            consumer.close()


# --- the checker --------------------------------------------------------------------------------
def check(history: History) -> dict:
    """Jepsen-style verdict over a history: counts (``lost`` and ``duplicated`` must be 0),
    ``problems``, the other violations of the log in words, and ``group problems``, those of
    the consumer group's committed offsets (both must be empty)."""
    problems: list[str] = []
    at: dict[int, dict[int, str]] = {}
    values: Counter = Counter()
    for p, log in history.log.items():
        offsets = [o for o, _v in log]
        if offsets != list(range(len(offsets))):
            gaps = sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1)
            problems.append(
                f"partition {p}: offsets not contiguous from 0 ({gaps} break(s), first {offsets[:1]})"
            )
        at[p] = dict(log)
        values.update(v for _o, v in log)
    lost = [v for v in history.acked if v not in values]
    duplicated = [v for v, n in values.items() if n > 1]
    # librdkafka reported an idempotent delivery without its offset in one bench run: such a
    # record is checked for presence only.
    moved = [
        v
        for v, (p, o) in history.acked.items()
        if o is not None and v in values and at.get(p, {}).get(o) != v
    ]
    if moved:
        problems.append(
            f"{len(moved)} acknowledged record(s) not at their acknowledged offset, e.g. {moved[:3]}"
        )

    # One log: whatever a consumer saw is the final log's record at that offset.
    diverged = []
    for consumer, partitions in history.seen.items():
        for p, seen in partitions.items():
            diverged += [(consumer, p, o, v) for o, v in seen if at.get(p, {}).get(o) != v]
    if diverged:
        problems.append(f"{len(diverged)} consumed record(s) differ from the final log, e.g. {diverged[:3]}")

    group_problems: list[str] = []
    # Committed offsets never go backwards: a read starting after an event ended sees at least it.
    floors: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for _start, end, p, offset, _kind in history.offsets:
        floors[p].append((end, offset))
    backwards = []
    for p, events in floors.items():
        events.sort()
        ends = [e for e, _o in events]
        best, running = [], float("-inf")
        for _e, o in events:
            running = max(running, o)
            best.append(running)
        for start, _end, q, offset, kind in history.offsets:
            if q != p or kind != "read":
                continue
            i = bisect.bisect_left(ends, start)
            if i and offset < best[i - 1]:
                backwards.append((p, best[i - 1], offset))
    if backwards:
        group_problems.append(
            f"committed offsets went backwards {len(backwards)} time(s) (partition, before, after): "
            f"{sorted(set(backwards))[:5]}"
        )

    # The group consumed every offset below what it committed, and committed nothing past the log.
    last = {p: max(o for _e, o in events) for p, events in floors.items() if events}
    for p, committed in last.items():
        consumed = {o for partitions in history.seen.values() for o, _v in partitions.get(p, [])}
        skipped = [o for o in range(committed) if o not in consumed]
        if skipped:
            group_problems.append(
                f"partition {p}: the group committed {committed} but never consumed {len(skipped)} "
                f"offset(s) below it, e.g. {skipped[:5]}"
            )
        if committed > len(history.log.get(p, [])):
            group_problems.append(
                f"partition {p}: committed offset {committed} beyond the log's end "
                f"{len(history.log.get(p, []))}"
            )
    if history.read_conflicts:
        problems.append(
            f"{len(history.read_conflicts)} offset(s) read back with two values (partition, offset, "
            f"first, second), e.g. {history.read_conflicts[:3]}"
        )
    if history.fatal:
        problems.append(f"{len(history.fatal)} producer fatal error(s), e.g. {history.fatal[:2]}")
    return {
        "acknowledged": len(history.acked),
        "failed (indeterminate)": len(history.failed),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "consumed": sum(len(s) for parts in history.seen.values() for s in parts.values()),
        "committed offset observations": len(history.offsets),
        "lost examples": lost[:10],
        "duplicated examples": duplicated[:10],
        "problems": problems,
        "group problems": group_problems,
    }


# --- faults -------------------------------------------------------------------------------------
@dataclass
class Cycle:
    fault: str
    target: str
    writes_resumed_s: float | None = None  # from the fault until every partition acknowledged a newer write
    recovered_s: float | None = None  # from the heal until every ISR was full again
    write_stall_s: float = 0.0  # the longest time a partition went without acknowledgements
    notes: list[str] = field(default_factory=list)
    client_notes: list[str] = field(default_factory=list)  # the checker's clients, not the cluster


class Faults:
    """The fault types, each ``name(rng) -> Cycle``: inject, hold, heal, and measure."""

    TYPES = (
        "kill-leader", "kill-coordinator", "kill-txn-coordinator", "pause", "partition", "etcd-restart",
        "rolling-restart",
    )  # fmt: skip
    NEED_TRANSACTIONS = ("kill-txn-coordinator",)

    def __init__(
        self,
        cluster: FaultCluster,
        workload: Workload,
        *,
        txns: TxnWorkload | None = None,
        resume_timeout: float = 60,
    ) -> None:
        self.cluster = cluster
        self.workload = workload
        self.txns = txns
        self.resume_timeout = resume_timeout
        self.pauses = 0

    def run(self, name: str, rng: random.Random) -> Cycle:
        cluster, workload = self.cluster, self.workload
        cluster.wait_in_sync()
        wait_for(lambda: workload.writes_resumed(time.monotonic() - 1.0), timeout=120, what="writes flowing")
        started = time.monotonic()
        cycle = Cycle(name, "")
        heal = getattr(self, name.replace("-", "_"))(cycle, rng)
        healed = time.monotonic()
        heal()
        try:
            cluster.wait_in_sync(timeout=180)
            cycle.recovered_s = time.monotonic() - healed
        except AssertionError as e:
            cycle.notes.append(str(e))
        self._await_writes(cycle, started)
        for broker in cluster.brokers:
            if not broker.running:  # a broker that died on its own is a finding; it goes back in
                cycle.notes.append(f"broker {broker.node_id} exited by itself ({broker.proc.returncode})")
                broker.start(timeout=60)
        cycle.write_stall_s = workload.write_stall(started, time.monotonic())
        return cycle

    def _await_writes(self, cycle: Cycle, started: float) -> None:
        if cycle.writes_resumed_s is not None:
            return
        try:
            wait_for(
                lambda: self.workload.writes_resumed(started),
                timeout=self.resume_timeout,
                interval=0.02,
                what="writes resuming",
            )
            cycle.writes_resumed_s = time.monotonic() - started
        except AssertionError:
            pass

    def _leader(self, rng: random.Random) -> FaultBroker:
        return self.cluster.broker(self.cluster.leader_of(rng.randrange(self.workload.partitions)))

    # Each returns its heal; holding the fault is part of injecting it.
    def kill_leader(self, cycle: Cycle, rng: random.Random):
        victim = self._leader(rng)
        cycle.target = f"broker {victim.node_id}"
        victim.kill()
        self._await_writes(cycle, time.monotonic())
        return partial(victim.start, timeout=60)

    def kill_coordinator(self, cycle: Cycle, rng: random.Random):
        victim = self.cluster.broker(self.cluster.coordinator(cycle.client_notes))
        cycle.target = f"broker {victim.node_id}"
        victim.kill()
        self._await_writes(cycle, time.monotonic())
        return partial(victim.start, timeout=60)

    def kill_txn_coordinator(self, cycle: Cycle, rng: random.Random):
        """The broker leading the __transaction_state partition of one of the transactional
        producers: the new leader takes over its open transactions and markers in flight."""
        assert self.txns is not None, "kill-txn-coordinator needs the transactional workload"
        tid = rng.choice(self.txns.transactional_ids)
        victim = self.cluster.broker(self.cluster.txn_coordinator(tid))
        cycle.target = f"broker {victim.node_id} ({tid})"
        committed = self.txns.committed_count()
        victim.kill()
        self._await_writes(cycle, time.monotonic())
        try:  # transactions commit again while the victim is down
            txns = self.txns
            wait_for(lambda: txns.committed_count() > committed, timeout=self.resume_timeout, interval=0.05)
        except AssertionError:
            cycle.notes.append(f"no transaction committed for {self.resume_timeout:.0f} s after the kill")
        return partial(victim.start, timeout=60)

    def pause(self, cycle: Cycle, rng: random.Random):
        victim = self._leader(rng)
        self.pauses += 1
        # Every other pause outlasts the broker's etcd session: it wakes up deposed.
        held = self.cluster.session_s * (2.0 if self.pauses % 2 == 0 else 0.5)
        cycle.target = f"broker {victim.node_id} for {held:.1f} s"
        os.kill(victim.pid, signal.SIGSTOP)
        time.sleep(held)
        return partial(os.kill, victim.pid, signal.SIGCONT)

    def partition(self, cycle: Cycle, rng: random.Random):
        victim = self._leader(rng)
        held = self.cluster.session_s * 2 + 1
        cycle.target = f"broker {victim.node_id} for {held:.1f} s"
        others = [b.node_id for b in self.cluster.brokers if b is not victim]
        self.cluster.net.isolate(victim.node_id, [*others, ETCD])
        time.sleep(held)
        return self.cluster.net.heal

    def etcd_restart(self, cycle: Cycle, rng: random.Random):
        cycle.target = "etcd"
        self.cluster.etcd.crash()
        time.sleep(1.0 + rng.random())
        return self.cluster.etcd.relaunch

    def rolling_restart(self, cycle: Cycle, rng: random.Random):
        order = list(self.cluster.brokers)
        cycle.target = "brokers " + ", ".join(str(b.node_id) for b in order)
        for broker in order:
            self.cluster.wait_in_sync(timeout=180)
            broker.stop(timeout=60)
            broker.start(timeout=60)
        return lambda: None

    def unreplicated_tail(self, cycle: Cycle, rng: random.Random):
        """The negative control's fault: the followers of partition 0's leader are paused
        (shorter than their session, so they stay in the ISR), the leader takes a burst of
        writes and is killed, and a follower that never copied the burst takes over. With
        acks=all nothing was acknowledged meanwhile; with acks=1 the burst was."""
        victim = self.cluster.broker(self.cluster.leader_of(0))
        followers = [b for b in self.cluster.brokers if b is not victim]
        cycle.target = f"broker {victim.node_id}"
        for follower in followers:
            os.kill(follower.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)  # fetches in flight are answered (empty) before the burst
            before = len(self.workload.history.ack_times[0])
            wait_for(
                lambda: len(self.workload.history.ack_times[0]) > before + 20, timeout=2.5, interval=0.02
            )
        except AssertionError:
            cycle.notes.append("no burst acknowledged by the leader alone")
        finally:
            victim.kill()
            for follower in followers:
                os.kill(follower.pid, signal.SIGCONT)
        self._await_writes(cycle, time.monotonic())
        return partial(victim.start, timeout=60)


def summarize(cycles: list[Cycle]) -> dict:
    out: dict = {"cycles": len(cycles)}
    by_type: dict[str, list[Cycle]] = defaultdict(list)
    for cycle in cycles:
        by_type[cycle.fault].append(cycle)
    for name, runs in by_type.items():
        resumed = [c.writes_resumed_s for c in runs if c.writes_resumed_s is not None]
        recovered = [c.recovered_s for c in runs if c.recovered_s is not None]
        stalls = [c.write_stall_s for c in runs]
        out[f"{name}: cycles"] = len(runs)
        if resumed:
            out[f"{name}: writes resumed p50 / max (s)"] = (
                f"{statistics.median(resumed):.2f} / {max(resumed):.2f}"
            )
        out[f"{name}: writes never resumed"] = len(runs) - len(resumed)
        if recovered:
            out[f"{name}: full ISR after heal p50 / max (s)"] = (
                f"{statistics.median(recovered):.2f} / {max(recovered):.2f}"
            )
        out[f"{name}: longest write stall max (s)"] = f"{max(stalls):.2f}"
    return out


def run(
    root: Path,
    faults: list[str],
    *,
    settings: dict | None = None,
    partitions: int = 4,
    acks: str = "all",
    seed: int = 0,
    log=print,
    dump: Path | None = None,
    transactions: bool = False,
) -> tuple[dict, list[Cycle], History]:
    """A whole run: the cluster, the workload, ``faults`` in order, the final read and the
    verdict (``check``), with the cycles measured; ``dump``: a JSON file for the acknowledged
    writes, the final log and the cycles, to tell afterwards which record went where;
    ``transactions``: the transactional workload too (txn_workload.py), checked with the rest."""
    from tests.brokerd.replication.txn_workload import TxnWorkload, check_transactions

    rng = random.Random(seed)
    cluster = FaultCluster(root, settings=settings)
    try:
        cluster.start()
        cluster.create_topic(partitions)
        workload = Workload(cluster.bootstrap, partitions, acks=acks).start()
        txns = TxnWorkload(cluster, partitions=partitions, seed=seed).start() if transactions else None
        injector = Faults(cluster, workload, txns=txns)
        cycles = []
        try:
            wait_for(lambda: workload.writes_resumed(0.0), timeout=60, what="writes to every partition")
            wait_for(lambda: workload.history.offsets, timeout=60, what="the group committing")
            for name in faults:
                try:
                    cycle = injector.run(name, rng)
                except AssertionError as e:  # the cluster did not get back in time: a finding
                    cycle = Cycle(name, "?", notes=[f"cycle abandoned: {e}"])
                cycles.append(cycle)
                log(
                    f"{time.strftime('%H:%M:%S')} {len(cycles):3d} {cycle.fault:17s} {cycle.target:24s} "
                    f"resumed "
                    f"{_s(cycle.writes_resumed_s)} recovered {_s(cycle.recovered_s)} "
                    f"stall {cycle.write_stall_s:.2f}s {'; '.join(cycle.notes + cycle.client_notes)}"
                )
            try:
                cluster.wait_in_sync(timeout=180)
            except AssertionError as e:  # the final read still tells what survived
                cycles.append(Cycle("final", "", notes=[str(e)]))
        finally:
            workload.stop()
            if txns is not None:
                txns.stop()
        workload.read_back()
        if txns is not None:
            txns.read_back()
        if dump is not None:
            h = workload.history
            record = {"acked": h.acked, "failed": h.failed, "log": h.log, "cycles": [vars(c) for c in cycles]}
            dump.write_text(json.dumps(record))
        verdict = check(workload.history)
        if txns is not None:
            verdict.update(check_transactions(txns.history))
        verdict.update(summarize(cycles))
        verdict["commit errors"] = dict(workload.history.commit_errors)
        verdict["read-back client errors"] = dict(workload.history.read_errors)
        verdict["notes"] = [f"{c.fault} {c.target}: {n}" for c in cycles for n in c.notes]
        return verdict, cycles, workload.history
    finally:
        cluster.close()


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"
