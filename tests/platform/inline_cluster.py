"""A RUNNING cluster with a real brokerd provisioned inline (no worker), for API tests that need a
broker but not the whole stack: `host_env` (fixture) registers this machine as the host `local`
with ports of its own and stops its brokers afterwards; `provision_inline` makes the cluster."""

from __future__ import annotations

import pytest

from clusters.models import Cluster, ClusterStatus
from provisioning import conf, placement, services, supervisor
from sharedkit import kafka_admin
from tests.e2e.provisioning_stack import free_port_block
from tests.platform.factories import ApiKeyFactory, ClusterFactory

#: The secret of every ApiKeyFactory key.
SECRET = "factory-secret-" + "x" * 40


@pytest.fixture
def host_env(tmp_path, settings, monkeypatch):
    low, high = free_port_block(20)
    settings.KASTLE_DATA_DIR = tmp_path
    monkeypatch.setenv("KASTLE_HOST_PORTS", f"{low}-{high}")
    placement.host_register_local()
    yield tmp_path
    kafka_admin.clear_cache()
    supervisor.stop_all(conf.host_root("local"), timeout=10)


def provision_inline(organization) -> tuple[Cluster, str]:
    """A RUNNING cluster of `organization` on the local host, and an API key of it (secret SECRET)."""
    cluster = ClusterFactory(
        organization=organization, status=ClusterStatus.PROVISIONING, bootstrap_servers=""
    )
    key = ApiKeyFactory(cluster=cluster).key
    placement.place_cluster(cluster)
    owner = services.new_owner()
    assert services.host_provision(cluster_id=cluster.pk, owner=owner, host_name="local") == "running"
    cluster.refresh_from_db()
    return cluster, key
