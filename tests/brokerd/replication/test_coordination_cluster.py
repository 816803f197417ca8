"""Brokers forming a cluster on a real etcd: registrations and broker epochs, the controller
election and its fencing, topics and partition state changed only by compare-and-set, and
the controller moving leaderships when a broker's lease expires."""

from __future__ import annotations

import asyncio

import pytest

from brokerd.coordination import etcd as e
from brokerd.coordination.controller import Controller, NotControllerError
from brokerd.coordination.metadata import TopicExistsError
from brokerd.coordination.partitions import alter_isr
from brokerd.coordination.records import NO_LEADER, IsrMember
from tests.brokerd.replication.coordtest import (
    Node,
    assert_leaderships_moved,
    controller_of,
    start_nodes,
    stop_all,
)
from tests.etcd_server import EtcdServer


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_brokers_register_with_increasing_epochs_and_one_controller(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2, 3])
        try:
            state = await nodes[0].until(lambda s: len(s.brokers) == 3 and s.controller is not None)
            epochs = [state.brokers[i].epoch for i in (1, 2, 3)]
            assert epochs == sorted(epochs) and len(set(epochs)) == 3
            assert [n.session.epoch for n in nodes] == epochs
            assert state.cluster_id
            await asyncio.sleep(0.5)
            assert sum(n.controller.active for n in nodes) == 1
            assert state.controller.node_id == controller_of(nodes).session.node_id
            # every node's view agrees
            for node in nodes:
                assert node.view.state.controller == state.controller
        finally:
            await stop_all(nodes)

    run(body())


def test_a_restarted_broker_takes_its_id_over_with_a_new_epoch_and_fences_the_old(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        [first] = await start_nodes(etcd_server, etcd_prefix, [1], ttl=30)
        old_epoch = first.session.epoch
        await first.until(lambda s: s.controller is not None)
        await first.crash()  # its lease (30 s) is still running
        [second] = await start_nodes(etcd_server, etcd_prefix, [1], ttl=30)
        try:
            assert second.session.epoch > old_epoch
            # The old process's controller key went with its registration; the new one campaigns.
            state = await second.until(
                lambda s: s.controller is not None and s.controller.broker_epoch == second.session.epoch
            )
            assert state.brokers[1].epoch == second.session.epoch
            # A write fenced by the old broker epoch is refused.
            result = await second.etcd.txn(
                [e.created_at(second.keys.broker(1), old_epoch)], [e.put(second.keys.prefix + b"x", b"1")]
            )
            assert not result.succeeded
        finally:
            await second.stop()

    run(body())


def test_a_deposed_controller_cannot_write(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2])
        try:
            await nodes[0].until(lambda s: s.controller is not None)
            await asyncio.sleep(0.3)
            old = controller_of(nodes)
            other = next(n for n in nodes if n is not old)
            await old.controller.create_topic("before", 1, 2)
            # The old controller loses its lease but keeps running and believing it leads:
            # nothing but the compare on the election key can stop its writes.
            stale_epoch = old.controller.epoch
            await old.controller.stop()
            await old.session._stop_keepalive()
            await other.until(
                lambda s: s.controller is not None and s.controller.node_id == other.session.node_id,
                timeout=20,
            )
            zombie = Controller(old.session, other.view)
            zombie.epoch = stale_epoch
            with pytest.raises(NotControllerError):
                await zombie.create_topic("after", 1, 1)
            zombie.epoch = stale_epoch
            seen = other.view.state.partitions[("before", 0)]
            assert not await zombie.write_partition("before", 0, seen, seen.next(leader=NO_LEADER))
            assert "after" not in other.view.state.topics
            # The new controller can.
            await other.controller.create_topic("after", 1, 1)
            assert "after" in other.view.state.topics
        finally:
            await stop_all(nodes)

    run(body())


