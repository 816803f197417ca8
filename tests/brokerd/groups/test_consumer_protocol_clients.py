"""confluent-kafka consumers with ``group.protocol=consumer`` against a real brokerd.

Several members split a topic's partitions (disjoint, covering all), rebalance incrementally as
members come and go (no member ever gives up a partition it keeps), survive a ``kill -9`` of a
member, and take over the committed offsets of a classic group; a classic group is upgraded to
the consumer protocol while it has members (a rolling upgrade), and downgraded back.
"""

from __future__ import annotations

import contextlib
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from brokerd.coordination.internal_topics import partition_for
from brokerd.groups.migration import parse_assignment, parse_subscription
from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.conftest import Broker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

SETTINGS = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 500,
    # a silent member leaves after 2 s; members heartbeat every 200 ms
    "group.consumer.session.timeout.ms": 2000,
    "group.consumer.heartbeat.interval.ms": 200,
}
PARTITIONS = 12


@pytest.fixture(scope="module")
def cbroker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("kip848"), settings=SETTINGS)
    b.start()
    yield b
    b.stop()


_topics = iter(range(1000))


def new_topic(b: Broker, partitions: int = PARTITIONS) -> str:
    name = f"cp-{next(_topics)}"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=5)[name].result(10)
    return name


def consumer_conf(b: Broker, group: str, **extra) -> dict:
    return {
        "bootstrap.servers": b.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
        "topic.metadata.refresh.interval.ms": 1000,
        **extra,
    }


class Member:
    """A consumer polled by its own thread; what it owns comes from its rebalance callbacks."""

    def __init__(self, b: Broker, group: str, topic: str, name: str, commit: bool = False, **extra) -> None:
        self.name = name
        self.commit = commit
        self.dirty = False
        #: (monotonic time, "assign" or "revoke", partitions), from the rebalance callbacks
        self.events: list[tuple[float, str, set[int]]] = []
        self.owned: set[int] = set()
        self.revoked: list[set[int]] = []
        self.errors: list = []
        self.messages: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self.consumer = Consumer(consumer_conf(b, group, **extra))
        self.consumer.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)
        self.thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self.thread.start()

    def _assign(self, _c, partitions) -> None:
        self.owned |= {p.partition for p in partitions}
        self.events.append((time.monotonic(), "assign", {p.partition for p in partitions}))

    def _revoke(self, _c, partitions) -> None:
        gone = {p.partition for p in partitions}
        self.events.append((time.monotonic(), "revoke", gone))
        self.revoked.append(gone)
        self.owned -= gone

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None:
                pass
            elif msg.error():
                self.errors.append(msg.error())
            else:
                self.messages.append((msg.partition(), msg.offset()))
                self.dirty = self.commit
            if self.dirty:
                # processed, then committed; a commit refused during a rebalance is retried (the
                # next owner may read a record again, never misses one)
                with contextlib.suppress(KafkaException):
                    self.consumer.commit(asynchronous=False)
                    self.dirty = False

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.thread.join(10)
        self.consumer.close()  # leaves the group (member epoch -1)


def describe(b: Broker, group: str):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    return admin.describe_consumer_groups([group])[group].result(10)


