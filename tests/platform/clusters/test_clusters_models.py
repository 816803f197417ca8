"""Hosts and brokers: the database enforces one port per host and valid ranges."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from clusters.models import Broker, Host
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
