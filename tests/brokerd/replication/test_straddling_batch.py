"""A follower whose log end falls inside one of the leader's batches has diverged from the
leader: in logs that agree, the follower's end is always a batch boundary of the leader's
log. The follower appends nothing of such an answer and truncates again, at the latest to
where the leader's batch begins, before it fetches anew; skipping the batch and appending
the ones after it would leave a hole in its log (a follower at 2021 took a batch 2019-2030
and appended from 2031).

Three brokers (``faultnet``). A stopped follower's log gets, through the storage API, a
batch of its own in the current leader epoch where the leader has one larger batch, so
OffsetForLeaderEpoch finds nothing to truncate and only the fetch answer shows the
divergence."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from brokerd.records import validate_and_stamp
from brokerd.storage import LogSettings, PartitionLog
from tests.brokerd.compaction_checks import build_batch, read_batches
from tests.brokerd.replication.clustertest import wait_for
from tests.brokerd.replication.fault_checker import FaultCluster

TOPIC = "straddle"
LEADER, FOLLOWER = 1, 3


def _produce(bootstrap: str, values: list[str], *, one_batch: bool) -> None:
    """acks=1: one batch per record, or all of ``values`` in one batch."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "log_level": 2,
                         "linger.ms": 1000 if one_batch else 0})  # fmt: skip
    failed: list[str] = []
    for value in values:
        producer.produce(TOPIC, value.encode(), partition=0,
                         on_delivery=lambda err, _msg: failed.append(str(err)) if err else None)  # fmt: skip
        if not one_batch:
            assert producer.flush(30) == 0
    assert producer.flush(30) == 0 and not failed, failed


def _batches(broker) -> list[tuple[int, int, bytes]]:
    """The stopped ``broker``'s log of partition 0: each batch's (base, last offset, bytes)."""
    plog = PartitionLog.open(TOPIC, 0, str(broker.data_dir / f"{TOPIC}-0"), LogSettings(), clean=False)
    try:
        out = []
        offset = plog.start_offset
        while offset < plog.next_offset:
            got = read_batches(plog.read(offset, 1 << 24, True))
            assert got, f"nothing readable at {offset} below the log end {plog.next_offset}"
            out.extend((b.base_offset, b.last_offset, bytes(b._buffer)) for b in got)
            offset = got[-1].last_offset + 1
        return out
    finally:
        plog.close()


def _append_own_batch(broker, values: list[bytes]) -> None:
    """Append to the stopped ``broker``'s log a batch in the leader epoch of its last batch."""
    plog = PartitionLog.open(TOPIC, 0, str(broker.data_dir / f"{TOPIC}-0"), LogSettings(), clean=False)
    try:
        last = plog.read(plog.next_offset - 1, 1 << 24, True)
        epoch = last[12:16]
        batch = build_batch([(None, v, 1000 + i) for i, v in enumerate(values)])
        batch[12:16] = epoch  # the partition leader epoch is outside the batch's CRC
        batches, count = validate_and_stamp(batch, plog.next_offset, 1 << 24)
        plog.append(batch, batches, count)
    finally:
        plog.close()
    (broker.data_dir / ".clean-shutdown").unlink(missing_ok=True)  # the broker recovers the log


def test_a_batch_straddling_the_followers_log_end_makes_it_truncate_and_copy_the_leaders_log(
    tmp_path: Path,
) -> None:
    cluster = FaultCluster(tmp_path)
    try:
        cluster.start()
        admin = cluster.admin()
        topic = NewTopic(TOPIC, 1, replica_assignment=[[LEADER, 2, FOLLOWER]])
        admin.create_topics([topic])[TOPIC].result(timeout=30)
        wait_for(lambda: 0 in cluster.partitions(TOPIC) and cluster.in_sync(), timeout=60,
                 what="the topic in sync")  # fmt: skip
        _produce(cluster.bootstrap, [f"single-{i}" for i in range(5)], one_batch=False)  # 0-4
        wait_for(cluster.in_sync, timeout=60, what="the first records replicated")
        follower = cluster.broker(FOLLOWER)
        follower.stop(timeout=60)
        _produce(cluster.bootstrap, [f"big-{i}" for i in range(10)], one_batch=True)  # 5-14
        _produce(cluster.bootstrap, [f"after-{i}" for i in range(3)], one_batch=False)  # 15-17
        # The follower's own 5-7 in the same leader epoch: its log end 8 is inside 5-14.
        _append_own_batch(follower, [b"own-0", b"own-1", b"own-2"])
        assert [(b, e) for b, e, _ in _batches(follower)][-1] == (5, 7)
        follower.start(timeout=60)
        wait_for(lambda: cluster.in_sync() and 0 in cluster.partitions(TOPIC), timeout=120,
                 what="the follower back in the ISR")  # fmt: skip
        leader = cluster.broker(LEADER)
        # the leader's log end is 18; the follower's reaches it too
        for broker in (leader, follower):
            broker.stop(timeout=60)
        leaders, followers = _batches(leader), _batches(follower)
        text = follower.log_text()
    finally:
        cluster.close()
    assert [(b, e) for b, e, _ in leaders] == [(i, i) for i in range(5)] + [(5, 14)] + [
        (i, i) for i in range(15, 18)
    ], leaders
    assert followers == leaders, [(b, e) for b, e, _ in followers]
    assert "straddles the log end 8" in text, text[-3000:]