def wait_split(b: Broker, group: str, members: list[Member], partitions: int = PARTITIONS, timeout=30.0):
    """Until the group is Stable and the members' own views are disjoint and cover every partition."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        desc = describe(b, group)
        views = [set(m.owned) for m in members]
        owned = [p for v in views for p in v]
        last = (str(desc.state), len(desc.members), views)
        if (
            "STABLE" in str(desc.state)
            and len(desc.members) == len(members)
            and len(owned) == len(set(owned)) == partitions
        ):
            served = sorted(tp.partition for m in desc.members for tp in m.assignment.topic_partitions)
            assert served == list(range(partitions))
            return views
        time.sleep(0.1)
    raise AssertionError(f"group {group} did not settle: {last}")


def kept_untouched(
    before: dict[str, set[int]], after: dict[str, set[int]], members: list[Member], marks
) -> None:
    """No member revoked a partition it owned before and owns after the rebalance."""
    for m in members:
        kept = before[m.name] & after[m.name]
        for revoked in m.revoked[marks[m.name] :]:
            assert not revoked & kept, (m.name, revoked, kept)


def test_members_split_and_rebalance_incrementally(cbroker) -> None:
    topic, group = new_topic(cbroker), "cp-incremental"
    members: list[Member] = []
    try:
        for i in range(3):
            members.append(Member(cbroker, group, topic, f"m{i}"))
        views = wait_split(cbroker, group, members)
        assert sorted(len(v) for v in views) == [4, 4, 4]  # uniform: balanced
        desc = describe(cbroker, group)
        assert "CONSUMER" in str(desc.type)

        # a fourth member joins: each old member gives up one partition and keeps the rest
        before = {m.name: set(m.owned) for m in members}
        marks = {m.name: len(m.revoked) for m in members}
        members.append(Member(cbroker, group, topic, "m3"))
        views = wait_split(cbroker, group, members)
        assert sorted(len(v) for v in views) == [3, 3, 3, 3]
        after = {m.name: set(m.owned) for m in members}
        kept_untouched(before, after, members[:3], marks)
        for m in members[:3]:
            assert len(before[m.name] - after[m.name]) == 1

        # one leaves: the others only gain
        before = {m.name: set(m.owned) for m in members}
        marks = {m.name: len(m.revoked) for m in members}
        members.pop(0).close()
        wait_split(cbroker, group, members)
        for m in members:
            assert before[m.name] <= m.owned
            assert m.revoked[marks[m.name] :] == [] or all(not r for r in m.revoked[marks[m.name] :])
        assert not [e for m in members for e in m.errors if e.fatal()]
    finally:
        for m in members:
            m.close()


CRASHING_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "group.protocol": "consumer",
              "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]], on_assign=lambda _c, ps: print("assigned", len(ps), flush=True))
while True:
    c.poll(0.1)
"""


def test_group_survives_kill_9_of_a_member(cbroker) -> None:
    topic, group = new_topic(cbroker), "cp-crash"
    members = [Member(cbroker, group, topic, "a"), Member(cbroker, group, topic, "b")]
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_MEMBER, cbroker.bootstrap, group, topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            desc = describe(cbroker, group)
            owned = sorted(tp.partition for m in desc.members for tp in m.assignment.topic_partitions)
            if "STABLE" in str(desc.state) and len(desc.members) == 3 and owned == list(range(PARTITIONS)):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"three members never settled: {desc}")
        before = {m.name: set(m.owned) for m in members}
        marks = {m.name: len(m.revoked) for m in members}
        proc.send_signal(signal.SIGKILL)  # no leave: its session times out
        proc.wait(10)
        views = wait_split(cbroker, group, members)
        assert sorted(len(v) for v in views) == [6, 6]
        kept_untouched(before, {m.name: set(m.owned) for m in members}, members, marks)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        for m in members:
            m.close()


def test_consumer_protocol_takes_over_a_classic_groups_offsets(cbroker) -> None:
    topic, group = new_topic(cbroker, 2), "cp-takeover"
    producer = Producer({"bootstrap.servers": cbroker.bootstrap})
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode(), partition=i % 2)
    assert producer.flush(15) == 0
    classic = Consumer(
        {**consumer_conf(cbroker, group), "group.protocol": "classic", "enable.auto.commit": False}
    )
    classic.subscribe([topic])
    deadline = time.monotonic() + 30
    while not classic.assignment() and time.monotonic() < deadline:
        classic.poll(0.2)
    # the classic group commits 3 of partition 0 and 5 of partition 1 as processed
    committed = {0: 3, 1: 5}
    classic.commit(offsets=[TopicPartition(topic, p, o) for p, o in committed.items()], asynchronous=False)
    classic.close()

    member = Member(cbroker, group, topic, "new")
    try:
        deadline = time.monotonic() + 30
        while len(member.messages) < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
        first = {}
        for partition, offset in member.messages:
            first.setdefault(partition, offset)
        # it resumes where the classic group left off: nothing is read twice
        assert first == committed
        assert len(member.messages) == 12
        assert "CONSUMER" in str(describe(cbroker, group).type)
    finally:
        member.close()


