"""Replacing a lost host's brokers: waiting first, then placed elsewhere with the same node ids,
blocked with a reason when no host has room; a single-broker cluster waits for its host."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from brokerd.coordination import etcd as e
from brokerd.coordination.keys import Keys
from brokerd.coordination.records import BrokerRegistration
from clusters import selectors
from clusters.models import Broker, BrokerStatus
from provisioning import placement, replacement
from sharedkit import coordination
from tests.helpers import environ
from tests.platform.factories import BrokerFactory, ClusterFactory, HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _timings():
    with environ(KASTLE_HOST_TIMEOUT="10", KASTLE_REPLACE_AFTER="60"):
        yield


def _cluster(plan: str = "standard", spare: bool = True):
    now = timezone.now()
    hosts = [HostFactory(name=n, address=f"127.0.0.{i}", heartbeat_at=now) for i, n in enumerate("abcd", 1)]
    if not spare:
        hosts[3].delete()
    cluster = ClusterFactory(plan=plan, broker_count=3 if plan != "basic" else 1)
    brokers = [
        BrokerFactory(cluster=cluster, node_id=n, host=hosts[n - 1], status=BrokerStatus.RUNNING, pid=4242)
        for n in range(1, cluster.broker_count + 1)
    ]
    for broker in brokers:  # ports leased, as provisioning leaves them
        placement.lease_ports(broker, broker.host)
    return cluster, hosts, brokers


def _silent(host, seconds: float) -> None:
    host.heartbeat_at = timezone.now() - timedelta(seconds=seconds)
    host.save()


def test_a_lost_hosts_broker_waits_then_moves_to_the_spare_host():
    cluster, hosts, brokers = _cluster()
    lost = hosts[1]
    _silent(lost, 20)  # gone, but within the grace period
    sent: list[str] = []
    report = replacement.brokers_replace_lost(send_host=sent.append)
    assert report["waiting"] == [cluster.public_id] and not sent
    cluster.refresh_from_db()
    assert cluster.replacement["state"] == "waiting" and "within 60 s" in cluster.replacement["reason"]
    assert selectors.degraded_reason(cluster) == cluster.replacement["reason"]

    _silent(lost, 61)
    report = replacement.brokers_replace_lost(send_host=sent.append)
    assert report["replaced"] == [f"{cluster.public_id}/2"] and sent == ["d"]
    moved = Broker.objects.select_related("host").get(pk=brokers[1].pk)
    assert moved.node_id == 2 and moved.host.name == "d" and moved.pid is None
    assert moved.status == BrokerStatus.PENDING
    cluster.refresh_from_db()
    assert f"127.0.0.4:{moved.port}" in cluster.bootstrap_servers.split(",")
    assert cluster.replacement["moves"] == {"2": {"from": "b", "to": "d"}}
    assert "started again on host d with an empty disk" in selectors.degraded_reason(cluster)
    event = AuditEvent.objects.get(action="cluster.broker.replace")
    assert event.details["moves"] == {"2": {"from": "b", "to": "d"}}
    assert cluster.placement_warning == ""
    # nothing further to replace: the broker no longer sits on the lost host
    assert replacement.brokers_replace_lost(send_host=sent.append)["replaced"] == []


def test_without_a_free_host_the_replacement_shares_one_and_says_so():
    cluster, hosts, brokers = _cluster(spare=False)
    _silent(hosts[2], 61)
    report = replacement.brokers_replace_lost(send_host=lambda name: None)
    assert report["replaced"] == [f"{cluster.public_id}/3"]
    cluster.refresh_from_db()
    assert Broker.objects.get(pk=brokers[2].pk).host.name in ("a", "b")
    assert "share 2 hosts" in cluster.placement_warning


def test_without_room_anywhere_the_cluster_stays_degraded_with_a_reason():
    cluster, hosts, brokers = _cluster(spare=False)
    for host in hosts[:2]:
        host.capacity = 1
        host.save()
    _silent(hosts[2], 61)
    report = replacement.brokers_replace_lost(send_host=lambda name: None)
    assert report["blocked"] == [f"{cluster.public_id}/3"]
    assert Broker.objects.get(pk=brokers[2].pk).host.name == "c"
    cluster.refresh_from_db()
    reason = selectors.degraded_reason(cluster)
    assert cluster.replacement["state"] == "blocked" and "no other broker host has room" in reason
    assert AuditEvent.objects.filter(action="cluster.broker.replacement_blocked").count() == 1
    replacement.brokers_replace_lost(send_host=lambda name: None)  # said once, not at every pass
    assert AuditEvent.objects.filter(action="cluster.broker.replacement_blocked").count() == 1


def test_a_single_broker_waits_for_its_host():
    cluster, hosts, brokers = _cluster(plan="basic")
    _silent(hosts[0], 600)
    report = replacement.brokers_replace_lost(send_host=lambda name: None)
    assert report["waiting"] == [cluster.public_id] and not report["replaced"]
    cluster.refresh_from_db()
    assert "waits for the host to come back" in cluster.replacement["reason"]
    assert Broker.objects.get(pk=brokers[0].pk).host.name == "a"


def _registration(etcd_server, public_id: str, node_id: int, rack: str | None) -> None:
    """Write (rack given) or remove a broker's registration in the cluster's etcd prefix, as its
    process does when it registers and when its lease runs out."""
    key = Keys(coordination.cluster_prefix(public_id)).broker(node_id)
    op = (
        e.put(key, BrokerRegistration(node_id=node_id, rack=rack, endpoints=(), incarnation="x").to_bytes())
        if rack is not None
        else e.delete(key)
    )

    async def write() -> None:
        client = etcd_server.client()
        try:
            await client.txn([], [op])
        finally:
            await client.close()

    asyncio.run(write())


def test_a_broker_still_registered_from_its_lost_host_is_not_replaced_until_it_stops(etcd_server):
    with environ(KASTLE_ETCD_URL=f"http://127.0.0.1:{etcd_server.client_port}"):
        cluster, hosts, brokers = _cluster()
        _silent(hosts[1], 61)
        _registration(etcd_server, cluster.public_id, 2, rack="b")  # its process still serves there
        report = replacement.brokers_replace_lost(send_host=lambda name: None)
        assert report["waiting"] == [cluster.public_id] and report["replaced"] == [], report
        assert Broker.objects.get(pk=brokers[1].pk).host.name == "b"
        cluster.refresh_from_db()
        assert "broker 2 still serves from it" in cluster.replacement["reason"], cluster.replacement

        _registration(etcd_server, cluster.public_id, 2, rack=None)  # it stopped: its lease ran out
        report = replacement.brokers_replace_lost(send_host=lambda name: None)
        assert report["replaced"] == [f"{cluster.public_id}/2"], report
        assert Broker.objects.select_related("host").get(pk=brokers[1].pk).host.name == "d"
