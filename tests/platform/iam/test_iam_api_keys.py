"""Cluster API keys over the API: shown once, stored as SCRAM verifiers, capped by the plan."""

from __future__ import annotations

import json
import logging
import re

import pytest

from accounts.models import AuditEvent, Role
from brokerd.credentials import MECHANISMS, check_plain
from clusters.models import INTERNAL_USERNAME, ClusterStatus
from clusters.plans import PLANS
from iam.models import ApiKey
from iam.selectors import cluster_credential_entries
from tests.platform.api import assert_error, assert_page
from tests.platform.factories import ApiKeyFactory, ClusterFactory

pytestmark = pytest.mark.django_db


def keys_path(cluster) -> str:
    return f"/api/v1/clusters/{cluster.public_id}/api-keys"


@pytest.fixture
def cluster(tenant):
    return ClusterFactory(organization=tenant.organization, plan="basic")


def test_create_returns_key_and_secret_once_and_stores_only_verifiers(tenant, cluster):
    response = tenant.client.post(keys_path(cluster), {"description": "orders service"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "key", "secret", "description", "cluster", "created_at", "expires_at", "owner", "scope"
    }  # fmt: skip
    assert body["owner"] == {"type": "user", "id": tenant.user.public_id} and body["scope"] is None
    assert re.fullmatch(r"[A-Z0-9]{16}", body["key"])
    assert len(body["secret"]) >= 48
    assert body["description"] == "orders service" and body["cluster"] == cluster.public_id
    api_key = ApiKey.objects.get(key=body["key"])
    assert set(api_key.verifier) == set(MECHANISMS)
    for entry in api_key.verifier.values():
        assert entry["iterations"] == 4096 and set(entry) == {
            "salt",
            "iterations",
            "stored_key",
            "server_key",
        }
    assert check_plain(api_key.verifier, body["secret"])
    assert not check_plain(api_key.verifier, body["secret"][:-1] + "?")
    assert api_key.created_by == tenant.user
    other = tenant.client.post(keys_path(cluster), {}).json()
    salts = {ApiKey.objects.get(key=k).verifier["SCRAM-SHA-256"]["salt"] for k in (body["key"], other["key"])}
    assert len(salts) == 2  # a salt per key
    event = AuditEvent.objects.get(action="api_key.create", target_id=body["key"])
    assert event.details == {"cluster": cluster.public_id}


def test_the_secret_never_appears_again(tenant, cluster, caplog):
    caplog.set_level(logging.DEBUG)
    body = tenant.client.post(keys_path(cluster), {"description": "once"}).json()
    secret = body["secret"]
    later = [
        tenant.client.get(keys_path(cluster)),
        tenant.client.get(f"{keys_path(cluster)}/{body['key']}"),
        tenant.client.get(f"/api/v1/clusters/{cluster.public_id}"),
        tenant.client.get("/api/v1/clusters"),
        tenant.client.get("/api/v1/audit-events"),
        tenant.client.delete(f"{keys_path(cluster)}/{body['key']}"),
        tenant.client.get(keys_path(cluster)),
        tenant.client.get("/api/v1/audit-events"),
    ]
    for response in later:
        assert secret not in response.content.decode()
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()
    stored = [json.dumps(row, default=str) for row in ApiKey.objects.values()]
    stored += [json.dumps(row, default=str) for row in AuditEvent.objects.values()]
    assert not any(secret in row for row in stored)


def test_list_and_retrieve_hide_secrets_and_revoked_keys(tenant, cluster):
    keep = tenant.client.post(keys_path(cluster), {"description": "keep"}).json()
    drop = tenant.client.post(keys_path(cluster), {"description": "drop"}).json()
    assert tenant.client.delete(f"{keys_path(cluster)}/{drop['key']}").status_code == 204
    results = assert_page(tenant.client.get(keys_path(cluster)).json())
    assert [k["key"] for k in results] == [keep["key"]]
    assert set(results[0]) == {
        "key", "description", "cluster", "created_by", "created_at", "last_used_at",
        "expires_at", "status", "rotated_from", "owner", "scope",
    }  # fmt: skip
    assert results[0]["created_by"] == tenant.user.email
    assert tenant.client.get(f"{keys_path(cluster)}/{keep['key']}").json()["description"] == "keep"
    assert_error(tenant.client.get(f"{keys_path(cluster)}/{drop['key']}"), 404, "not_found")
    assert_error(tenant.client.delete(f"{keys_path(cluster)}/{drop['key']}"), 404, "not_found")
    assert ApiKey.objects.get(key=drop["key"]).revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke", target_id=drop["key"]).count() == 1


def test_keys_list_is_paginated(tenant, cluster):
    ApiKeyFactory.create_batch(3, cluster=cluster)
    body = tenant.client.get(keys_path(cluster), {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]


def test_plan_caps_keys_per_cluster(tenant, cluster):
    limit = PLANS["basic"].max_api_keys
    ApiKeyFactory.create_batch(limit - 1, cluster=cluster)
    revoked = ApiKeyFactory(cluster=cluster)
    assert tenant.client.delete(f"{keys_path(cluster)}/{revoked.key}").status_code == 204
    assert tenant.client.post(keys_path(cluster), {}).status_code == 201  # revoked keys do not count
    error = assert_error(tenant.client.post(keys_path(cluster), {}), 409, "limit_exceeded")
    assert error["details"] == {"limit": limit, "plan": "basic"} and str(limit) in error["message"]


def test_bad_payload_is_400(tenant, cluster):
    error = assert_error(
        tenant.client.post(keys_path(cluster), {"description": "d" * 201}), 400, "validation_error"
    )
    assert "description" in error["details"]
    error = assert_error(tenant.client.post(keys_path(cluster), ["not", "an", "object"], format="json"), 400)
    assert error["details"]


@pytest.mark.parametrize("status", [ClusterStatus.DELETING, ClusterStatus.DELETED])
def test_no_keys_for_a_cluster_going_away(tenant, status):
    cluster = ClusterFactory(organization=tenant.organization, status=status)
    error = assert_error(tenant.client.post(keys_path(cluster), {}), 409, "invalid_state")
    assert error["details"] == {"status": status}


def test_members_list_keys_but_do_not_create_or_revoke(tenant, cluster):
    key = ApiKeyFactory(cluster=cluster)
    member = tenant.member(Role.MEMBER)
    assert member.client.get(keys_path(cluster)).json()["count"] == 1
    error = assert_error(member.client.post(keys_path(cluster), {}), 403, "missing_role")
    assert "admin" in error["message"]
    assert_error(member.client.delete(f"{keys_path(cluster)}/{key.key}"), 403, "missing_role")
    admin = tenant.member(Role.ADMIN)
    assert admin.client.post(keys_path(cluster), {}).status_code == 201


def test_other_tenants_keys_are_404(tenant, other_tenant, cluster):
    theirs = ClusterFactory(organization=other_tenant.organization)
    their_key = ApiKeyFactory(cluster=theirs)
    for path in (keys_path(theirs), f"{keys_path(theirs)}/{their_key.key}"):
        assert_error(tenant.client.get(path), 404, "not_found")
    assert_error(tenant.client.post(keys_path(theirs), {}), 404)
    assert_error(tenant.client.delete(f"{keys_path(theirs)}/{their_key.key}"), 404)
    # Their key through my cluster's path is not found either.
    assert_error(tenant.client.get(f"{keys_path(cluster)}/{their_key.key}"), 404)
    assert_error(tenant.client.delete(f"{keys_path(cluster)}/{their_key.key}"), 404)
    assert ApiKey.objects.get(pk=their_key.pk).revoked_at is None
    assert not ApiKey.objects.filter(cluster=theirs).exclude(pk=their_key.pk).exists()


def test_api_key_endpoints_need_a_token(api_client, cluster):
    key = ApiKeyFactory(cluster=cluster)
    for response in (
        api_client.get(keys_path(cluster)),
        api_client.post(keys_path(cluster), {}),
        api_client.get(f"{keys_path(cluster)}/{key.key}"),
        api_client.delete(f"{keys_path(cluster)}/{key.key}"),
    ):
        assert_error(response, 401, "not_authenticated")


def test_credential_entries_hold_live_keys_and_the_internal_user(cluster):
    live = ApiKeyFactory(cluster=cluster)
    ApiKeyFactory(cluster=cluster, revoked_at="2024-01-01T00:00:00Z")
    users = cluster_credential_entries(cluster=cluster)
    assert set(users) == {live.key, INTERNAL_USERNAME}
    assert check_plain(users[INTERNAL_USERNAME], cluster.internal_password())
    assert check_plain(users[live.key], "factory-secret-" + "x" * 40)
