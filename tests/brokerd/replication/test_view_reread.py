"""A broker's view of the metadata after its etcd watch broke: the full read that follows is
handed to the listeners as a caught-up view. The replica manager skips a view that is not
caught up, and that read may be the only news of a leadership the broker took while its
watch was down; a leader that missed it served produce without recording where its leader
epoch began, and its OffsetForLeaderEpoch answers let the former leader keep a diverging
tail (acknowledged records lost in a fault-checker run)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from brokerd.coordination import etcd as e
from brokerd.coordination import view as view_module
from brokerd.coordination.etcd import Etcd
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import IsrMember, PartitionState
from brokerd.coordination.view import ClusterState, ClusterView
from tests.etcd_server import EtcdServer


def _state(topic_id: str, leader: int, leader_epoch: int) -> PartitionState:
    return PartitionState(
        topic_id=topic_id,
        replicas=(1, 2, 3),
        leader=leader,
        leader_epoch=leader_epoch,
        isr=tuple(IsrMember(r, 10 + r) for r in (leader, 3)),
        partition_epoch=leader_epoch,
    )


def test_a_leadership_read_after_a_broken_watch_reaches_the_listeners_caught_up(
    etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the read after a broken watch waits long enough that the change lands before it
    monkeypatch.setattr(view_module, "RETRY_SECONDS", 2.0)
    keys = Keys(f"/view-reread/{uuid.uuid4().hex}/")
    key = keys.partition("jepsen", 0)
    topic_id = str(uuid.uuid4())

    async def body() -> None:
        writer = Etcd([etcd_server.endpoint])
        await writer.txn([], [e.put(key, _state(topic_id, 1, 2).to_bytes())])
        etcd = Etcd([etcd_server.endpoint])
        view = ClusterView(etcd, keys)
        heard: list[tuple[bool, int | None]] = []

        def listener(state: ClusterState) -> None:
            partition = state.partitions.get(("jepsen", 0))
            heard.append((view.caught_up.is_set(), partition.leader_epoch if partition else None))

        view.listeners.append(listener)
        view.start()
        try:
            await asyncio.wait_for(view.caught_up.wait(), 10)
            assert view.state.partitions[("jepsen", 0)].leader == 1
            await etcd._drop(rotate=False)  # the broker's connection to etcd breaks
            for _ in range(200):
                if not view.caught_up.is_set():
                    break
                await asyncio.sleep(0.05)
            assert not view.caught_up.is_set(), "the watch did not notice its channel closed"
            # the controller moves the leadership while this broker's watch is down
            await writer.txn([], [e.put(key, _state(topic_id, 2, 3).to_bytes())])
            await view.wait_until(lambda s: s.partitions[("jepsen", 0)].leader_epoch == 3, timeout=20)
            assert view.caught_up.is_set()
            assert (True, 3) in heard, heard
        finally:
            await view.stop()
            await etcd.close()
            await writer.close()

    asyncio.run(body())
