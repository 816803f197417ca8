"""Web and REST hardening: log-in throttling and lockout (with audit events), CSRF on every form,
secure cookies / HSTS / CSP / frame options over HTTPS, password validators, and no secrets on
error pages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from accounts.models import AuditEvent
from tests.platform.api import Tenant, assert_error

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery 42"
pytestmark = pytest.mark.django_db


def _user(email: str):
    tenant = Tenant("owner")
    user = tenant.user
    user.email = email
    user.set_password(PASSWORD)
    user.save()
    return tenant


def _web(ip: str) -> Client:
    return Client(REMOTE_ADDR=ip)


def _portal_login(client: Client, email: str, password: str):
    return client.post("/login/", {"username": email, "password": password})


# --- lockout and throttling ----------------------------------------------------------------------
@override_settings(KASTLE_LOGIN_MAX_FAILURES=3, KASTLE_LOGIN_LOCKOUT_SECONDS=60)
def test_an_account_is_locked_after_failed_logins_even_for_the_right_password() -> None:
    tenant = _user("locked@hardening.example")
    web = _web("198.51.100.10")
    for _ in range(3):
        response = _portal_login(web, "locked@hardening.example", "wrong password!")
        assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated
    response = _portal_login(web, "locked@hardening.example", PASSWORD)
    assert not response.wsgi_request.user.is_authenticated
    assert "locked" in response.content.decode()
    # REST password log-in says so too (429 with retry_after_seconds), from any address.
    from rest_framework.test import APIClient

    api = APIClient(REMOTE_ADDR="198.51.100.11")
    body = {"email": "locked@hardening.example", "password": PASSWORD}
    error = assert_error(api.post("/api/v1/auth/tokens", body, format="json"), 429, "throttled")
    assert "locked" in error["message"] and 0 < error["details"]["retry_after_seconds"] <= 60

    actions = list(
        AuditEvent.objects.filter(organization=tenant.organization, action__startswith="auth.")
        .order_by("id")
        .values_list("action", "source_ip")
    )
    assert actions[:3] == [("auth.login_failed", "198.51.100.10")] * 3
    assert ("auth.login_locked", "198.51.100.10") in actions
    assert all(PASSWORD not in json.dumps(e.details) for e in AuditEvent.objects.all())


@override_settings(KASTLE_LOGIN_MAX_FAILURES=3, KASTLE_LOGIN_LOCKOUT_SECONDS=60)
def test_a_successful_login_resets_the_count() -> None:
    _user("reset@hardening.example")
    web = _web("198.51.100.20")
    for _ in range(2):
        _portal_login(web, "reset@hardening.example", "wrong password!")
    assert _portal_login(web, "reset@hardening.example", PASSWORD).status_code == 302
    web.post("/logout/")
    for _ in range(2):
        _portal_login(web, "reset@hardening.example", "wrong password!")
    assert _portal_login(web, "reset@hardening.example", PASSWORD).status_code == 302


@override_settings(KASTLE_LOGIN_IP_MAX_FAILURES=4, KASTLE_LOGIN_LOCKOUT_SECONDS=60)
def test_an_address_spraying_passwords_is_throttled() -> None:
    _user("victim@hardening.example")
    web = _web("203.0.113.66")
    for i in range(4):
        _portal_login(web, f"nobody{i}@hardening.example", "guess guess guess")
    response = _portal_login(web, "victim@hardening.example", PASSWORD)
    assert not response.wsgi_request.user.is_authenticated
    assert "from your address" in response.content.decode()
    event = AuditEvent.objects.get(action="auth.login_throttled")
    assert event.source_ip == "203.0.113.66" and event.organization is None
    # Another address is not affected.
    assert _portal_login(_web("203.0.113.67"), "victim@hardening.example", PASSWORD).status_code == 302


# --- CSRF ----------------------------------------------------------------------------------------
def test_every_post_form_carries_a_csrf_token() -> None:
    templates = list((ROOT / "web" / "templates").rglob("*.html"))
    assert templates
    for path in templates:
        text = path.read_text()
        for form in re.findall(r"<form\b[^>]*>.*?</form>", text, flags=re.S | re.I):
            if re.search(r"method\s*=\s*[\"']?post", form, flags=re.I):
                assert "csrf_token" in form, f"{path.relative_to(ROOT)}: a POST form without a csrf_token"


def test_portal_posts_without_a_csrf_token_are_refused() -> None:
    _user("csrf@hardening.example")
    web = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.30")
    for path, data in (
        ("/login/", {"username": "csrf@hardening.example", "password": PASSWORD}),
        ("/signup/", {"email": "x@hardening.example", "password": PASSWORD, "organization": "X"}),
        ("/logout/", {}),
    ):
        assert web.post(path, data).status_code == 403, path
    # With the token from the form, the log-in works.
    page = web.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = web.post("/login/", {"username": "csrf@hardening.example", "password": PASSWORD,
                                    "csrfmiddlewaretoken": token})  # fmt: skip
    assert response.status_code == 302


def test_session_authenticated_api_writes_need_csrf() -> None:
    tenant = _user("apicsrf@hardening.example")
    web = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.31")
    web.force_login(tenant.user)
    response = web.post("/api/v1/clusters", {"name": "x", "plan": "basic"}, content_type="application/json")
    assert response.status_code == 403


# --- HTTPS headers and cookies ----------------------------------------------------------------------
def _settings_with(env: dict[str, str]) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({k: "
        "getattr(s, k, None) for k in ['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', "
        "'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER', 'X_FRAME_OPTIONS', 'SESSION_COOKIE_HTTPONLY']}))"
    )
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", **env,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kastle_https_turns_on_secure_cookies_hsts_and_redirects() -> None:
    off = _settings_with({"KASTLE_HTTPS": "false"})
    assert off["SESSION_COOKIE_SECURE"] is False and off["SECURE_HSTS_SECONDS"] in (None, 0)
    on = _settings_with({"KASTLE_HTTPS": "true", "KASTLE_TRUST_X_FORWARDED_PROTO": "true"})
    assert on["SESSION_COOKIE_SECURE"] is True and on["CSRF_COOKIE_SECURE"] is True
    assert on["SECURE_HSTS_SECONDS"] >= 31536000 and on["SECURE_SSL_REDIRECT"] is True
    assert on["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert on["X_FRAME_OPTIONS"] == "DENY" and on["SESSION_COOKIE_HTTPONLY"] is True


@override_settings(
    SESSION_COOKIE_SECURE=True,
    CSRF_COOKIE_SECURE=True,
    SECURE_HSTS_SECONDS=31536000,
    SECURE_SSL_REDIRECT=True,
)
def test_responses_over_https_carry_the_security_headers() -> None:
    _user("headers@hardening.example")
    web = _web("198.51.100.40")
    assert web.get("/login/").status_code == 301  # plain HTTP is redirected
    page = web.get("/login/", secure=True)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"].startswith("max-age=31536000")
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in page["Content-Security-Policy"]
    assert "default-src 'self'" in page["Content-Security-Policy"]
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    response = web.post(
        "/login/", {"username": "headers@hardening.example", "password": PASSWORD}, secure=True
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    api = web.get("/api/v1/me", secure=True)
    assert "Content-Security-Policy" in api and api["X-Frame-Options"] == "DENY"


# --- password validators ---------------------------------------------------------------------------
def test_password_validators_on_signup_and_password_change() -> None:
    from rest_framework.test import APIClient

    api = APIClient(REMOTE_ADDR="198.51.100.50")
    for weak in ("short", "password123", "12345678901", "weakpass@hardening.example"):
        body = {"email": "weakpass@hardening.example", "password": weak, "organization": "W"}
        error = assert_error(api.post("/api/v1/signup", body, format="json"), 400)
        assert "password" in error["details"], weak
    tenant = _user("change@hardening.example")
    client = tenant.client
    error = assert_error(
        client.post("/api/v1/me/password", {"current_password": PASSWORD, "new_password": "abc"}), 400
    )
    assert "new_password" in error["details"]
    body = {"current_password": "nope", "new_password": "a fine new passphrase"}
    error = assert_error(client.post("/api/v1/me/password", body), 400)
    assert "current_password" in error["details"]
    response = client.post(
        "/api/v1/me/password", {"current_password": PASSWORD, "new_password": "a fine new passphrase"}
    )
    assert response.status_code == 204
    tenant.user.refresh_from_db()
    assert tenant.user.check_password("a fine new passphrase")
    assert AuditEvent.objects.filter(organization=tenant.organization, action="user.password_change").exists()


# --- error pages ---------------------------------------------------------------------------------
def test_error_reports_hide_passwords_secrets_and_tokens(rf) -> None:
    from django.views.debug import ExceptionReporter

    # Made at run time, so the debug page's source-code excerpts cannot contain them.
    names = ("password", "secret", "api_token", "bearer")
    secrets = {name: f"{name}-{os.urandom(6).hex()}" for name in names}
    request = rf.post(
        "/signup/",
        {"email": "a@b.example", **{k: v for k, v in secrets.items() if k != "bearer"}},
        HTTP_AUTHORIZATION=f"Bearer {secrets['bearer']}",
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(request, *sys.exc_info())
    for text in (reporter.get_traceback_text(), reporter.get_traceback_html()):
        for secret in secrets.values():
            assert secret not in text
    assert "a@b.example" in reporter.get_traceback_text()  # the rest is still there


def test_server_errors_show_no_details() -> None:
    """DEBUG is off by default: a 500 is a plain page (portal) or the error shape (API)."""
    from django.conf import settings

    assert settings.DEBUG is False
