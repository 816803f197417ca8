"""The fault checker's transactional workload (tests/brokerd/replication/fault_checker.py).

Transactional producers (confluent-kafka, one transactional id each) run transactions the whole
time on a topic of their own (replication factor 3, ``min.insync.replicas`` 2): each transaction
writes one record to each of three partitions, so its markers go to partitions led by different
brokers, and is committed, or aborted (one in four, decided before it starts). The history holds
what each transaction wrote and what its producer was told: commit acknowledged, abort
acknowledged, or unknown (an error; the producer is replaced, which fences the old one and ends
what it left open).

After the run the topic is read to its end twice: with ``read_committed`` once every last
stable offset caught up with its high watermark (no transaction left open), and with
``read_uncommitted``. The checks:

- no committed transaction partly visible: under read_committed a transaction's records are all
  there or none is (whatever its producer was told);
- no aborted record visible: no record of a transaction whose abort was acknowledged is read
  with read_committed;
- no lost commit: every record of a transaction whose commit was acknowledged is read with
  read_committed;
- no record twice, and read_committed sees a subset of read_uncommitted, in the same order.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from tests.brokerd.replication.clustertest import wait_for

TOPIC = "jepsen-txn"
PER_TXN = 3
ABORT_ONE_IN = 4
TXN_TIMEOUT_MS = 10_000


@dataclass
class TxnHistory:
    written: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # txn -> (partition, value)
    committed: set[str] = field(default_factory=set)  # commit acknowledged
    aborted: set[str] = field(default_factory=set)  # abort acknowledged
    unknown: set[str] = field(default_factory=set)  # the producer got an error
    errors: Counter = field(default_factory=Counter)
    read_committed: dict[int, list[str]] = field(default_factory=dict)
    read_uncommitted: dict[int, list[str]] = field(default_factory=dict)
    open_at_end: list[str] = field(default_factory=list)  # partitions whose LSO stayed behind


class TxnWorkload:
    def __init__(self, cluster, *, partitions: int = 4, producers: int = 2, seed: int = 0) -> None:
        self.cluster = cluster
        self.bootstrap = cluster.bootstrap
        self.partitions = partitions
        self.producers = producers
        self.history = TxnHistory()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> TxnWorkload:
        topic = NewTopic(TOPIC, self.partitions, replication_factor=3, config={"min.insync.replicas": "2"})
        self.cluster.admin().create_topics([topic])[TOPIC].result(timeout=30)
        wait_for(lambda: len(self.cluster.partitions(TOPIC)) == self.partitions, timeout=60, what=TOPIC)
        for index in range(self.producers):
            seed = self._rng.random()
            t = threading.Thread(target=self._run, args=(index, seed), name=f"txn-{index}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)

    def committed_count(self) -> int:
        return len(self.history.committed)

    @property
    def transactional_ids(self) -> list[str]:
        return [f"jepsen-txn-{index}" for index in range(self.producers)]

    # --- the producers ----------------------------------------------------------------------
    def _producer(self, index: int) -> Producer | None:
        producer = Producer({
            "bootstrap.servers": self.bootstrap, "transactional.id": self.transactional_ids[index],
            "transaction.timeout.ms": TXN_TIMEOUT_MS, "linger.ms": 5, "log_level": 2,
        })  # fmt: skip
        while not self._stop.is_set():
            try:
                producer.init_transactions(30)
                return producer
            except KafkaException as exc:
                self._note(exc)
                if not exc.args[0].retriable():
                    return None
        return None

    def _run(self, index: int, seed: float) -> None:
        rng = random.Random(seed)
        producer = None
        n = 0
        while not self._stop.is_set():
            if producer is None:
                producer = self._producer(index)
                if producer is None:
                    time.sleep(0.5)
                    continue
            n += 1
            txn = f"t{index}-{n}"
            records = [(p, f"{txn}-{p}") for p in sorted(rng.sample(range(self.partitions), PER_TXN))]
            abort = rng.randrange(ABORT_ONE_IN) == 0
            with self._lock:
                self.history.written[txn] = records
            try:
                producer.begin_transaction()
                for p, value in records:
                    producer.produce(TOPIC, value=value.encode(), partition=p)
                if abort:
                    producer.flush(30)
                    producer.abort_transaction(30)
                else:
                    producer.commit_transaction(30)
            except KafkaException as exc:
                self._note(exc)
                with self._lock:
                    self.history.unknown.add(txn)
                producer = None  # the next one fences it and ends what it left open
                continue
            with self._lock:
                (self.history.aborted if abort else self.history.committed).add(txn)

    def _note(self, exc: KafkaException) -> None:
        with self._lock:
            self.history.errors[exc.args[0].name()] += 1

    # --- the final reads ----------------------------------------------------------------------
    def read_back(self, timeout: float = 90) -> None:
        """Both isolation levels, every partition from offset 0 to its end, once every
        partition's last stable offset reached its high watermark (or ``timeout``)."""
        committed = self._consumer("read_committed")
        uncommitted = self._consumer("read_uncommitted")
        try:
            ends: dict[int, int] = {}
            deadline = time.monotonic() + timeout
            for p in range(self.partitions):
                tp = TopicPartition(TOPIC, p)
                while True:
                    try:
                        lso = committed.get_watermark_offsets(tp, timeout=10)[1]
                        high = uncommitted.get_watermark_offsets(tp, timeout=10)[1]
                    except KafkaException:
                        lso, high = -1, -2
                    if lso == high or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                if lso != high:
                    self.history.open_at_end.append(f"{TOPIC}-{p}: LSO {lso} < high watermark {high}")
                ends[p] = max(lso, 0)
                self.history.read_committed[p] = _read(committed, p, ends[p])
                self.history.read_uncommitted[p] = _read(uncommitted, p, max(high, 0))
        finally:
            committed.close()
            uncommitted.close()

    def _consumer(self, isolation: str) -> Consumer:
        return Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"jepsen-txn-{isolation}", "log_level": 2,
            "isolation.level": isolation, "enable.auto.commit": False, "enable.partition.eof": True,
        })  # fmt: skip