def test_create_topic_writes_ids_and_partition_state_and_refuses_duplicates(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2, 3])
        try:
            await nodes[0].until(lambda s: len(s.brokers) == 3 and s.controller is not None)
            await asyncio.sleep(0.3)
            ctl = controller_of(nodes).controller
            topic = await ctl.create_topic("orders", 6, 3, {"min.insync.replicas": "2"})
            for node in nodes:  # every view catches up
                state = await node.until(lambda s: s.topic_partitions("orders") is not None)
                parts = state.topic_partitions("orders")
                assert state.topics["orders"].topic_id == topic.topic_id
                assert state.topics["orders"].configs == {"min.insync.replicas": "2"}
            assert all(sorted(p.replicas) == [1, 2, 3] and p.isr_ids == p.replicas for p in parts)
            assert sorted(p.leader for p in parts) == [1, 1, 2, 2, 3, 3]
            assert all(
                p.isr[i].broker_epoch == state.brokers[p.replicas[i]].epoch for p in parts for i in range(3)
            )
            with pytest.raises(TopicExistsError):
                await ctl.create_topic("orders", 1, 1)
            await ctl.delete_topic("orders")
            state = await nodes[1].until(
                lambda s: "orders" not in s.topics and not any(k[0] == "orders" for k in s.partitions)
            )
            again = await ctl.create_topic("orders", 1, 1)
            assert again.topic_id != topic.topic_id
            # a non-controller refuses admin writes
            other = next(n for n in nodes if n.controller is not ctl)
            with pytest.raises(NotControllerError):
                await other.controller.create_topic("x", 1, 1)
        finally:
            await stop_all(nodes)

    run(body())


def test_isr_changes_are_compare_and_set_on_the_partition_epoch(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2, 3])
        try:
            await nodes[0].until(lambda s: len(s.brokers) == 3 and s.controller is not None)
            await asyncio.sleep(0.3)
            await controller_of(nodes).controller.create_topic("t", 1, 3)
            state = await nodes[0].until(lambda s: s.topic_partitions("t") is not None)
            seen = state.partitions[("t", 0)]
            leader = next(n for n in nodes if n.session.node_id == seen.leader)
            follower = next(m for m in seen.isr if m.broker_id != seen.leader)
            shrunk = tuple(m for m in seen.isr if m != follower)
            committed = await alter_isr(leader.session, "t", 0, seen, shrunk)
            assert committed is not None and committed.isr == shrunk
            assert committed.partition_epoch == seen.partition_epoch + 1
            assert committed.leader_epoch == seen.leader_epoch
            # A second change from the stale state loses: the partition epoch moved.
            assert await alter_isr(leader.session, "t", 0, seen, shrunk) is None
            # Expanding with an epoch the follower no longer has is refused.
            stale = (*committed.isr, IsrMember(follower.broker_id, follower.broker_epoch - 1))
            assert await alter_isr(leader.session, "t", 0, committed, stale) is None
            # Expanding with its current epoch commits.
            expanded = await alter_isr(leader.session, "t", 0, committed, (*committed.isr, follower))
            assert expanded is not None and set(expanded.isr_ids) == set(seen.isr_ids)
            state = await nodes[2].until(
                lambda s: s.partitions[("t", 0)].partition_epoch == expanded.partition_epoch
            )
            assert state.partitions[("t", 0)].isr == expanded.isr
        finally:
            await stop_all(nodes)

    run(body())


