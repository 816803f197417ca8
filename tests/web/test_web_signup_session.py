"""Portal sign-up relies on the session: no REST token is created behind the user's back (REST
sign-up still returns its token)."""

from __future__ import annotations

import pytest

from accounts.models import ApiToken, AuditEvent, User

pytestmark = pytest.mark.django_db

FORM = {"email": "grace@example.com", "password": "a long passphrase 42", "organization": "Compilers"}


def test_portal_signup_logs_in_without_creating_a_rest_token(client):
    response = client.post("/signup/", FORM)
    assert response.status_code == 302
    user = User.objects.get(email="grace@example.com")
    assert not ApiToken.objects.filter(user=user).exists()
    assert not AuditEvent.objects.filter(action="token.create").exists()
    assert AuditEvent.objects.filter(action="organization.signup").exists()
    tokens_page = client.get("/organization/tokens/").content.decode()
    assert "sign-up" not in tokens_page
    assert client.get("/").status_code == 200  # the session is enough


def test_rest_signup_still_returns_its_token(api_client):
    body = api_client.post("/api/v1/signup", FORM, format="json").json()
    token = ApiToken.objects.get(user__email="grace@example.com")
    assert token.name == "sign-up" and body["token"].startswith(token.prefix)
