"""Consumer groups and idempotent producers against a real brokerd, with real clients.

confluent-kafka (librdkafka), aiokafka and kafka-python: partitions split across members,
rebalances on join / leave / crash, resume from committed offsets (also across a broker
kill -9), static membership, cooperative-sticky, and idempotent retries after a dropped
connection (the ``test.fault.produce.drop.after.append`` hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

GROUP_SETTINGS = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 500,
}
# librdkafka: fast heartbeats and a short session so that a crash is noticed in ~1.5 s.
FAST_CONSUMER = {
    "session.timeout.ms": 1500,
    "heartbeat.interval.ms": 100,
    "fetch.wait.max.ms": 50,
    "topic.metadata.refresh.interval.ms": 1000,
    "auto.offset.reset": "earliest",
}


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(settings=GROUP_SETTINGS)


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=5)[name].result(10)


def produce(bootstrap: str, topic: str, values: list[str], partitions: int = 6, **conf) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    errors: list = []
    for i, value in enumerate(values):
        producer.produce(
            topic,
            value=value.encode(),
            partition=i % partitions,
            on_delivery=lambda err, _m: err and errors.append(err),
        )
    assert producer.flush(15) == 0
    assert not errors, errors


def describe(bootstrap: str, group: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(10)


def wait_split(bootstrap: str, group: str, members: int, partitions: int = 6, timeout: float = 20.0):
    """Wait until the group is stable with ``members`` members owning disjoint partitions that cover all."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        desc = describe(bootstrap, group)
        owned = [(tp.topic, tp.partition) for m in desc.members for tp in m.assignment.topic_partitions]
        last = (str(desc.state), len(desc.members), sorted(owned))
        if (
            "STABLE" in str(desc.state)
            and len(desc.members) == members
            and len(owned) == len(set(owned)) == partitions
            and all(m.assignment.topic_partitions for m in desc.members[:partitions])
        ):
            return desc
        time.sleep(0.1)
    raise AssertionError(f"group {group} did not settle on {members} members: {last}")


class ConfluentMember(threading.Thread):
    """A librdkafka consumer polled in its own thread; records what it consumed."""

    def __init__(self, bootstrap: str, group: str, topic: str, **conf) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **FAST_CONSUMER, **conf})
        self.consumer.subscribe([topic], on_assign=self._on_assign)
        self.values: list[str] = []
        self.assigns = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.start()

    def _on_assign(self, consumer, partitions) -> None:
        self.assigns += 1

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                msg = self.consumer.poll(0.05)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                self.values.append(msg.value().decode())
        except BaseException as exc:
            self.error = exc

    def stop(self, *, close: bool = True) -> None:
        self.halt.set()
        self.join(10)
        if close:
            self.consumer.close()
        assert self.error is None, self.error


CRASHING_CONSUMER = """
import sys
from confluent_kafka import Consumer
conf = dict(arg.split("=", 1) for arg in sys.argv[1:])
topic = conf.pop("topic")
c = Consumer(conf)
c.subscribe([topic])
while True:
    c.poll(0.05)
"""


def spawn_consumer(bootstrap: str, group: str, topic: str) -> subprocess.Popen:
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": "false", **FAST_CONSUMER}
    args = [f"{k}={v}" for k, v in conf.items()] + [f"topic={topic}"]
    return subprocess.Popen([sys.executable, "-c", CRASHING_CONSUMER, *args], stdout=subprocess.DEVNULL)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets, read by a consumer that does not join the group."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return [
            tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        ]
    finally:
        c.close()


