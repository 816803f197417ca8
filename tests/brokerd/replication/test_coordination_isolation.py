"""Cluster isolation in etcd: with authentication on, each cluster's user and role reach
its own prefix only. Cluster A's credentials can run a whole cluster under A's prefix and
can neither read nor write B's (even when B's prefix starts with A's name)."""

from __future__ import annotations

import asyncio

import pytest

from brokerd.coordination import access
from brokerd.coordination import etcd as e
from brokerd.coordination.etcd import CoordinationDenied, Etcd
from brokerd.coordination.keys import Keys
from tests.brokerd.replication.coordtest import controller_of, start_nodes, stop_all
from tests.etcd_server import EtcdServer

A = "/kastle/clusters/a/"
B = "/kastle/clusters/ab/"  # a neighbour whose name starts like A's


def test_cluster_credentials_reach_their_own_prefix_only(etcd_auth_server: EtcdServer) -> None:
    async def body() -> None:
        root = etcd_auth_server.root_client()
        await access.grant_cluster_access(root, prefix=A, user="cluster-a", password="pw-a")
        await access.grant_cluster_access(root, prefix=B, user="cluster-b", password="pw-b")
        b_keys = Keys(B)
        await root.txn([], [e.put(b_keys.topic("secret"), b'{"b": 1}')])

        # A's credentials run a whole cluster in A's prefix: registration, election, topics.
        nodes = await start_nodes(etcd_auth_server, A, [1, 2], user="cluster-a", password="pw-a")
        try:
            await nodes[0].view.wait_until(lambda s: len(s.brokers) == 2 and s.controller is not None)
            await asyncio.sleep(0.3)
            await controller_of(nodes).controller.create_topic("orders", 2, 2)
        finally:
            await stop_all(nodes)

        a = Etcd([etcd_auth_server.endpoint], user="cluster-a", password="pw-a")
        try:
            for attempt in (
                a.get(b_keys.topic("secret")),
                a.get_prefix(b_keys.prefix),
                a.get_prefix(b"/kastle/clusters/"),
                a.txn([], [e.put(b_keys.topic("evil"), b"{}")]),
                a.txn([], [e.delete(b_keys.prefix, prefix=True)]),
                a.txn([e.created_at(b_keys.controller, 0)], [e.put(Keys(A).prefix + b"x", b"1")]),
            ):
                with pytest.raises(CoordinationDenied, match="permission denied"):
                    await attempt
            assert (await a.get(Keys(A).topic("orders"))) is not None
        finally:
            await a.close()
        # B's data is intact.
        _revision, entries = await root.get_prefix(b_keys.prefix)
        assert [x.key for x in entries] == [b_keys.topic("secret")]
        # Wrong passwords are refused outright.
        wrong = Etcd([etcd_auth_server.endpoint], user="cluster-a", password="nope")
        with pytest.raises(CoordinationDenied):
            await wrong.get(Keys(A).cluster)
        await wrong.close()
        await access.revoke_cluster_access(root, user="cluster-a")
        revoked = Etcd([etcd_auth_server.endpoint], user="cluster-a", password="pw-a")
        with pytest.raises(CoordinationDenied):
            await revoked.get(Keys(A).cluster)
        await revoked.close()
        await root.close()

    asyncio.run(asyncio.wait_for(body(), 60))
