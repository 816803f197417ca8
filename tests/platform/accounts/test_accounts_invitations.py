"""Invitations over REST: admins create and revoke links, members read them, anyone signed in joins
with a link; tenant walls and roles as everywhere else; the portal and REST share one service."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Invitation, Membership
from accounts.tokens import token_digest
from tests.platform.api import Tenant, assert_error, assert_page

pytestmark = pytest.mark.django_db

INVITATIONS = "/api/v1/invitations"


def _create(tenant: Tenant, **body) -> dict:
    body = {"email": "ada@example.com", "role": "member", **body}
    response = tenant.client.post(INVITATIONS, body, format="json")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


def test_admin_creates_a_link_shown_once_and_stored_as_a_digest():
    owner = Tenant("owner")
    admin = owner.member("admin")
    body = _create(admin, role="admin")
    assert body["role"] == "admin" and body["email"] == "ada@example.com"
    assert body["created_by"] == admin.user.email
    assert body["link"].endswith(f"/invite/{body['token']}/")
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.organization == owner.organization
    assert invitation.digest == token_digest(body["token"]) != body["token"]
    assert AuditEvent.objects.filter(
        organization=owner.organization, action="invitation.create", target_id=str(invitation.pk)
    ).exists()

    # Listed for members, never with its token.
    listed = assert_page(owner.member("member").client.get(INVITATIONS).json())
    assert [row["id"] for row in listed] == [body["id"]]
    assert "token" not in listed[0] and "link" not in listed[0]
    detail = owner.client.get(f"{INVITATIONS}/{body['id']}").json()
    assert detail["id"] == body["id"] and "token" not in detail


def test_roles_members_read_admins_write_nobody_invites_above_themselves():
    owner = Tenant("owner")
    member = owner.member("member")
    response = member.client.post(INVITATIONS, {"role": "member"}, format="json")
    error = assert_error(response, 403, "missing_role")
    assert "admin" in error["message"]
    invitation_id = _create(owner)["id"]
    assert_error(member.client.delete(f"{INVITATIONS}/{invitation_id}"), 403, "missing_role")

    admin = owner.member("admin")
    error = assert_error(admin.client.post(INVITATIONS, {"role": "owner"}, format="json"), 403)
    assert "admin or below" in error["message"]
    assert not Invitation.objects.filter(role="owner").exists()
    bad = assert_error(owner.client.post(INVITATIONS, {"role": "boss"}, format="json"), 400)
    assert "role" in bad["details"]
    assert APIClient().get(INVITATIONS).status_code == 401


def test_another_tenants_invitations_are_404_and_never_listed():
    a, b = Tenant("owner"), Tenant("owner")
    invitation_id = _create(a)["id"]
    assert_error(b.client.get(f"{INVITATIONS}/{invitation_id}"), 404)
    assert_error(b.client.delete(f"{INVITATIONS}/{invitation_id}"), 404)
    assert assert_page(b.client.get(INVITATIONS).json()) == []
    assert Invitation.objects.get(pk=invitation_id).revoked_at is None


def test_accept_joins_with_the_role_once_and_revoked_links_stop_working():
    owner = Tenant("owner")
    body = _create(owner, role="admin")
    newcomer = Tenant("owner")  # signed in, a member of their own organization
    response = newcomer.client.post(f"{INVITATIONS}/accept", {"token": body["token"]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["organization"]["id"] == owner.organization.public_id
    assert response.json()["role"] == "admin"
    assert Membership.objects.get(organization=owner.organization, user=newcomer.user).role == "admin"
    assert AuditEvent.objects.filter(organization=owner.organization, action="member.join").exists()
    # The link works once.
    again = Tenant("owner")
    assert_error(again.client.post(f"{INVITATIONS}/accept", {"token": body["token"]}, format="json"), 404)
    assert assert_page(owner.client.get(INVITATIONS).json()) == []

    revoked = _create(owner)
    assert owner.client.delete(f"{INVITATIONS}/{revoked['id']}").status_code == 204
    assert AuditEvent.objects.filter(action="invitation.revoke", target_id=str(revoked["id"])).exists()
    assert_error(again.client.post(f"{INVITATIONS}/accept", {"token": revoked["token"]}, format="json"), 404)
    assert_error(owner.client.delete(f"{INVITATIONS}/{revoked['id']}"), 404)
    assert not Membership.objects.filter(organization=owner.organization, user=again.user).exists()
    assert_error(again.client.post(f"{INVITATIONS}/accept", {}, format="json"), 400)
    assert APIClient().post(f"{INVITATIONS}/accept", {"token": "x"}, format="json").status_code == 401


def test_a_member_accepting_again_is_a_conflict():
    owner = Tenant("owner")
    member = owner.member("member")
    token = _create(owner)["token"]
    error = assert_error(member.client.post(f"{INVITATIONS}/accept", {"token": token}, format="json"), 409)
    assert error["code"] == "already_member"


def test_the_schema_describes_the_invitation_operations():
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    operations = [
        paths["/api/v1/invitations"]["get"],
        paths["/api/v1/invitations"]["post"],
        paths["/api/v1/invitations/{id}"]["get"],
        paths["/api/v1/invitations/{id}"]["delete"],
        paths["/api/v1/invitations/accept"]["post"],
    ]
    for operation in operations:
        assert operation.get("description") or operation.get("summary"), operation["operationId"]
    created = paths["/api/v1/invitations"]["post"]["responses"]["201"]["content"]["application/json"]
    assert created["schema"]["$ref"].endswith("/InvitationCreated")
