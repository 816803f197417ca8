"""ACL REST without brokers: scope compilation, validation (400 naming the field), 409, 503, tenancy.

The round trips through real brokers are in tests/e2e/test_e2e_acls.py.
"""

from __future__ import annotations

import pytest

from accounts.models import Role
from acls import selectors
from acls.bindings import Binding, compile_scope
from clusters.models import ClusterStatus
from tests.helpers import free_port
from tests.platform.api import assert_error
from tests.platform.factories import ApiKeyFactory, ClusterFactory

pytestmark = pytest.mark.django_db


def _ops(bindings: list[Binding]) -> set[tuple[str, str, str, str]]:
    assert all(b.principal == "User:K" and b.host == "*" and b.permission == "ALLOW" for b in bindings)
    return {(b.resource_type, b.resource_name, b.pattern_type, b.operation) for b in bindings}


def test_scopes_compile_to_kafka_acls():
    assert _ops(compile_scope("User:K", None)) == {
        ("TOPIC", "*", "LITERAL", "ALL"),
        ("GROUP", "*", "LITERAL", "ALL"),
        ("TRANSACTIONAL_ID", "*", "LITERAL", "ALL"),
        ("CLUSTER", "kafka-cluster", "LITERAL", "ALL"),
    }
    assert _ops(compile_scope("User:K", {"topic_prefix": "orders.", "access": "produce"})) == {
        ("TOPIC", "orders.", "PREFIXED", "WRITE"),
        ("TOPIC", "orders.", "PREFIXED", "DESCRIBE"),
        ("TRANSACTIONAL_ID", "orders.", "PREFIXED", "WRITE"),
        ("TRANSACTIONAL_ID", "orders.", "PREFIXED", "DESCRIBE"),
        ("CLUSTER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE"),
    }
    assert _ops(compile_scope("User:K", {"topic_prefix": "orders.", "access": "consume"})) == {
        ("TOPIC", "orders.", "PREFIXED", "READ"),
        ("TOPIC", "orders.", "PREFIXED", "DESCRIBE"),
        ("GROUP", "orders.", "PREFIXED", "READ"),
    }
    assert _ops(compile_scope("User:K", {"topic_prefix": "orders.", "access": "full"})) == {
        ("TOPIC", "orders.", "PREFIXED", "ALL"),
        ("GROUP", "orders.", "PREFIXED", "ALL"),
        ("TRANSACTIONAL_ID", "orders.", "PREFIXED", "ALL"),
        ("CLUSTER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE"),
    }


def test_binding_ids_are_stable_and_distinct():
    a = Binding("TOPIC", "t", "LITERAL", "User:K", "*", "READ", "ALLOW")
    assert a.id == Binding("TOPIC", "t", "LITERAL", "User:K", "*", "READ", "ALLOW").id
    assert a.id != Binding("TOPIC", "t", "LITERAL", "User:K", "*", "READ", "DENY").id
    assert a.id.startswith("acl-") and len(a.id) == 20


@pytest.fixture(autouse=True)
def _forget_admin_clients():
    yield
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()  # no client keeps knocking on the dead port


@pytest.fixture
def cluster(tenant):
    # RUNNING on a port nobody listens on: validation answers before any broker is asked.
    return ClusterFactory(organization=tenant.organization, bootstrap_servers=f"127.0.0.1:{free_port()}")


def acls_path(cluster) -> str:
    return f"/api/v1/clusters/{cluster.public_id}/acls"


GOOD = {"resource_type": "TOPIC", "resource_name": "t", "operation": "READ"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resource_type": "TABLE"}, "resource_type"),
        ({"resource_type": None}, "resource_type"),
        ({"pattern_type": "REGEX"}, "pattern_type"),
        ({"resource_name": None}, "resource_name"),
        ({"resource_name": "bad name"}, "resource_name"),
        ({"resource_name": "*", "pattern_type": "PREFIXED"}, "resource_name"),
        ({"operation": "FLY"}, "operation"),
        ({"operation": "WRITE", "resource_type": "GROUP"}, "operation"),
        ({"permission": "MAYBE"}, "permission"),
        ({"principal": "User:NOSUCHKEY0000000"}, "principal"),
        ({"principal": "sa-nosuch"}, "principal"),
        ({"principal": "Group:admins"}, "principal"),
        ({"principal": None}, "principal"),
        ({"resource_type": "CLUSTER", "resource_name": "other"}, "resource_name"),
    ],
)
def test_create_validates_each_field(tenant, cluster, change, field):
    key = ApiKeyFactory(cluster=cluster)
    body = {**GOOD, "principal": f"User:{key.key}", **change}
    error = assert_error(tenant.client.post(acls_path(cluster), body, format="json"), 400, "validation_error")
    assert field in error["details"], error


def test_a_key_of_another_cluster_is_not_a_principal_here(tenant, cluster):
    other = ApiKeyFactory(cluster=ClusterFactory(organization=tenant.organization))
    body = {**GOOD, "principal": other.key}
    error = assert_error(tenant.client.post(acls_path(cluster), body, format="json"), 400)
    assert "principal" in error["details"]


def test_delete_needs_a_filter(tenant, cluster):
    error = assert_error(tenant.client.delete(acls_path(cluster)), 400, "validation_error")
    assert "filter" in error["details"]


def test_cluster_not_running_is_409(tenant):
    cluster = ClusterFactory(organization=tenant.organization, status=ClusterStatus.PROVISIONING)
    key = ApiKeyFactory(cluster=cluster)
    assert_error(tenant.client.get(acls_path(cluster)), 409, "cluster_not_running")
    body = {**GOOD, "principal": key.key}
    assert_error(tenant.client.post(acls_path(cluster), body, format="json"), 409, "cluster_not_running")


def test_unreachable_brokers_are_503(tenant, cluster, monkeypatch):
    monkeypatch.setattr(selectors, "TIMEOUT", 1.0)
    key = ApiKeyFactory(cluster=cluster)
    assert_error(tenant.client.get(acls_path(cluster)), 503, "cluster_unavailable")
    body = {**GOOD, "principal": key.key}
    assert_error(tenant.client.post(acls_path(cluster), body, format="json"), 503, "cluster_unavailable")


def test_roles_and_tenancy(tenant, other_tenant, cluster, api_client):
    member = tenant.member(Role.MEMBER)
    key = ApiKeyFactory(cluster=cluster)
    body = {**GOOD, "principal": key.key}
    assert_error(member.client.post(acls_path(cluster), body, format="json"), 403, "missing_role")
    assert_error(member.client.delete(acls_path(cluster) + "?principal=" + key.key), 403, "missing_role")
    for response in (
        other_tenant.client.get(acls_path(cluster)),
        other_tenant.client.post(acls_path(cluster), body, format="json"),
        other_tenant.client.delete(acls_path(cluster) + "?resource_type=TOPIC"),
        other_tenant.client.delete(acls_path(cluster) + "/acl-abc"),
    ):
        assert_error(response, 404, "not_found")
    assert api_client.get(acls_path(cluster)).status_code == 401
