"""Service accounts over REST: admins write, members read, audited, another tenant's are 404."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent, Role
from iam.models import ApiKey, ServiceAccount
from tests.platform.api import assert_error, assert_page
from tests.platform.factories import ClusterFactory

pytestmark = pytest.mark.django_db
PATH = "/api/v1/service-accounts"


def test_create_list_retrieve_update_delete_round_trip(tenant):
    made = tenant.client.post(
        PATH, {"name": "orders-app", "description": "the orders service"}, format="json"
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert set(body) == {"id", "name", "description", "created_at", "updated_at", "api_keys"}
    assert body["id"].startswith("sa-") and body["name"] == "orders-app" and body["api_keys"] == []
    results = assert_page(tenant.client.get(PATH).json())
    assert [r["id"] for r in results] == [body["id"]]
    assert tenant.client.get(f"{PATH}/{body['id']}").json()["description"] == "the orders service"
    patched = tenant.client.patch(f"{PATH}/{body['id']}", {"description": "renamed"}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "renamed"
    assert patched.json()["name"] == "orders-app"
    assert tenant.client.delete(f"{PATH}/{body['id']}").status_code == 204
    assert_error(tenant.client.get(f"{PATH}/{body['id']}"), 404, "not_found")
    actions = list(
        AuditEvent.objects.filter(target_id=body["id"]).order_by("id").values_list("action", flat=True)
    )
    assert actions == ["service_account.create", "service_account.update", "service_account.delete"]


def test_name_is_required_valid_and_unique_per_organization(tenant, other_tenant):
    assert tenant.client.post(PATH, {"name": "app"}, format="json").status_code == 201
    error = assert_error(tenant.client.post(PATH, {"name": "APP"}, format="json"), 400, "validation_error")
    assert "name" in error["details"]
    error = assert_error(tenant.client.post(PATH, {"description": "x"}, format="json"), 400)
    assert "name" in error["details"]
    error = assert_error(tenant.client.post(PATH, {"name": "bad/name"}, format="json"), 400)
    assert "name" in error["details"]
    # another organization may use the same name
    assert other_tenant.client.post(PATH, {"name": "app"}, format="json").status_code == 201
    second = tenant.client.post(PATH, {"name": "other"}, format="json").json()
    error = assert_error(tenant.client.patch(f"{PATH}/{second['id']}", {"name": "app"}, format="json"), 400)
    assert "name" in error["details"]


def test_members_read_admins_write(tenant):
    account = tenant.client.post(PATH, {"name": "app"}, format="json").json()
    member = tenant.member(Role.MEMBER)
    assert member.client.get(PATH).status_code == 200
    assert member.client.get(f"{PATH}/{account['id']}").status_code == 200
    assert_error(member.client.post(PATH, {"name": "x"}, format="json"), 403, "missing_role")
    assert_error(member.client.patch(f"{PATH}/{account['id']}", {"name": "y"}, format="json"), 403)
    assert_error(member.client.delete(f"{PATH}/{account['id']}"), 403)
    admin = tenant.member(Role.ADMIN)
    assert admin.client.post(PATH, {"name": "by-admin"}, format="json").status_code == 201


def test_another_tenants_service_accounts_are_404(tenant, other_tenant, api_client):
    account = tenant.client.post(PATH, {"name": "app"}, format="json").json()
    assert assert_page(other_tenant.client.get(PATH).json()) == []
    for response in (
        other_tenant.client.get(f"{PATH}/{account['id']}"),
        other_tenant.client.patch(f"{PATH}/{account['id']}", {"name": "stolen"}, format="json"),
        other_tenant.client.delete(f"{PATH}/{account['id']}"),
    ):
        assert_error(response, 404, "not_found")
    assert ServiceAccount.objects.get(public_id=account["id"]).name == "app"
    assert api_client.get(PATH).status_code == 401


def test_keys_owned_by_a_service_account(tenant, other_tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    account = tenant.client.post(PATH, {"name": "app"}, format="json").json()
    keys = f"/api/v1/clusters/{cluster.public_id}/api-keys"
    body = {"owner": {"type": "service_account", "id": account["id"]}, "description": "app key"}
    made = tenant.client.post(keys, body, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["owner"] == {"type": "service_account", "id": account["id"]}
    listed = assert_page(tenant.client.get(keys).json())
    assert listed[0]["owner"] == {"type": "service_account", "id": account["id"]}
    assert tenant.client.get(f"{PATH}/{account['id']}").json()["api_keys"] == [made.json()["key"]]
    event = AuditEvent.objects.get(action="api_key.create", target_id=made.json()["key"])
    assert event.details["service_account"] == account["id"]
    # another tenant's service account cannot own a key here (and is not revealed)
    foreign = other_tenant.client.post(PATH, {"name": "theirs"}, format="json").json()
    error = assert_error(
        tenant.client.post(keys, {"owner": {"type": "service_account", "id": foreign["id"]}}, format="json"),
        400,
    )
    assert "owner" in error["details"]
    error = assert_error(
        tenant.client.post(keys, {"owner": {"type": "robot", "id": "x"}}, format="json"), 400
    )
    assert "owner" in error["details"]
    # deleting the account revokes its keys
    assert tenant.client.delete(f"{PATH}/{account['id']}").status_code == 204
    assert ApiKey.objects.get(key=made.json()["key"]).revoked_at is not None


def test_keys_owned_by_the_caller_or_a_member(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    keys = f"/api/v1/clusters/{cluster.public_id}/api-keys"
    mine = tenant.client.post(keys, {"owner": {"type": "user", "id": tenant.user.public_id}}, format="json")
    assert mine.json()["owner"] == {"type": "user", "id": tenant.user.public_id}
    member = tenant.member(Role.MEMBER)
    theirs = tenant.client.post(keys, {"owner": {"type": "user", "id": member.user.public_id}}, format="json")
    assert theirs.json()["owner"] == {"type": "user", "id": member.user.public_id}
    error = assert_error(
        tenant.client.post(keys, {"owner": {"type": "user", "id": "usr-nobody"}}, format="json"), 400
    )
    assert "owner" in error["details"]


def test_scoped_keys_validate_and_show_their_scope(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    keys = f"/api/v1/clusters/{cluster.public_id}/api-keys"
    made = tenant.client.post(
        keys, {"scope": {"topic_prefix": "orders.", "access": "produce"}}, format="json"
    )
    assert made.status_code == 201, made.content
    assert made.json()["scope"] == {"topic_prefix": "orders.", "access": "produce"}
    api_key = ApiKey.objects.get(key=made.json()["key"])
    assert (api_key.scope_topic_prefix, api_key.scope_access) == ("orders.", "produce")
    for bad, field in (
        ({"topic_prefix": "orders.", "access": "admin"}, "access"),
        ({"access": "consume"}, "topic_prefix"),
        ({"topic_prefix": "a b", "access": "consume"}, "topic_prefix"),
    ):
        error = assert_error(tenant.client.post(keys, {"scope": bad}, format="json"), 400, "validation_error")
        assert field in error["details"]["scope"], error
    # rotation keeps owner and scope
    rotated = tenant.client.post(f"{keys}/{made.json()['key']}/rotate", {}, format="json")
    assert rotated.status_code == 201 and rotated.json()["scope"] == made.json()["scope"]
