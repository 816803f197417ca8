"""API conventions: the error shape everywhere, the schema, the docs page, health."""

from __future__ import annotations

import pytest
import yaml
from django.test import RequestFactory

from controlplane import urls
from tests.platform.api import assert_error

pytestmark = pytest.mark.django_db


def test_unknown_api_paths_answer_json_404(api_client, tenant):
    assert_error(api_client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(tenant.client.get("/api/v1/clusters/lkc-abcdef/nope"), 404, "not_found")


def test_portal_404_is_html(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and "text/html" in response["Content-Type"]


def test_server_errors_under_api_are_json():
    request = RequestFactory().get("/api/v1/clusters")
    response = urls.handler500(request)
    assert response.status_code == 500
    import json

    assert json.loads(response.content) == {
        "error": {"code": "server_error", "message": "Internal server error.", "details": {}}
    }
    assert urls.handler500(RequestFactory().get("/")).status_code == 500


def test_method_not_allowed_and_unsupported_media_type_use_the_error_shape(tenant):
    assert_error(tenant.client.put("/api/v1/clusters", {}), 405, "method_not_allowed")
    response = tenant.client.generic("POST", "/api/v1/clusters", "name=x", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_schema_is_served_and_lists_every_endpoint(api_client):
    response = api_client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {
        "/api/v1/signup",
        "/api/v1/auth/tokens",
        "/api/v1/auth/tokens/{id}",
        "/api/v1/me",
        "/api/v1/organization",
        "/api/v1/members",
        "/api/v1/members/{id}",
        "/api/v1/audit-events",
        "/api/v1/plans",
        "/api/v1/plans/{name}",
        "/api/v1/clusters",
        "/api/v1/clusters/{id}",
        "/api/v1/clusters/{id}/retry",
        "/api/v1/clusters/{cluster_id}/api-keys",
        "/api/v1/clusters/{cluster_id}/api-keys/{key}",
    } <= paths
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "Error" in schema["components"]["schemas"]
    assert schema["paths"]["/api/v1/clusters"]["post"]["responses"]["default"]


def test_schema_generates_without_warnings(capsys):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_docs_page_and_healthz(client):
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert client.get("/api/v1/redoc/").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