def test_regex_subscription_follows_new_topics(cbroker) -> None:
    admin = AdminClient({"bootstrap.servers": cbroker.bootstrap})
    for name in ("rx-a", "rx-b", "rx-other"):
        admin.create_topics([NewTopic(name, 2, 1)], operation_timeout=5)[name].result(10)
    got: set[tuple[str, int]] = set()
    consumer = Consumer(consumer_conf(cbroker, "cp-regex"))
    # librdkafka sends the pattern to the broker, which resolves it (RE2) against the topics
    consumer.subscribe(
        ["^rx-[ab]$|^rx-new.*"], on_assign=lambda _c, ps: got.update((p.topic, p.partition) for p in ps)
    )
    try:
        deadline = time.monotonic() + 30
        while len(got) < 4 and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert got == {("rx-a", 0), ("rx-a", 1), ("rx-b", 0), ("rx-b", 1)}
        admin.create_topics([NewTopic("rx-new-1", 1, 1)], operation_timeout=5)["rx-new-1"].result(10)
        deadline = time.monotonic() + 30
        while ("rx-new-1", 0) not in got and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert ("rx-new-1", 0) in got  # a new matching topic joins the assignment
    finally:
        consumer.close()


def committed(b: Broker, group: str, topic: str, partitions: int) -> list[int]:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    wanted = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    answer = admin.list_consumer_group_offsets([wanted])[group].result(10)
    return [tp.offset for tp in sorted(answer.topic_partitions, key=lambda tp: tp.partition)]


CLASSIC = {"group.protocol": "classic", "heartbeat.interval.ms": 100, "session.timeout.ms": 6000}


def never_shared(members: list[Member]) -> None:
    """No partition was ever owned by two members at once (from each member's callbacks)."""
    events = sorted((t, m.name, kind, ps) for m in members for t, kind, ps in m.events)
    owner: dict[int, str] = {}
    for _t, name, kind, partitions in events:
        for p in partitions:
            if kind == "assign":
                assert owner.get(p, name) == name, (p, owner.get(p), name)
                owner[p] = name
            elif owner.get(p) == name:
                del owner[p]


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_rolling_upgrade_to_the_consumer_protocol_and_back(cbroker, strategy) -> None:
    """Classic consumers (eager, or cooperative: they name the partitions they keep when they
    rejoin) replaced one by one by consumer-protocol ones (the group converts while it has
    members, group.consumer.migration.policy=bidirectional, Kafka 4's default), then the
    reverse: the last consumer-protocol member leaving turns it back into a classic group."""
    partitions, group = 4, f"cp-rolling-{strategy}"
    topic = new_topic(cbroker, partitions)
    producer = Producer({"bootstrap.servers": cbroker.bootstrap, "linger.ms": 5})
    produced: set[tuple[int, int]] = set()

    def produce(n: int) -> None:
        for i in range(n):
            producer.produce(
                topic, value=b"x", partition=i % partitions,
                on_delivery=lambda err, msg: err or produced.add((msg.partition(), msg.offset())),
            )  # fmt: skip
        assert producer.flush(15) == 0

    def consumed(ms: list[Member]) -> set[tuple[int, int]]:
        return {rec for m in ms for rec in m.messages}

    def wait_for(what, timeout=30.0) -> None:
        deadline = time.monotonic() + timeout
        while not what() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert what()

    produce(40)
    first = set(produced)
    everyone: list[Member] = []

    def member(name: str, **extra) -> Member:
        m = Member(cbroker, group, topic, name, **{"enable.auto.commit": False, **extra}, commit=True)
        everyone.append(m)
        return m

    try:
        classic = {**CLASSIC, "partition.assignment.strategy": strategy}
        k1 = member("k1", **classic, **{"client.id": "k1"})
        k2 = member("k2", **classic, **{"client.id": "k2"})
        wait_split(cbroker, group, [k1, k2], partitions)
        wait_for(
            lambda: first <= consumed([k1, k2]) and committed(cbroker, group, topic, partitions) == [10] * 4
        )
        assert "CLASSIC" in str(describe(cbroker, group).type)

        started = time.monotonic()
        c1 = member("c1")  # the group converts, the classic members stay in it
        k1_view, k2_view, _ = wait_split(cbroker, group, [k1, k2, c1], partitions)
        assert "CONSUMER" in str(describe(cbroker, group).type)
        # DescribeGroups (the classic API) shows each classic member with the subscription bytes
        # it joined with (librdkafka's, newer than the v0 a topic list makes) and its partitions
        with Wire(cbroker.port) as wire:
            describe_groups = request_class(15, 5)(groups=(group,), include_authorized_operations=False)
            (described,) = wire.request(describe_groups).groups
        kept = {m.client_id: m for m in described.members}
        for name, view in (("k1", k1_view), ("k2", k2_view)):
            metadata = kept[name].member_metadata
            assert struct.unpack(">h", metadata[:2])[0] >= 1
            assert parse_subscription(metadata).topics == [topic]
            assert set(parse_assignment(kept[name].member_assignment).get(topic, [])) == view
        produce(20)
        k1.close()
        wait_split(cbroker, group, [k2, c1], partitions)
        c2 = member("c2")
        wait_split(cbroker, group, [k2, c1, c2], partitions)
        k2.close()
        wait_split(cbroker, group, [c1, c2], partitions)
        upgrade_s = time.monotonic() - started
        produce(20)
        wait_for(lambda: produced <= consumed(everyone))
        # the consumer-protocol members resumed from the classic group's commits
        assert not first & consumed([c1, c2])

        # and back: a classic member joins, the consumer-protocol members leave
        k3 = member("k3", **classic)
        wait_split(cbroker, group, [c1, c2, k3], partitions)
        c1.close()
        wait_split(cbroker, group, [c2, k3], partitions)
        c2.close()
        views = wait_split(cbroker, group, [k3], partitions)
        assert views == [set(range(partitions))]
        assert "CLASSIC" in str(describe(cbroker, group).type)
        produce(20)
        wait_for(lambda: produced <= consumed(everyone))  # no record lost on the way
        never_shared(everyone)
        assert not [e for m in everyone for e in m.errors if e.fatal()]
        print(f"rolling upgrade of 2 classic members ({strategy}): {upgrade_s:.1f} s")
    finally:
        for m in everyone:
            m.close()


