"""Portal account pages: sign-up, log in, log out, and the first home page."""

from __future__ import annotations

import pytest
from django.test import override_settings

from accounts.models import AuditEvent, Membership, Role, User
from tests.platform.factories import PASSWORD, ClusterFactory, MembershipFactory

pytestmark = pytest.mark.django_db

GOOD = {"email": "grace@example.com", "password": "a long enough passphrase", "organization": "Navy"}


def test_signup_page_creates_an_owner_and_logs_in(client):
    page = client.get("/signup/")
    assert page.status_code == 200
    html = page.content.decode()
    for field in ("email", "password", "organization"):
        assert f'name="{field}"' in html and f'for="id_{field}"' in html
    assert "csrfmiddlewaretoken" in html
    response = client.post("/signup/", GOOD)
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(email="grace@example.com")
    assert Membership.objects.get(user=user).role == Role.OWNER
    home = client.get("/")
    assert home.status_code == 200 and "Navy" in home.content.decode()
    event = AuditEvent.objects.get(action="organization.signup")
    assert event.actor == user and event.source_ip == "127.0.0.1"


def test_signup_page_shows_errors_beside_fields(client):
    MembershipFactory(user__email="taken@example.com")
    response = client.post(
        "/signup/", {"email": "taken@example.com", "password": "short", "organization": ""}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_organization-error"' in html and "This field is required." in html
    response = client.post("/signup/", {**GOOD, "email": "taken@example.com", "password": "short"})
    html = response.content.decode()
    assert "already exists" in html and 'id="id_email-error"' in html and 'id="id_password-error"' in html
    assert not User.objects.filter(email="grace@example.com").exists()


@override_settings(KASTLE_SIGNUP_OPEN=False)
def test_signup_page_when_closed(client):
    assert client.get("/signup/").status_code == 403
    assert client.post("/signup/", GOOD).status_code == 403
    assert not User.objects.exists()


@override_settings(KASTLE_SIGNUP_RATE="2/hour")
def test_signup_page_is_rate_limited(client):
    for i in range(2):
        assert client.post("/signup/", {**GOOD, "email": f"g{i}@example.com"}).status_code == 302
        client.logout()
    response = client.post("/signup/", {**GOOD, "email": "g9@example.com"})
    assert response.status_code == 429 and "Too many sign-ups" in response.content.decode()


def test_login_and_logout(client):
    membership = MembershipFactory(user__email="ops@example.com")
    assert client.get("/").status_code == 302  # login required
    assert client.get("/").headers["Location"].startswith("/login/")
    assert client.get("/login/").status_code == 200
    bad = client.post("/login/", {"username": "ops@example.com", "password": "wrong"})
    assert bad.status_code == 200 and "enter a correct" in bad.content.decode().lower()
    good = client.post("/login/", {"username": "OPS@example.com", "password": PASSWORD})
    assert good.status_code == 302
    assert membership.organization.name in client.get("/").content.decode()
    confirm = client.get("/logout/")
    assert confirm.status_code == 200 and 'method="post"' in confirm.content.decode()
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_home_shows_only_my_organizations_clusters(client):
    mine = MembershipFactory()
    theirs = MembershipFactory()
    ClusterFactory(organization=mine.organization, name="my-cluster")
    ClusterFactory(organization=theirs.organization, name="their-cluster")
    client.force_login(mine.user)
    html = client.get("/").content.decode()
    assert "my-cluster" in html and "their-cluster" not in html


def test_session_users_use_the_api_with_csrf(client):
    membership = MembershipFactory(role=Role.ADMIN)
    client.force_login(membership.user)
    assert client.get("/api/v1/clusters").status_code == 200
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(membership.user)
    response = strict.post(
        "/api/v1/clusters", {"name": "x", "plan": "basic"}, content_type="application/json"
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]