def wait_consumed(members, expected: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {v for m in members for v in m.values}
        if expected <= seen:
            return
        time.sleep(0.05)
    seen = {v for m in members for v in m.values}
    raise AssertionError(f"{len(expected - seen)} records were never consumed")


# --- librdkafka -------------------------------------------------------------------------------


def test_confluent_group_rebalances_on_join_leave_and_crash(gbroker):
    bootstrap = gbroker.bootstrap
    create_topic(bootstrap, "orders", 6)
    first = [f"a{i}" for i in range(120)]
    produce(bootstrap, "orders", first)

    # Three members (one of them a separate process that will be killed) split six partitions.
    c1 = ConfluentMember(bootstrap, "g", "orders", **{"auto.commit.interval.ms": 100})
    c2 = ConfluentMember(bootstrap, "g", "orders", **{"auto.commit.interval.ms": 100})
    crash = spawn_consumer(bootstrap, "g", "orders")
    try:
        wait_split(bootstrap, "g", 3)
        # A fourth member joins.
        c4 = ConfluentMember(bootstrap, "g", "orders", **{"auto.commit.interval.ms": 100})
        wait_split(bootstrap, "g", 4)
        # One leaves cleanly (LeaveGroup).
        c2.stop()
        wait_split(bootstrap, "g", 3)
        # One is killed: its session times out.
        crash.send_signal(signal.SIGKILL)
        crash.wait()
        started = time.monotonic()
        wait_split(bootstrap, "g", 2)
        assert time.monotonic() - started < 10
        # Every record is consumed by the survivors, including those the killed member had
        # received (it never committed), and those produced after the rebalances.
        second = [f"b{i}" for i in range(60)]
        produce(bootstrap, "orders", second)
        wait_consumed([c1, c2, c4], set(first) | set(second))
        # Commits reached the coordinator: each partition's committed offset is its end.
        c1.stop()
        c4.stop()
        assert sum(committed_offsets(bootstrap, "g", "orders", 6)) == len(first) + len(second)
    finally:
        if crash.poll() is None:
            crash.kill()
            crash.wait()

    # Lag and group metrics on /metrics.
    with urllib.request.urlopen(f"{gbroker.admin_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'kastle_consumer_group_lag{group="g",partition="0",topic="orders"} 0.0' in text
    assert 'kastle_consumer_groups{state="Empty"}' in text


def test_confluent_resume_from_committed_offsets_across_broker_kill(gbroker):
    bootstrap = gbroker.bootstrap
    create_topic(bootstrap, "events", 6)
    produce(bootstrap, "events", [f"x{i}" for i in range(60)])

    def consume_some(n: int) -> list[str]:
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "resume",
                "enable.auto.commit": False,
                **FAST_CONSUMER,
            }
        )
        c.subscribe(["events"])
        got: list[str] = []
        deadline = time.monotonic() + 20
        try:
            while len(got) < n and time.monotonic() < deadline:
                msg = c.poll(0.1)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                got.append(msg.value().decode())
                c.commit(message=msg, asynchronous=False)
        finally:
            c.close()
        return got

    first = consume_some(60)
    assert sorted(first) == sorted(f"x{i}" for i in range(60))
    produce(bootstrap, "events", [f"y{i}" for i in range(30)])
    # A restarted consumer resumes where the group committed: only the new records.
    assert sorted(consume_some(30)) == sorted(f"y{i}" for i in range(30))
    produce(bootstrap, "events", [f"z{i}" for i in range(30)])
    gbroker.restart(crash=True)  # kill -9
    assert sorted(consume_some(30)) == sorted(f"z{i}" for i in range(30))
    desc = describe(bootstrap, "resume")
    assert str(desc.state).endswith("EMPTY")


def test_confluent_static_members_rejoin_without_rebalance(gbroker):
    bootstrap = gbroker.bootstrap
    create_topic(bootstrap, "static", 6)
    conf = {"session.timeout.ms": 6000}
    a = ConfluentMember(bootstrap, "sg", "static", **{"group.instance.id": "instance-a", **conf})
    b = ConfluentMember(bootstrap, "sg", "static", **{"group.instance.id": "instance-b", **conf})
    try:
        before = wait_split(bootstrap, "sg", 2)
        owned_b = sorted(
            tp.partition
            for m in before.members
            if m.group_instance_id == "instance-b"
            for tp in m.assignment.topic_partitions
        )
        assigns_a = a.assigns
        rebalances = gbroker.log_text().count("preparing to rebalance")
        # instance-b restarts (a static member sends no LeaveGroup) and comes back in time.
        b.stop()
        b = ConfluentMember(bootstrap, "sg", "static", **{"group.instance.id": "instance-b", **conf})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b.assigns == 0:
            time.sleep(0.05)
        assert b.assigns == 1
        after = wait_split(bootstrap, "sg", 2)
        assert (
            sorted(
                tp.partition
                for m in after.members
                if m.group_instance_id == "instance-b"
                for tp in m.assignment.topic_partitions
            )
            == owned_b
        )
        time.sleep(0.5)
        assert a.assigns == assigns_a  # no rebalance reached the other member
        assert gbroker.log_text().count("preparing to rebalance") == rebalances
        assert "static member instance-b rejoins" in gbroker.log_text()
    finally:
        a.stop()
        b.stop()


def test_confluent_cooperative_sticky(gbroker):
    bootstrap = gbroker.bootstrap
    create_topic(bootstrap, "coop", 6)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    members = [ConfluentMember(bootstrap, "cg", "coop", **conf) for _ in range(2)]
    try:
        first = wait_split(bootstrap, "cg", 2)
        before = {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in first.members}
        members.append(ConfluentMember(bootstrap, "cg", "coop", **conf))
        second = wait_split(bootstrap, "cg", 3)
        after = {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in second.members}
        # Sticky: the original members kept a subset of what they had.
        for member_id, parts in before.items():
            assert after[member_id] <= parts
        assert describe(bootstrap, "cg").partition_assignor == "cooperative-sticky"
    finally:
        for m in members:
            m.stop()


