"""Plans and clusters over the API, and the lifecycle state machine."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEvent, Role
from brokerd.credentials import check_plain
from clusters import services
from clusters.models import TRANSITIONS, Cluster, ClusterStatus
from clusters.plans import PLANS
from clusters.services import InvalidTransition
from tests.platform.api import assert_error, assert_page
from tests.platform.factories import BrokerFactory, ClusterFactory, HostFactory

pytestmark = pytest.mark.django_db

CLUSTERS = "/api/v1/clusters"
ID = re.compile(r"^lkc-[a-z0-9]{6}$")


def test_plans_are_public_and_carry_limits(api_client):
    results = assert_page(api_client.get("/api/v1/plans").json())
    assert [p["name"] for p in results] == ["basic", "standard", "dedicated"]
    shapes = {p["name"]: (p["brokers"], p["brokers_min"], p["brokers_max"]) for p in results}
    assert shapes == {"basic": (1, 1, 1), "standard": (3, 3, 3), "dedicated": (3, 3, 12)}
    replication = {p["name"]: (p["replication_factor"], p["min_insync_replicas"]) for p in results}
    assert replication == {"basic": (1, 1), "standard": (3, 2), "dedicated": (3, 2)}
    for plan in results:
        for limit in ("max_partitions", "ingress_mbps", "egress_mbps", "max_retention_ms", "max_api_keys"):
            assert isinstance(plan[limit], int)
    assert api_client.get("/api/v1/plans/standard").json()["max_api_keys"] == PLANS["standard"].max_api_keys
    assert_error(api_client.get("/api/v1/plans/platinum"), 404, "not_found")


def test_create_cluster_is_202_provisioning(tenant):
    response = tenant.client.post(CLUSTERS, {"name": "orders", "plan": "standard"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert ID.match(body["id"])
    assert body["name"] == "orders" and body["plan"] == "standard" and body["status"] == "PROVISIONING"
    assert body["security_protocol"] == "SASL_SSL"  # the default; SASL_PLAINTEXT is an opt-in
    assert body["sasl_mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    assert body["bootstrap_servers"] == "" and body["status_reason"] == ""
    assert body["brokers"] == 3 and body["placement_warning"] == ""
    assert "internal" not in str(body)
    cluster = Cluster.objects.get(public_id=body["id"])
    assert cluster.organization == tenant.organization
    # The internal credential: derived, never stored, verifiable against the stored verifier.
    assert check_plain(cluster.internal_verifier, cluster.internal_password())
    assert not check_plain(cluster.internal_verifier, "guess")
    assert cluster.internal_password() not in str(Cluster.objects.filter(pk=cluster.pk).values().get())
    event = AuditEvent.objects.get(action="cluster.create")
    assert event.target_id == body["id"] and event.actor == tenant.user


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"name", "plan"}),
        ({"name": "x", "plan": "platinum"}, {"plan"}),
        ({"name": "", "plan": "basic"}, {"name"}),
        ({"name": "   ", "plan": "basic"}, {"name"}),
        ({"name": "n" * 65, "plan": "basic"}, {"name"}),
        ({"name": ["a"], "plan": "basic"}, {"name"}),
    ],
)
def test_create_cluster_rejects_bad_payloads(tenant, payload, fields):
    error = assert_error(tenant.client.post(CLUSTERS, payload, format="json"), 400, "validation_error")
    assert set(error["details"]) == fields
    assert not Cluster.objects.exists()


def test_cluster_names_are_unique_per_organization_until_deleted(tenant, other_tenant):
    assert tenant.client.post(CLUSTERS, {"name": "orders", "plan": "basic"}).status_code == 202
    error = assert_error(tenant.client.post(CLUSTERS, {"name": "orders", "plan": "basic"}), 400)
    assert "already exists" in error["details"]["name"][0]
    assert other_tenant.client.post(CLUSTERS, {"name": "orders", "plan": "basic"}).status_code == 202
    cluster = Cluster.objects.get(organization=tenant.organization)
    services.cluster_delete(cluster=cluster)
    services.cluster_transition(cluster=cluster, to=ClusterStatus.DELETED)
    assert tenant.client.post(CLUSTERS, {"name": "orders", "plan": "basic"}).status_code == 202


def test_list_is_paginated_scoped_and_hides_deleted(tenant, other_tenant):
    mine = ClusterFactory.create_batch(3, organization=tenant.organization)
    ClusterFactory(organization=tenant.organization, status=ClusterStatus.DELETED)
    ClusterFactory(organization=other_tenant.organization)
    body = tenant.client.get(CLUSTERS, {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]
    everything = assert_page(tenant.client.get(CLUSTERS).json())
    assert [c["id"] for c in everything] == [c.public_id for c in mine]
    deleted = assert_page(tenant.client.get(CLUSTERS, {"status": "DELETED"}).json())
    assert [c["status"] for c in deleted] == ["DELETED"]
    error = assert_error(tenant.client.get(CLUSTERS, {"status": "ASLEEP"}), 400)
    assert "status" in error["details"]


def test_the_list_costs_the_same_queries_for_one_running_cluster_or_many(
    tenant, django_assert_max_num_queries
):
    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert tenant.client.get(CLUSTERS).status_code == 200
        return len(seen)

    ClusterFactory(organization=tenant.organization, status=ClusterStatus.RUNNING)
    one = queries()
    ClusterFactory.create_batch(5, organization=tenant.organization, status=ClusterStatus.RUNNING)
    with django_assert_max_num_queries(one):
        assert len(tenant.client.get(CLUSTERS).json()["results"]) == 6


def test_retrieve_and_rename(tenant):
    cluster = ClusterFactory(organization=tenant.organization, name="a")
    body = tenant.client.get(f"{CLUSTERS}/{cluster.public_id}").json()
    assert body["id"] == cluster.public_id and body["bootstrap_servers"] == cluster.bootstrap_servers
    response = tenant.client.patch(f"{CLUSTERS}/{cluster.public_id}", {"name": "b"})
    assert response.status_code == 200 and response.json()["name"] == "b"
    assert AuditEvent.objects.filter(action="cluster.update", target_id=cluster.public_id).exists()
    error = assert_error(tenant.client.patch(f"{CLUSTERS}/{cluster.public_id}", {"name": ""}), 400)
    assert "name" in error["details"]
    ClusterFactory(organization=tenant.organization, name="taken")
    assert_error(tenant.client.patch(f"{CLUSTERS}/{cluster.public_id}", {"name": "taken"}), 400)
    assert tenant.client.put(f"{CLUSTERS}/{cluster.public_id}", {"name": "c"}).status_code == 405


def test_delete_is_202_deleting_then_409(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    response = tenant.client.delete(f"{CLUSTERS}/{cluster.public_id}")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "DELETING"
    error = assert_error(tenant.client.delete(f"{CLUSTERS}/{cluster.public_id}"), 409, "invalid_transition")
    assert error["details"]["status"] == "DELETING"
    assert_error(tenant.client.patch(f"{CLUSTERS}/{cluster.public_id}", {"name": "x"}), 409, "invalid_state")
    assert_error(tenant.client.post(f"{CLUSTERS}/{cluster.public_id}/retry"), 409, "invalid_transition")
    services.cluster_transition(cluster=cluster, to=ClusterStatus.DELETED)
    assert tenant.client.get(f"{CLUSTERS}/{cluster.public_id}").json()["status"] == "DELETED"
    assert_error(tenant.client.delete(f"{CLUSTERS}/{cluster.public_id}"), 409, "invalid_transition")
    assert Cluster.objects.get(pk=cluster.pk).deleted_at is not None


def test_retry_a_failed_cluster(tenant):
    cluster = ClusterFactory(organization=tenant.organization, status=ClusterStatus.RUNNING)
    error = assert_error(
        tenant.client.post(f"{CLUSTERS}/{cluster.public_id}/retry"), 409, "invalid_transition"
    )
    assert "FAILED" in error["message"]
    failed = ClusterFactory(
        organization=tenant.organization, status=ClusterStatus.FAILED, status_reason="no room"
    )
    assert tenant.client.get(f"{CLUSTERS}/{failed.public_id}").json()["status_reason"] == "no room"
    response = tenant.client.post(f"{CLUSTERS}/{failed.public_id}/retry")
    assert response.status_code == 202 and response.json()["status"] == "PROVISIONING"
    assert response.json()["status_reason"] == ""


@pytest.mark.parametrize("role", [Role.MEMBER])
def test_members_read_but_do_not_write(tenant, role):
    cluster = ClusterFactory(organization=tenant.organization)
    member = tenant.member(role)
    assert member.client.get(CLUSTERS).json()["count"] == 1
    assert member.client.get(f"{CLUSTERS}/{cluster.public_id}").status_code == 200
    for response in (
        member.client.post(CLUSTERS, {"name": "x", "plan": "basic"}),
        member.client.patch(f"{CLUSTERS}/{cluster.public_id}", {"name": "x"}),
        member.client.delete(f"{CLUSTERS}/{cluster.public_id}"),
        member.client.post(f"{CLUSTERS}/{cluster.public_id}/retry"),
    ):
        error = assert_error(response, 403, "missing_role")
        assert "admin role" in error["message"] and "member" in error["message"]
    admin = tenant.member(Role.ADMIN)
    assert admin.client.post(CLUSTERS, {"name": "by-admin", "plan": "basic"}).status_code == 202


def test_other_tenants_clusters_are_404(tenant, other_tenant):
    theirs = ClusterFactory(
        organization=other_tenant.organization, status=ClusterStatus.FAILED, status_reason="x"
    )
    path = f"{CLUSTERS}/{theirs.public_id}"
    assert_error(tenant.client.get(path), 404, "not_found")
    assert_error(tenant.client.patch(path, {"name": "mine"}), 404)
    assert_error(tenant.client.delete(path), 404)
    assert_error(tenant.client.post(f"{path}/retry"), 404)
    assert_error(tenant.client.get(f"{CLUSTERS}/lkc-nope00"), 404)
    theirs.refresh_from_db()
    assert theirs.status == ClusterStatus.FAILED and theirs.name != "mine"


def test_cluster_endpoints_need_a_token(api_client, tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    path = f"{CLUSTERS}/{cluster.public_id}"
    for response in (
        api_client.get(CLUSTERS),
        api_client.post(CLUSTERS, {"name": "x", "plan": "basic"}),
        api_client.get(path),
        api_client.patch(path, {"name": "x"}),
        api_client.delete(path),
        api_client.post(f"{path}/retry"),
    ):
        assert_error(response, 401, "not_authenticated")
    tenant.client.delete(f"/api/v1/auth/tokens/{tenant.token.public_id}")
    assert_error(tenant.client.get(path), 401, "invalid_token")


ALL = list(ClusterStatus)


@pytest.mark.parametrize("start", ALL)
@pytest.mark.parametrize("to", ALL)
def test_state_table_is_enforced(start, to):
    cluster = ClusterFactory(status=start)
    allowed = to in TRANSITIONS[start]
    expected = {
        ClusterStatus.PROVISIONING: {ClusterStatus.RUNNING, ClusterStatus.FAILED, ClusterStatus.DELETING},
        ClusterStatus.RUNNING: {ClusterStatus.DELETING},
        ClusterStatus.FAILED: {ClusterStatus.DELETING, ClusterStatus.PROVISIONING},
        ClusterStatus.DELETING: {ClusterStatus.DELETED, ClusterStatus.FAILED},
        ClusterStatus.DELETED: set(),
    }
    assert allowed == (to in expected[start])
    if allowed:
        moved = services.cluster_transition(cluster=cluster, to=to, reason="broker did not start")
        assert moved.status == to
        assert (moved.status_reason == "broker did not start") == (to == ClusterStatus.FAILED)
    else:
        with pytest.raises(InvalidTransition) as info:
            services.cluster_transition(cluster=cluster, to=to, reason="x")
        assert info.value.status_code == 409 and info.value.details["allowed"] == sorted(TRANSITIONS[start])
        cluster.refresh_from_db()
        assert cluster.status == start


def test_failed_needs_a_reason_and_running_sets_fields():
    cluster = ClusterFactory(status=ClusterStatus.PROVISIONING, bootstrap_servers="")
    with pytest.raises(ValueError, match="reason"):
        services.cluster_transition(cluster=cluster, to=ClusterStatus.FAILED)
    running = services.cluster_transition(
        cluster=cluster, to=ClusterStatus.RUNNING, bootstrap_servers="127.0.0.1:19092"
    )
    assert (
        Cluster.objects.get(pk=cluster.pk).bootstrap_servers == "127.0.0.1:19092" == running.bootstrap_servers
    )
    event = AuditEvent.objects.get(action="cluster.status")
    assert event.actor_label == "system" and event.details == {"from": "PROVISIONING", "to": "RUNNING"}


def test_broker_count_is_chosen_for_dedicated_only(tenant):
    made = tenant.client.post(CLUSTERS, {"name": "big", "plan": "dedicated", "brokers": 5})
    assert made.status_code == 202, made.content
    assert made.json()["brokers"] == 5
    assert tenant.client.post(CLUSTERS, {"name": "d3", "plan": "dedicated"}).json()["brokers"] == 3
    for plan, brokers, words in (
        ("dedicated", 2, "runs 3 to 12 brokers"),
        ("dedicated", 13, "runs 3 to 12 brokers"),
        ("standard", 5, "always runs 3 brokers"),
        ("basic", 3, "always runs 1 broker;"),
    ):
        body = assert_error(
            tenant.client.post(CLUSTERS, {"name": "x", "plan": plan, "brokers": brokers}), 400
        )
        assert words in body["details"]["brokers"][0], body


def test_growing_a_cluster_is_for_dedicated_only_and_never_shrinks(
    tenant, django_capture_on_commit_callbacks
):
    org = tenant.organization
    standard = ClusterFactory(organization=org, plan="standard", broker_count=3)
    body = assert_error(tenant.client.post(f"{CLUSTERS}/{standard.public_id}/brokers", {"count": 4}), 400)
    assert "only Dedicated clusters grow" in body["message"]
    dedicated = ClusterFactory(organization=org, plan="dedicated", broker_count=3)
    hosts = [HostFactory(heartbeat_at=timezone.now()) for _ in range(4)]
    for node_id, host in enumerate(hosts[:3], start=1):
        BrokerFactory(cluster=dedicated, node_id=node_id, host=host)
    url = f"{CLUSTERS}/{dedicated.public_id}/brokers"
    assert (
        "shrinking" in assert_error(tenant.client.post(url, {"count": 2}), 400, "validation_error")["message"]
    )
    assert "already" in assert_error(tenant.client.post(url, {"count": 3}), 400)["message"]
    assert "at most 12" in assert_error(tenant.client.post(url, {"count": 13}), 400)["message"]
    assert_error(tenant.client.post(url, {"count": "many"}), 400)
    full = assert_error(tenant.client.post(url, {"count": 5}), 409, "insufficient_capacity")
    assert full["details"] == {"hosts_available": 1, "hosts_needed": 2}, full

    with django_capture_on_commit_callbacks() as callbacks:
        grown = tenant.client.post(url, {"count": 4})
    assert grown.status_code == 202, grown.content
    assert grown.json()["brokers"] == 4 and grown.json()["scale"]["state"] == "starting"
    assert len(callbacks) == 1  # provisioning hears of it after the commit
    assert_error(tenant.client.post(url, {"count": 5}), 409)  # one growth at a time
    assert_error(tenant.client.post(f"{CLUSTERS}/{dedicated.public_id}/restart"), 409)
    event = AuditEvent.objects.get(action="cluster.scale")
    assert event.details == {"from": 3, "to": 4}


def test_members_see_brokers_but_do_not_grow_clusters(tenant):
    cluster = ClusterFactory(organization=tenant.organization, plan="dedicated", broker_count=3)
    member = tenant.member(Role.MEMBER)
    assert member.client.get(f"{CLUSTERS}/{cluster.public_id}/brokers").status_code == 200
    assert_error(
        member.client.post(f"{CLUSTERS}/{cluster.public_id}/brokers", {"count": 4}), 403, "missing_role"
    )
