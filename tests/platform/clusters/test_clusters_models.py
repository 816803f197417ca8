"""Hosts and brokers: the database enforces one port per host and valid ranges; which hosts
have room for a cluster's next broker."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from clusters.models import Broker, Host
from clusters.selectors import hosts_with_room
from tests.platform.factories import BrokerFactory, ClusterFactory, HostFactory

pytestmark = pytest.mark.django_db


def test_ports_are_unique_per_host():
    host = HostFactory()
    BrokerFactory(host=host, port=20000, admin_port=20001)
    for port, admin_port in ((20000, 20010), (20011, 20001)):
        with pytest.raises(IntegrityError), transaction.atomic():
            BrokerFactory(host=host, port=port, admin_port=admin_port)
    # The same ports on another host, and unplaced brokers (no host, no ports), are fine.
    BrokerFactory(host=HostFactory(), port=20000, admin_port=20001)
    cluster = ClusterFactory()
    Broker.objects.create(cluster=cluster, node_id=0)
    Broker.objects.create(cluster=ClusterFactory(), node_id=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Broker.objects.create(cluster=cluster, node_id=0)


def test_host_names_are_unique_and_ranges_valid():
    HostFactory(name="local")
    assert Host.objects.get(name="local").queue == "host.local"
    with pytest.raises(IntegrityError), transaction.atomic():
        HostFactory(name="local")
    with pytest.raises(IntegrityError), transaction.atomic():
        HostFactory(port_min=30000, port_max=29999)


def test_a_host_is_left_out_for_a_cluster_only_when_one_broker_of_it_runs_there():
    """A host holding a cluster's broker that is not placed on a port (it does not run) and
    another cluster's running broker still has room for the first cluster."""
    host = HostFactory(capacity=2, heartbeat_at=timezone.now())
    mine, other = ClusterFactory(), ClusterFactory()
    Broker.objects.create(cluster=mine, node_id=1, host=host)  # placed, no port yet
    BrokerFactory(cluster=other, node_id=1, host=host)
    assert hosts_with_room(exclude_cluster=mine) == 1
    BrokerFactory(cluster=mine, node_id=2, host=HostFactory(capacity=2, heartbeat_at=timezone.now()))
    assert hosts_with_room(exclude_cluster=mine) == 1  # the second host runs one of `mine`
    assert hosts_with_room(exclude_cluster=other) == 1
