"""Fast failure detection against a real etcd: a broker whose listener refuses connections is
fenced by the controller long before its lease (30 s here) could expire; a suspect that still
accepts connections is left alone; a dead controller is fenced by another broker; and a live
broker fenced by mistake only loses its epoch and registers again."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from brokerd.coordination import etcd as e
from brokerd.coordination.fencing import FailureDetector
from brokerd.coordination.records import Endpoint
from tests.brokerd.replication.coordtest import Node, assert_leaderships_moved, controller_of
from tests.etcd_server import EtcdServer

LEASE_S = 30  # far longer than any wait below: only the fast path can explain a move


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class ListeningNode(Node):
    """A node with a real listener on its own loopback address, and its failure detector."""

    async def start(self) -> ListeningNode:
        host = f"127.0.0.{self.session.node_id}"
        self.server = await asyncio.start_server(_hang_up, host, 0)
        port = self.server.sockets[0].getsockname()[1]
        endpoint = Endpoint("PLAINTEXT", host, port, "PLAINTEXT")
        self.session.registration = replace(self.session.registration, endpoints=(endpoint,))
        self.session.heartbeat_s = 0.5  # a fenced live node hears it soon (the lease stays 30 s)
        await super().start()
        self.detector = FailureDetector(self.session, self.view, self.controller)
        self.detector.start()
        return self

    async def die(self) -> None:
        """As ``kill -9``: the listener is gone at once, the lease runs on."""
        self.server.close()
        await self.server.wait_closed()
        await self.detector.stop()
        await self.crash()

    async def stop(self) -> None:
        self.server.close()
        await self.detector.stop()
        await super().stop()


async def _hang_up(_reader, writer) -> None:
    writer.close()


async def cluster(server: EtcdServer, prefix: str) -> list[ListeningNode]:
    nodes = [await ListeningNode(server, prefix, i, ttl=LEASE_S).start() for i in (1, 2, 3)]
    await nodes[0].until(lambda s: len(s.brokers) == 3 and s.controller is not None)
    await asyncio.sleep(0.3)  # the controller's view notices it won
    await controller_of(nodes).controller.create_topic("t", 6, 3)
    await nodes[0].until(lambda s: s.topic_partitions("t") is not None)
    return nodes


def moved_away(victim: int):
    def check(state) -> bool:
        return victim not in state.brokers and all(
            p.leader != victim and victim not in p.isr_ids for p in state.partitions.values()
        )

    return check


def test_a_broker_whose_listener_refuses_is_fenced_and_its_leaderships_move(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async def body() -> None:
        nodes = await cluster(etcd_server, etcd_prefix)
        victim = next(n for n in nodes if not n.controller.active)
        vid = victim.session.node_id
        rest = [n for n in nodes if n is not victim]
        before = dict(rest[0].view.state.partitions)
        try:
            await victim.die()
            reporter = next(n for n in rest if not n.controller.active)
            reporter.detector.suspect(vid)  # as its fetcher does on a refused connection
            state = await rest[0].until(moved_away(vid), timeout=10)
            assert_leaderships_moved(before, state, vid)
            assert controller_of(rest).detector.fenced == 1
            assert not state.suspicions  # answered: removed with the registration
            # the lease was revoked with the fencing: nothing of the dead process remains
            assert await reporter.etcd.get(reporter.keys.broker(vid)) is None
        finally:
            for node in rest:
                await node.stop()

    run(body())


def test_a_suspect_that_accepts_connections_is_not_fenced(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async def body() -> None:
        nodes = await cluster(etcd_server, etcd_prefix)
        try:
            controller = controller_of(nodes)
            suspect = next(n for n in nodes if n is not controller)
            reporter = next(n for n in nodes if n not in (controller, suspect))
            epoch = suspect.session.epoch
            reporter.detector.suspect(suspect.session.node_id)
            for _ in range(600):  # generous: the probe waits for etcd's watch on a loaded machine
                if controller.detector.probes:
                    break
                await asyncio.sleep(0.05)
            assert controller.detector.probes == 1 and controller.detector.fenced == 0
            await asyncio.sleep(0.3)
            state = controller.view.state
            assert state.brokers[suspect.session.node_id].epoch == epoch
            assert all(
                suspect.session.node_id in p.isr_ids for p in state.partitions.values()
            ), "a broker that answers keeps its ISR places"
        finally:
            for node in nodes:
                await node.stop()

    run(body())


def test_a_dead_controller_is_fenced_by_another_broker(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async def body() -> None:
        nodes = await cluster(etcd_server, etcd_prefix)
        old = controller_of(nodes)
        oid, old_epoch = old.session.node_id, old.controller.epoch
        rest = [n for n in nodes if n is not old]
        try:
            await old.die()
            rest[0].detector.suspect(oid)
            state = await rest[0].until(
                lambda s: moved_away(oid)(s) and s.controller is not None and s.controller.node_id != oid,
                timeout=10,
            )
            assert state.controller.epoch > old_epoch
            assert sum(n.detector.fenced for n in rest) == 1
        finally:
            for node in rest:
                await node.stop()

    run(body())


def test_a_live_broker_fenced_by_mistake_registers_again_with_a_new_epoch(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    """Fencing costs availability only: the broker's old epoch is void (nothing it writes
    with it commits), it leaves every ISR, and it registers again on its own."""

    async def body() -> None:
        nodes = await cluster(etcd_server, etcd_prefix)
        try:
            controller = controller_of(nodes)
            victim = next(n for n in nodes if n is not controller)
            vid, old_epoch = victim.session.node_id, victim.session.epoch
            assert await controller.detector.fence(controller.view.state.brokers[vid])
            # its next heartbeat finds the lease revoked; it registers again (as ClusterMembership's
            # rejoin loop does)
            await asyncio.wait_for(victim.session.lost.wait(), 10)
            await victim.session.register()
            state = await controller.until(
                lambda s: vid in s.brokers and s.brokers[vid].epoch > old_epoch, timeout=15
            )
            assert victim.session.epoch == state.brokers[vid].epoch
            # out of every ISR: its entries named the old epoch (it rejoins once caught up)
            assert all(vid not in p.isr_ids for p in state.partitions.values())
            refused = await victim.etcd.txn(
                [e.created_at(victim.keys.broker(vid), old_epoch)], [e.put(victim.keys.prefix + b"x", b"1")]
            )
            assert not refused.succeeded
        finally:
            for node in nodes:
                await node.stop()

    run(body())
