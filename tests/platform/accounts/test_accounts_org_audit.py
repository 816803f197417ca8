"""The organization, its members and roles, and the audit log over the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, Membership, Role
from tests.platform.api import assert_error, assert_page
from tests.platform.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


def test_me_and_organization(tenant):
    me = tenant.client.get("/api/v1/me").json()
    assert me == {
        "user": {"id": tenant.user.public_id, "email": tenant.user.email},
        "organization": {
            "id": tenant.organization.public_id,
            "name": tenant.organization.name,
            "created_at": me["organization"]["created_at"],
        },
        "role": "owner",
    }
    org = tenant.client.get("/api/v1/organization").json()
    assert org["id"] == tenant.organization.public_id


def test_owner_renames_the_organization(tenant):
    response = tenant.client.patch("/api/v1/organization", {"name": "  Renamed  "})
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Renamed"
    event = AuditEvent.objects.get(action="organization.update")
    assert event.details == {"name": {"from": tenant.organization.name, "to": "Renamed"}}
    assert event.actor == tenant.user and event.source_ip == "127.0.0.1"
    assert_error(tenant.client.patch("/api/v1/organization", {"name": "   "}), 400, "validation_error")
    error = assert_error(tenant.client.patch("/api/v1/organization", {}), 400)
    assert "name" in error["details"]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER])
def test_only_owners_change_the_organization(tenant, role):
    other = tenant.member(role)
    error = assert_error(other.client.patch("/api/v1/organization", {"name": "Nope"}), 403, "missing_role")
    assert "owner" in error["message"] and error["details"] == {"required_role": "owner", "your_role": role}


def test_members_list_and_role_changes(tenant):
    admin = tenant.member(Role.ADMIN)
    member = tenant.member(Role.MEMBER)
    results = assert_page(member.client.get("/api/v1/members").json())
    assert {(m["email"], m["role"]) for m in results} == {
        (tenant.user.email, "owner"),
        (admin.user.email, "admin"),
        (member.user.email, "member"),
    }
    path = f"/api/v1/members/{member.user.public_id}"
    assert member.client.get(path).json()["role"] == "member"
    response = tenant.client.patch(path, {"role": "admin"})
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert Membership.objects.get(user=member.user).role == Role.ADMIN
    assert AuditEvent.objects.filter(action="member.update", target_id=member.user.public_id).exists()
    error = assert_error(tenant.client.patch(path, {"role": "emperor"}), 400)
    assert "role" in error["details"]
    # Admins manage clusters, not members.
    error = assert_error(admin.client.patch(path, {"role": "member"}), 403, "missing_role")
    assert "owner" in error["message"]
    assert_error(admin.client.delete(path), 403, "missing_role")
    assert tenant.client.delete(path).status_code == 204
    assert not Membership.objects.filter(user=member.user).exists()
    assert AuditEvent.objects.filter(action="member.remove", target_id=member.user.public_id).exists()


def test_the_last_owner_stays(tenant):
    path = f"/api/v1/members/{tenant.user.public_id}"
    assert_error(tenant.client.patch(path, {"role": "admin"}), 409, "last_owner")
    assert_error(tenant.client.delete(path), 409, "last_owner")
    second = tenant.member(Role.OWNER)
    assert tenant.client.patch(path, {"role": "admin"}).status_code == 200
    assert second.client.get("/api/v1/me").json()["role"] == "owner"


def test_other_tenants_members_are_404(tenant, other_tenant):
    path = f"/api/v1/members/{other_tenant.user.public_id}"
    assert_error(tenant.client.get(path), 404, "not_found")
    assert_error(tenant.client.patch(path, {"role": "member"}), 404)
    assert_error(tenant.client.delete(path), 404)
    assert Membership.objects.get(user=other_tenant.user).role == Role.OWNER


def test_unauthenticated_is_401(api_client, tenant):
    for method, path in [
        ("get", "/api/v1/me"),
        ("get", "/api/v1/organization"),
        ("patch", "/api/v1/organization"),
        ("get", "/api/v1/members"),
        ("get", f"/api/v1/members/{tenant.user.public_id}"),
        ("patch", f"/api/v1/members/{tenant.user.public_id}"),
        ("delete", f"/api/v1/members/{tenant.user.public_id}"),
        ("get", "/api/v1/audit-events"),
    ]:
        assert_error(getattr(api_client, method)(path), 401)


def test_audit_log_lists_writes_scoped_filtered_and_paginated(tenant, other_tenant):
    tenant.client.post("/api/v1/clusters", {"name": "one", "plan": "basic"})
    tenant.client.patch("/api/v1/organization", {"name": "Audited"})
    other_tenant.client.post("/api/v1/clusters", {"name": "theirs", "plan": "basic"})
    member = tenant.member(Role.MEMBER)

    results = assert_page(member.client.get("/api/v1/audit-events").json())
    actions = [e["action"] for e in results]
    assert actions[:3] == ["token.create", "organization.update", "cluster.create"]  # newest first
    assert "theirs" not in str(results)
    create = results[2]
    assert create["actor"] == tenant.user.email and create["source_ip"] == "127.0.0.1"
    assert create["target"]["type"] == "cluster" and create["target"]["id"].startswith("lkc-")
    assert create["target"]["label"] == "one" and create["details"] == {"plan": "basic"}

    only = assert_page(tenant.client.get("/api/v1/audit-events", {"action": "cluster.create"}).json())
    assert [e["action"] for e in only] == ["cluster.create"]
    prefixed = assert_page(tenant.client.get("/api/v1/audit-events", {"action": "cluster."}).json())
    assert {e["action"] for e in prefixed} == {"cluster.create"}
    by_target = tenant.client.get("/api/v1/audit-events", {"target_id": create["target"]["id"]}).json()
    assert by_target["count"] == 1
    by_actor = tenant.client.get("/api/v1/audit-events", {"actor": tenant.user.email.upper()}).json()
    assert by_actor["count"] == len(results) - 1  # all but the member's own token.create
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert tenant.client.get("/api/v1/audit-events", {"since": future}).json()["count"] == 0
    assert tenant.client.get("/api/v1/audit-events", {"until": future}).json()["count"] == len(results)
    error = assert_error(tenant.client.get("/api/v1/audit-events", {"since": "yesterday"}), 400)
    assert "since" in error["details"]


def test_audit_log_pages(tenant):
    AuditEventFactory.create_batch(7, organization=tenant.organization)
    first = tenant.client.get("/api/v1/audit-events", {"page_size": 5}).json()
    assert first["count"] == 8 and len(first["results"]) == 5 and first["next"]
    second = tenant.client.get(first["next"]).json()
    assert len(second["results"]) == 3 and second["next"] is None
    assert_error(tenant.client.get("/api/v1/audit-events", {"page": 99}), 404, "not_found")
