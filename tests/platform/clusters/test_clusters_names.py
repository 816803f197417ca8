"""The cluster-name rule holds in one place for REST and the portal, and its error states the rule."""

from __future__ import annotations

import pytest

from accounts.models import Role
from clusters.models import Cluster
from clusters.names import RULE
from tests.platform.api import assert_error
from tests.platform.factories import ClusterFactory, MembershipFactory

BAD_NAMES = ["my cluster!", "café", "-leading-dash", "a/b", "tab\tname"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_rest_refuses_names_outside_the_rule(tenant, name):
    error = assert_error(tenant.client.post("/api/v1/clusters", {"name": name, "plan": "basic"}), 400)
    assert error["details"]["name"] == [RULE]
    assert not Cluster.objects.exists()


def test_rest_reports_the_name_and_the_plan_at_once(tenant):
    error = assert_error(tenant.client.post("/api/v1/clusters", {"name": "café", "plan": "gold"}), 400)
    assert set(error["details"]) == {"name", "plan"}


def test_rest_rename_follows_the_same_rule(tenant):
    cluster = ClusterFactory(organization=tenant.organization, name="orders")
    error = assert_error(
        tenant.client.patch(f"/api/v1/clusters/{cluster.public_id}", {"name": "my cluster!"}), 400
    )
    assert error["details"]["name"] == [RULE]
    assert (
        tenant.client.patch(f"/api/v1/clusters/{cluster.public_id}", {"name": "orders-eu.2"}).status_code
        == 200
    )


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["my cluster!", "café"])
def test_portal_refuses_names_outside_the_rule_beside_the_field(client, name):
    membership = MembershipFactory(role=Role.ADMIN)
    client.force_login(membership.user)
    response = client.post("/clusters/new/", {"name": name, "plan": "basic", "security_protocol": "SASL_SSL"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_name-error"' in html and "dots and dashes" in html
    assert not Cluster.objects.exists()


def test_service_refuses_names_outside_the_rule(db):
    from clusters import services
    from controlplane.errors import ValidationFailed
    from tests.platform.factories import OrganizationFactory

    with pytest.raises(ValidationFailed) as caught:
        services.cluster_create(organization=OrganizationFactory(), name="café", plan="basic")
    assert caught.value.details == {"name": [RULE]}