def test_idempotent_producer_retries_after_dropped_connection(broker_factory):
    b = broker_factory(settings={**GROUP_SETTINGS, "test.fault.produce.drop.after.append": 4})
    create_topic(b.bootstrap, "idem", 1)
    producer = Producer(
        {
            "bootstrap.servers": b.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 10,
            "retry.backoff.ms": 20,
        }
    )
    errors: list = []
    n = 300
    for i in range(n):
        producer.produce(
            "idem", value=str(i).encode(), partition=0, on_delivery=lambda err, _m: err and errors.append(err)
        )
        if i % 25 == 0:
            producer.poll(0.01)
    assert producer.flush(30) == 0
    assert not errors, errors
    assert "TEST FAULT" in b.log_text()
    consumer = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    consumer.assign([TopicPartition("idem", 0, 0)])
    values: list[int] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(values) >= n:
                    break
                continue
            assert not msg.error(), msg.error()
            values.append(int(msg.value()))
    finally:
        consumer.close()
    assert values == list(range(n))  # each record exactly once, in order


# --- aiokafka ---------------------------------------------------------------------------------


def test_aiokafka_group_split_rebalance_and_commit(gbroker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = gbroker.bootstrap
    create_topic(bootstrap, "aio", 6)

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(60):
                await producer.send("aio", f"m{i}".encode(), partition=i % 6)
            await producer.flush()
        finally:
            await producer.stop()

        def member():
            return AIOKafkaConsumer(
                "aio",
                bootstrap_servers=bootstrap,
                group_id="ag",
                auto_offset_reset="earliest",
                session_timeout_ms=3000,
                heartbeat_interval_ms=100,
                enable_auto_commit=False,
            )

        consumers = [member() for _ in range(3)]
        await asyncio.gather(*(c.start() for c in consumers))
        stop = asyncio.Event()
        seen: set[str] = set()

        async def drain(c):
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=50)
                for records in batch.values():
                    seen.update(r.value.decode() for r in records)
                if batch:
                    with contextlib.suppress(Exception):  # a rebalance may interrupt a commit
                        await c.commit()

        tasks = [asyncio.ensure_future(drain(c)) for c in consumers]
        try:
            await asyncio.to_thread(wait_split, bootstrap, "ag", 3)
            fourth = member()
            await fourth.start()
            consumers.append(fourth)
            tasks.append(asyncio.ensure_future(drain(fourth)))
            await asyncio.to_thread(wait_split, bootstrap, "ag", 4)
            leaving = consumers.pop(0)
            stop_one = tasks.pop(0)
            stop_one.cancel()
            await leaving.stop()
            await asyncio.to_thread(wait_split, bootstrap, "ag", 3)
            deadline = time.monotonic() + 20
            while len(seen) < 60 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert seen == {f"m{i}" for i in range(60)}
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(c.stop() for c in consumers))

    asyncio.run(main())
    # Committed offsets cover everything (read back with another client).
    assert committed_offsets(bootstrap, "ag", "aio", 6) == [10] * 6


# --- kafka-python -----------------------------------------------------------------------------


class KafkaPythonMember(threading.Thread):
    """A kafka-python consumer created, polled and closed by its own thread (it is not thread-safe)."""

    def __init__(self, bootstrap: str, group: str, topic: str, seen: set[str]) -> None:
        super().__init__(daemon=True)
        self.args = (bootstrap, group, topic)
        self.seen = seen
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        from kafka import KafkaConsumer

        bootstrap, group, topic = self.args
        try:
            c = KafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=group,
                auto_offset_reset="earliest",
                session_timeout_ms=3000,
                heartbeat_interval_ms=100,
                enable_auto_commit=False,
            )
            try:
                while not self.halt.is_set():
                    # A long poll: kafka-python 3.0 can lose a SyncGroup response that arrives
                    # after a short poll() returned, leaving the member silent until it expires.
                    batch = c.poll(timeout_ms=1000, max_records=100)
                    for records in batch.values():
                        self.seen.update(r.value.decode() for r in records)
                    if batch:
                        with contextlib.suppress(Exception):  # a rebalance may interrupt a commit
                            c.commit()
            finally:
                c.close()  # LeaveGroup
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(15)
        assert self.error is None, self.error


def test_kafka_python_group_split_rebalance_and_resume(gbroker):
    bootstrap = gbroker.bootstrap
    create_topic(bootstrap, "kp", 6)
    produce(bootstrap, "kp", [f"k{i}" for i in range(60)])
    seen: set[str] = set()
    members = [KafkaPythonMember(bootstrap, "kg", "kp", seen) for _ in range(3)]
    try:
        wait_split(bootstrap, "kg", 3)
        members.append(KafkaPythonMember(bootstrap, "kg", "kp", seen))
        wait_split(bootstrap, "kg", 4)
        deadline = time.monotonic() + 20
        while len(seen) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == {f"k{i}" for i in range(60)}
        members.pop().stop()  # leaves the group
        wait_split(bootstrap, "kg", 3)
    finally:
        for m in members:
            m.stop()
    # A new member resumes from the committed offsets: nothing old is delivered again.
    produce(bootstrap, "kp", [f"n{i}" for i in range(12)])
    fresh: set[str] = set()
    m = KafkaPythonMember(bootstrap, "kg", "kp", fresh)
    deadline = time.monotonic() + 20
    try:
        while len(fresh) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        m.stop()
    assert fresh == {f"n{i}" for i in range(12)}