def test_an_expired_broker_leaves_every_isr_and_its_leaderships_move(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2, 3], ttl=2)
        try:
            await nodes[0].until(lambda s: len(s.brokers) == 3 and s.controller is not None)
            await asyncio.sleep(0.3)
            await controller_of(nodes).controller.create_topic("t", 6, 3)
            state = await nodes[0].until(lambda s: s.topic_partitions("t") is not None)
            before = {k: v for k, v in state.partitions.items()}
            # Kill a broker that is not the controller, so this shows the lease expiry path.
            victim = next(n for n in nodes if not n.controller.active)
            vid = victim.session.node_id
            await victim.crash()
            rest = [n for n in nodes if n is not victim]
            state = await rest[0].until(
                lambda s: (
                    vid not in s.brokers
                    and all(vid not in p.isr_ids and p.leader != vid for p in s.partitions.values())
                ),
                timeout=20,
            )
            assert_leaderships_moved(before, state, vid)
            # It comes back with a new epoch; it stays out of the ISR (a leader adds it once
            # it has caught up).
            back = await Node(etcd_server, etcd_prefix, vid).start()
            rest.append(back)
            state = await rest[0].until(lambda s: vid in s.brokers)
            await asyncio.sleep(0.5)
            assert all(vid not in p.isr_ids for p in rest[0].view.state.partitions.values())
        finally:
            await stop_all([n for n in nodes if n is not victim] + [back])

    run(body())


def test_the_controller_role_moves_when_the_controller_dies(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2, 3], ttl=2)
        try:
            await nodes[0].until(lambda s: len(s.brokers) == 3 and s.controller is not None)
            await asyncio.sleep(0.3)
            old = controller_of(nodes)
            await old.controller.create_topic("t", 3, 3)
            old_epoch = old.controller.epoch
            await old.crash()
            rest = [n for n in nodes if n is not old]
            oid = old.session.node_id
            state = await rest[0].until(
                lambda s: (
                    s.controller is not None
                    and s.controller.node_id != oid
                    and all(p.leader != oid and oid not in p.isr_ids for p in s.partitions.values())
                ),
                timeout=20,
            )
            assert state.controller.epoch > old_epoch
            assert controller_of(rest).controller.epoch == state.controller.epoch
        finally:
            await stop_all([n for n in nodes if n is not old])

    run(body())


def test_no_unclean_election_when_the_whole_isr_is_gone(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async def body() -> None:
        nodes = await start_nodes(etcd_server, etcd_prefix, [1, 2], ttl=2)
        try:
            await nodes[0].until(lambda s: len(s.brokers) == 2 and s.controller is not None)
            await asyncio.sleep(0.3)
            ctl_node = controller_of(nodes)
            other = next(n for n in nodes if n is not ctl_node)
            oid = other.session.node_id
            await ctl_node.controller.create_topic("clean", 1, 2)
            await ctl_node.controller.create_topic(
                "unclean", 1, 2, {"unclean.leader.election.enable": "true"}
            )
            state = await ctl_node.until(
                lambda s: s.topic_partitions("clean") and s.topic_partitions("unclean")
            )
            # The other broker becomes the only ISR member of both partitions (the leader's
            # ISR change), then dies.
            for name in ("clean", "unclean"):
                seen = state.partitions[(name, 0)]
                moved = seen.next(leader=oid, isr=tuple(m for m in seen.isr if m.broker_id == oid))
                assert await ctl_node.controller.write_partition(name, 0, seen, moved)
            await ctl_node.until(
                lambda s: all(s.partitions[(n, 0)].isr_ids == (oid,) for n in ("clean", "unclean"))
            )
            await other.crash()
            state = await ctl_node.until(
                lambda s: (
                    s.partitions[("clean", 0)].leader == NO_LEADER
                    and s.partitions[("unclean", 0)].leader == ctl_node.session.node_id
                ),
                timeout=20,
            )
            assert state.partitions[("clean", 0)].isr_ids == (oid,)  # kept for a clean return
            # The last in-sync replica comes back and leads again.
            back = await Node(etcd_server, etcd_prefix, oid).start()
            nodes = [ctl_node, back]
            state = await ctl_node.until(lambda s: s.partitions[("clean", 0)].leader == oid, timeout=20)
            assert state.partitions[("clean", 0)].isr == (IsrMember(oid, back.session.epoch),)
        finally:
            await stop_all(nodes)

    run(body())
