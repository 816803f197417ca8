"""A growth's first step against a real etcd: the new broker is placed on a host of its own and
its host told; if it never registers, the growth fails with a reason and is rolled back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from clusters import services as cluster_services
from clusters.models import Broker, BrokerStatus, Cluster
from provisioning import placement, scaling
from tests.helpers import environ
from tests.platform.factories import BrokerFactory, ClusterFactory, HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def dedicated(etcd_server):
    with environ(
        KASTLE_ETCD_URL=f"http://127.0.0.1:{etcd_server.client_port}", KASTLE_SCALE_START_TIMEOUT="30"
    ):
        now = timezone.now()
        hosts = [
            HostFactory(name=n, address=f"127.0.0.{i}", heartbeat_at=now) for i, n in enumerate("abcd", 1)
        ]
        cluster = ClusterFactory(plan="dedicated", broker_count=3)
        for node_id, host in enumerate(hosts[:3], start=1):
            broker = BrokerFactory(cluster=cluster, node_id=node_id, host=host, status=BrokerStatus.RUNNING)
            placement.lease_ports(broker, host)
        yield cluster_services.cluster_scale(cluster=cluster, count=4)


def test_the_new_broker_is_placed_on_its_own_host_and_its_host_told(dedicated):
    told: list[str] = []
    again: list[tuple[int, float]] = []
    step = scaling.cluster_scale_step(
        cluster_id=dedicated.pk, again=lambda c, s: again.append((c, s)), send_host=told.append
    )
    assert step == "starting" and told == ["d"] and again == [(dedicated.pk, scaling.STEP_INTERVAL)]
    new = Broker.objects.select_related("host").get(cluster=dedicated, node_id=4)
    assert new.host.name == "d" and new.port and new.status == BrokerStatus.PENDING
    # told once, not at every step
    scaling.cluster_scale_step(cluster_id=dedicated.pk, again=lambda c, s: None, send_host=told.append)
    assert told == ["d"]


def test_a_broker_that_never_registers_fails_the_growth_and_rolls_it_back(dedicated):
    scaling.cluster_scale_step(cluster_id=dedicated.pk, again=lambda c, s: None, send_host=lambda n: None)
    scale = {**dedicated.scale, "started_at": (timezone.now() - timedelta(seconds=31)).isoformat()}
    Cluster.objects.filter(pk=dedicated.pk).update(scale=scale)
    assert (
        scaling.cluster_scale_step(cluster_id=dedicated.pk, again=lambda c, s: None, send_host=lambda n: None)
        == "failed"
    )
    cluster = Cluster.objects.get(pk=dedicated.pk)
    assert cluster.scale["state"] == "failed" and cluster.broker_count == 3
    assert "Broker 4 did not start and register within 30 s" in cluster.scale["error"]
    assert "stays at 3 brokers" in cluster.scale["error"]
    assert not Broker.objects.filter(cluster=cluster, node_id=4).exists()
    assert len(cluster.bootstrap_servers.split(",")) == 3
    assert AuditEvent.objects.get(action="cluster.scale.finished").details["state"] == "failed"


def test_a_stalled_growth_is_stepped_again(dedicated):
    sent: list[int] = []
    assert scaling.scales_redrive(again=lambda c, s: sent.append(c)) == [] and sent == []
    stale = (timezone.now() - timedelta(seconds=scaling.REDRIVE_AFTER + 1)).isoformat()
    Cluster.objects.filter(pk=dedicated.pk).update(scale={**dedicated.scale, "started_at": stale})
    assert scaling.scales_redrive(again=lambda c, s: sent.append(c)) == [dedicated.public_id]
    assert sent == [dedicated.pk]


def test_a_step_marks_the_chain_alive_before_its_work(dedicated):
    """A slow step (etcd, the controller or the throttle's configs taking their time) must not look
    stalled to reconciliation, which would start a second chain of steps beside it."""
    during: list[str | None] = []

    def told(_host: str) -> None:  # called in the middle of the step
        during.append(Cluster.objects.get(pk=dedicated.pk).scale.get("stepped_at"))

    scaling.cluster_scale_step(cluster_id=dedicated.pk, again=lambda c, s: None, send_host=told)
    assert during and during[0] is not None, during
    assert scaling.scales_redrive(again=lambda c, s: None) == []
