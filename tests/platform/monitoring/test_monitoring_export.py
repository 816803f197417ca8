"""The export of a cluster that is not RUNNING, and its walls (the live figures are in tests/e2e)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.live import SOURCES
from tests.platform.api import Tenant, assert_error
from tests.platform.factories import BrokerFactory, ClusterFactory

pytestmark = pytest.mark.django_db


def test_a_cluster_that_is_not_running_says_so_and_serves_no_figures():
    tenant = Tenant("owner")
    member = tenant.member("member")
    cluster = ClusterFactory(organization=tenant.organization, status="PROVISIONING")
    BrokerFactory(cluster=cluster)
    url = f"/api/v1/clusters/{cluster.public_id}/metrics/export"
    response = member.client.get(url, HTTP_ACCEPT="text/plain")
    assert response.status_code == 200, response.content
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert found[("kastle_cluster_running", ())] == 0
    assert found[("kastle_brokers", ())] == 1 and found[("kastle_brokers_up", ())] == 0
    assert {found[("kastle_export_source_up", (("source", s),))] for s in SOURCES} == {0}
    assert not [name for name, _ in found if name.startswith(("kastle_topic_", "kastle_partition_"))]

    assert_error(Tenant("owner").client.get(url), 404)
    assert_error(Tenant("owner").client.get(url, HTTP_ACCEPT="text/plain"), 404)
    anonymous = Tenant("owner").client
    anonymous.credentials()
    assert_error(anonymous.get(url), 401)
