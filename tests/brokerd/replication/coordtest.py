"""A broker's coordination stack without the rest of the broker: its registration, its
view of the metadata and its controller, against a real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from brokerd.coordination.controller import Controller
from brokerd.coordination.etcd import Etcd
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import BrokerRegistration, Endpoint
from brokerd.coordination.session import BrokerSession
from brokerd.coordination.view import ClusterState, ClusterView
from tests.etcd_server import EtcdServer


class Node:
    def __init__(
        self,
        server: EtcdServer,
        prefix: str,
        node_id: int,
        *,
        rack: str | None = None,
        ttl: int = 2,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.etcd = Etcd([server.endpoint], user=user, password=password)
        self.keys = Keys(prefix)
        registration = BrokerRegistration(
            node_id, rack, (Endpoint("PLAINTEXT", f"127.0.0.{node_id}", 9092, "PLAINTEXT"),), ""
        )
        self.session = BrokerSession(self.etcd, self.keys, registration, ttl=ttl)
        self.view = ClusterView(self.etcd, self.keys)
        self.controller = Controller(self.session, self.view)

    async def start(self) -> Node:
        self.view.start()
        await asyncio.wait_for(self.view.caught_up.wait(), 10)
        await self.session.register()
        self.controller.start()
        return self

    async def crash(self) -> None:
        """Stop as ``kill -9`` would: no lease revoke, the lease runs out on its own."""
        await self.controller.stop()
        await self.session._stop_keepalive()
        await self.view.stop()
        await self.etcd.close()

    async def stop(self) -> None:
        await self.controller.stop()
        await self.session.close()
        await self.view.stop()
        await self.etcd.close()

    async def until(self, predicate: Callable[[ClusterState], bool], timeout: float = 15.0) -> ClusterState:
        await self.view.wait_until(predicate, timeout)
        return self.view.state


async def start_nodes(server: EtcdServer, prefix: str, ids: list[int], **options) -> list[Node]:
    return [await Node(server, prefix, i, **options).start() for i in ids]


async def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.stop()


def controller_of(nodes: list[Node]) -> Node:
    [active] = [n for n in nodes if n.controller.active]
    return active


def assert_leaderships_moved(before: dict, state: ClusterState, gone: int) -> None:
    """The partitions ``gone`` led moved to an in-sync replica with the next leader epoch; the
    others kept their leader and leader epoch."""
    for key, old in before.items():
        new = state.partitions[key]
        if old.leader == gone:
            assert new.leader in old.isr_ids and new.leader_epoch == old.leader_epoch + 1
        else:
            assert new.leader == old.leader and new.leader_epoch == old.leader_epoch
