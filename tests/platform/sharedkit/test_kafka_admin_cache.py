"""The control plane's AdminClient cache: reused while in use, dropped once idle."""

from __future__ import annotations

import time

import pytest

from clusters.models import ClusterStatus
from sharedkit import kafka_admin
from tests.platform.factories import ClusterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    kafka_admin.clear_cache()
    yield
    kafka_admin.clear_cache()


def _running(port: int):
    return ClusterFactory(
        status=ClusterStatus.RUNNING,
        bootstrap_servers=f"127.0.0.1:{port}",
        security_protocol="SASL_PLAINTEXT",
    )


def test_clients_are_reused_then_swept_when_idle():
    a, b = _running(1), _running(2)
    client_a = kafka_admin.admin_client(a)
    assert kafka_admin.admin_client(a) is client_a
    kafka_admin.admin_client(b)

    assert kafka_admin.sweep_idle() == 0  # both just used
    later = time.monotonic() + kafka_admin._CACHE_IDLE_S + 1
    assert kafka_admin.sweep_idle(now=later) == 2
    assert kafka_admin.admin_client(a) is not client_a  # a fresh client after the sweep


def test_a_cluster_that_is_not_running_is_forgotten():
    cluster = _running(3)
    kafka_admin.admin_client(cluster)
    cluster.status = ClusterStatus.DELETING
    with pytest.raises(kafka_admin.ClusterNotRunning):
        kafka_admin.admin_client(cluster)
    assert kafka_admin.sweep_idle(now=time.monotonic() + kafka_admin._CACHE_IDLE_S + 1) == 0


def test_every_kind_of_client_is_closed_when_its_cluster_stops_running():
    from confluent_kafka import Producer

    cluster = _running(4)
    kafka_admin.admin_client(cluster)
    producer = kafka_admin.cached_client(
        cluster, "producer", lambda: Producer(kafka_admin.client_config(cluster))
    )
    assert kafka_admin.cached_kinds(cluster) == ["admin", "producer"]
    assert kafka_admin.cached_client(cluster, "producer", lambda: None) is producer  # reused
    cluster.status = ClusterStatus.DELETING
    cluster.save()  # the delete itself: post_save closes them in this process
    assert kafka_admin.cached_kinds(cluster) == []
    with pytest.raises(RuntimeError):  # closed, not just forgotten
        producer.produce("t", b"x")


def test_other_caches_of_a_clusters_clients_are_told_when_it_stops_running():
    from schemaregistry import storage

    cluster = _running(5)
    told: list[str] = []
    kafka_admin.on_forget(told.append)
    try:
        log = storage.ClusterLog(cluster)
        storage._logs[cluster.public_id] = log
        cluster.status = ClusterStatus.DELETED
        cluster.save()
    finally:
        kafka_admin._forget_hooks.remove(told.append)
    assert told == [cluster.public_id]
    assert cluster.public_id not in storage._logs  # the schema registry's view is closed too