def _read(consumer: Consumer, partition: int, end: int, timeout: float = 60) -> list[str]:
    """The values of one partition up to its end (what the consumer's isolation level shows)."""
    consumer.assign([TopicPartition(TOPIC, partition, 0)])
    values: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                if m.offset() >= end:
                    break
                continue
            raise KafkaException(m.error())
        values.append(m.value().decode())
    return values


def check_transactions(history: TxnHistory) -> dict:
    visible: dict[str, set[str]] = defaultdict(set)  # txn -> its values read_committed shows
    problems: list[str] = []
    seen = Counter(v for values in history.read_committed.values() for v in values)
    for value in seen:
        visible[value.rsplit("-", 1)[0]].add(value)
    partial, lost, aborted_visible = [], [], []
    for txn, records in history.written.items():
        wanted = {v for _p, v in records}
        got = visible.get(txn, set())
        if got and got != wanted:
            partial.append(txn)
        if txn in history.committed and got != wanted:
            lost.append(txn)
        if txn in history.aborted and got:
            aborted_visible.append(txn)
    duplicated = [v for v, n in seen.items() if n > 1]
    for p, values in history.read_committed.items():
        everything = history.read_uncommitted.get(p, [])
        it = iter(everything)
        if not all(v in it for v in values):  # a subsequence, in order
            problems.append(f"{TOPIC}-{p}: read_committed is not a subsequence of read_uncommitted")
    unknown_outcomes = Counter("committed" if visible.get(t) else "aborted" for t in history.unknown)
    return {
        "transactions": len(history.written),
        "transactions committed (acknowledged)": len(history.committed),
        "transactions aborted (acknowledged)": len(history.aborted),
        "transactions of unknown outcome": dict(unknown_outcomes),
        "committed partly visible": len(partial),
        "committed partly visible examples": partial[:5],
        "aborted visible": len(aborted_visible),
        "aborted visible examples": aborted_visible[:5],
        "lost commits": len(lost),
        "lost commits examples": lost[:5],
        "transactional records twice": len(duplicated),
        "transaction problems": problems + history.open_at_end,
        "transactional producer errors": dict(history.errors),
    }