def epochs(b: Broker, group: str) -> tuple[int, dict[str, tuple[int, list[int]]]]:
    """(group epoch, member id -> (member epoch, assigned partitions)) from ConsumerGroupDescribe
    (waiting while the coordinator loads)."""
    deadline = time.monotonic() + 20
    while True:
        with Wire(b.port) as wire:
            answer = wire.request(
                request_class(69, 0)(group_ids=(group,), include_authorized_operations=False)
            )
        [g] = answer.groups
        if g.error_code not in (14, 15) or time.monotonic() > deadline:  # loading, not available
            break
        time.sleep(0.1)
    assert g.error_code == 0, g.error_message
    members = {
        m.member_id: (m.member_epoch, sorted(p for t in m.assignment.topic_partitions for p in t.partitions))
        for m in g.members
    }
    return g.group_epoch, members


def test_member_epochs_survive_a_coordinator_restart(tmp_path) -> None:
    """The coordinator rebuilds the group from Kafka's consumer group records after a kill -9:
    the members carry on at their epochs, nobody is fenced, nobody gives up a partition."""
    b = Broker(tmp_path / "b", settings={**SETTINGS, "group.consumer.session.timeout.ms": 15000})
    b.start()
    members: list[Member] = []
    try:
        topic, group = new_topic(b, 4), "cp-restart"
        members = [Member(b, group, topic, "a"), Member(b, group, topic, "b")]
        wait_split(b, group, members, 4)
        before = epochs(b, group)
        marks = [len(m.revoked) for m in members]
        b.restart(crash=True)
        assert epochs(b, group) == before  # as loaded, before any member heartbeats again
        time.sleep(1.0)  # a few heartbeats at their old epochs
        views = wait_split(b, group, members, 4)
        assert epochs(b, group) == before
        assert [m.revoked[n:] for m, n in zip(members, marks, strict=True)] == [[], []]
        assert sorted(p for v in views for p in v) == [0, 1, 2, 3]
        assert not [e for m in members for e in m.errors if e.fatal()]
        # what the coordinator read back: Kafka's consumer group record types in the group's
        # partition of __consumer_offsets
        reader = Consumer(
            {"bootstrap.servers": b.bootstrap, "group.id": "reader", "enable.auto.commit": False}
        )
        reader.assign([TopicPartition("__consumer_offsets", partition_for(group, 50), 0)])
        kinds: set[int] = set()
        deadline = time.monotonic() + 20
        while not {3, 4, 5, 6, 7, 8} <= kinds and time.monotonic() < deadline:
            message = reader.poll(0.2)
            if message is not None and message.error() is None and message.value() is not None:
                kinds.add(struct.unpack_from(">h", message.key())[0])
        reader.close()
        assert {3, 4, 5, 6, 7, 8} <= kinds and 32767 not in kinds, kinds
    finally:
        for m in members:
            m.close()
        b.stop()
