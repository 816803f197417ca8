"""Sign-up and REST tokens over the API."""

from __future__ import annotations

import hashlib

import pytest
from django.test import override_settings

from accounts.models import ApiToken, AuditEvent, Membership, Role, User
from tests.platform.api import assert_error
from tests.platform.factories import PASSWORD

pytestmark = pytest.mark.django_db

SIGNUP = "/api/v1/signup"
TOKENS = "/api/v1/auth/tokens"
GOOD = {
    "email": "Ada@Example.com",
    "password": "a long enough passphrase",
    "organization": "Analytical Engines",
}


def test_signup_creates_owner_org_and_token(api_client):
    response = api_client.post(SIGNUP, GOOD, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"token", "organization", "user"}
    assert body["user"]["email"] == "ada@example.com"
    assert body["organization"]["name"] == "Analytical Engines"
    assert body["organization"]["id"].startswith("org-")
    assert body["user"]["id"].startswith("usr-")
    user = User.objects.get(email="ada@example.com")
    assert user.check_password(GOOD["password"])
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.public_id == body["organization"]["id"]
    # The token works, and only its digest is stored.
    stored = ApiToken.objects.get(user=user)
    assert stored.digest == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in {stored.digest, stored.prefix, stored.name}
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    me = api_client.get("/api/v1/me").json()
    assert me["role"] == "owner" and me["organization"]["id"] == body["organization"]["id"]
    actions = set(
        AuditEvent.objects.filter(organization=membership.organization).values_list("action", flat=True)
    )
    assert {"organization.signup", "token.create"} <= actions
    event = AuditEvent.objects.get(action="organization.signup")
    assert event.source_ip == "127.0.0.1" and event.actor == user


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"email", "password", "organization"}),
        ({**GOOD, "email": "not-an-email"}, {"email"}),
        ({**GOOD, "password": "short"}, {"password"}),
        ({**GOOD, "password": "1234567890123"}, {"password"}),
        ({**GOOD, "organization": ""}, {"organization"}),
        ({**GOOD, "organization": "x" * 101}, {"organization"}),
    ],
)
def test_signup_rejects_bad_payloads_with_field_errors(api_client, payload, fields):
    error = assert_error(api_client.post(SIGNUP, payload, format="json"), 400, "validation_error")
    assert set(error["details"]) == fields


def test_signup_rejects_a_taken_email_case_insensitively(api_client):
    assert api_client.post(SIGNUP, GOOD, format="json").status_code == 201
    error = assert_error(api_client.post(SIGNUP, {**GOOD, "email": "ADA@example.COM"}, format="json"), 400)
    assert "email" in error["details"]


def test_signup_rejects_malformed_json(api_client):
    response = api_client.generic("POST", SIGNUP, "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


@override_settings(KASTLE_SIGNUP_OPEN=False)
def test_signup_can_be_switched_off(api_client):
    assert_error(api_client.post(SIGNUP, GOOD, format="json"), 403, "signup_closed")
    assert not User.objects.exists()


@override_settings(KASTLE_SIGNUP_RATE="3/hour")
def test_signup_is_rate_limited(api_client):
    for i in range(3):
        assert (
            api_client.post(SIGNUP, {**GOOD, "email": f"u{i}@example.com"}, format="json").status_code == 201
        )
    error = assert_error(
        api_client.post(SIGNUP, {**GOOD, "email": "u9@example.com"}, format="json"), 429, "throttled"
    )
    assert error["details"]["retry_after_seconds"] > 0
    # Counted per client address: another address may still sign up.
    other = api_client.post(
        SIGNUP, {**GOOD, "email": "u10@example.com"}, format="json", REMOTE_ADDR="10.1.2.3"
    )
    assert other.status_code == 201


def test_token_create_with_email_and_password(api_client, tenant):
    response = api_client.post(
        TOKENS, {"email": tenant.user.email.upper(), "password": PASSWORD, "name": "ci"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("tok-") and len(body["token"]) >= 40
    assert body["organization"] == tenant.organization.public_id
    token = ApiToken.objects.get(public_id=body["id"])
    assert token.digest == hashlib.sha256(body["token"].encode()).hexdigest()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert api_client.get("/api/v1/me").status_code == 200
    assert AuditEvent.objects.filter(action="token.create", target_id=body["id"]).exists()


def test_token_create_rejects_wrong_password_and_bad_payload(api_client, tenant):
    assert_error(
        api_client.post(TOKENS, {"email": tenant.user.email, "password": "wrong"}), 401, "invalid_credentials"
    )
    assert_error(api_client.post(TOKENS, {"email": "nobody@example.com", "password": PASSWORD}), 401)
    error = assert_error(api_client.post(TOKENS, {"email": "nope"}), 400, "validation_error")
    assert set(error["details"]) == {"email", "password"}
    error = assert_error(
        api_client.post(
            TOKENS, {"email": tenant.user.email, "password": PASSWORD, "organization": "org-zzzz"}
        ),
        400,
    )
    assert "organization" in error["details"]


@override_settings(KASTLE_TOKEN_RATE="2/minute")
def test_token_create_is_rate_limited(api_client, tenant):
    for _ in range(2):
        api_client.post(TOKENS, {"email": tenant.user.email, "password": "wrong"})
    assert_error(
        api_client.post(TOKENS, {"email": tenant.user.email, "password": PASSWORD}), 429, "throttled"
    )


def test_token_list_is_paginated_and_never_shows_tokens(tenant):
    body = tenant.client.get(TOKENS).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 1
    assert body["results"][0]["id"] == tenant.token.public_id
    assert tenant.raw_token not in str(body)
    assert set(body["results"][0]) == {"id", "name", "prefix", "created_at", "last_used_at"}


def test_token_revoke_is_immediate(tenant):
    detail = f"{TOKENS}/{tenant.token.public_id}"
    assert tenant.client.get(detail).status_code == 200
    assert tenant.client.delete(detail).status_code == 204
    assert_error(tenant.client.get("/api/v1/me"), 401, "invalid_token")
    assert AuditEvent.objects.filter(action="token.revoke", target_id=tenant.token.public_id).exists()


def test_tokens_of_other_users_and_tenants_are_404(tenant, other_tenant):
    colleague = tenant.member(Role.ADMIN)
    for token in (other_tenant.token, colleague.token):
        assert_error(tenant.client.get(f"{TOKENS}/{token.public_id}"), 404, "not_found")
        assert_error(tenant.client.delete(f"{TOKENS}/{token.public_id}"), 404, "not_found")
    other_tenant.token.refresh_from_db()
    assert other_tenant.token.revoked_at is None


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer kst_not-a-real-token", "Bearer a b", "Token abc"],
)
def test_requests_without_a_valid_token_are_401(api_client, tenant, header):
    if header:
        api_client.credentials(HTTP_AUTHORIZATION=header)
    for path in (TOKENS, f"{TOKENS}/{tenant.token.public_id}", "/api/v1/me"):
        response = api_client.get(path)
        assert_error(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert_error(api_client.delete(f"{TOKENS}/{tenant.token.public_id}"), 401)


def test_a_removed_member_token_no_longer_grants_access(tenant):
    colleague = tenant.member(Role.MEMBER)
    assert colleague.client.get("/api/v1/me").status_code == 200
    assert tenant.client.delete(f"/api/v1/members/{colleague.user.public_id}").status_code == 204
    assert_error(colleague.client.get("/api/v1/me"), 401)
