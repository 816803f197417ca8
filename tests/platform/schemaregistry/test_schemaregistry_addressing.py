"""Where tenants find their registry: `schema_registry_url` in the REST API, the cluster's overview
page and its copy-ready client snippets (no broker needed: nothing here talks to the cluster)."""

from __future__ import annotations

import html

import pytest
from django.test import Client

from clusters.models import ClusterStatus
from tests.platform.api import Tenant
from tests.platform.factories import ApiKeyFactory, ClusterFactory

pytestmark = pytest.mark.django_db


def test_rest_gives_the_url_of_running_clusters_only():
    tenant = Tenant("owner")
    running = ClusterFactory(organization=tenant.organization, status=ClusterStatus.RUNNING)
    pending = ClusterFactory(organization=tenant.organization, status=ClusterStatus.PROVISIONING)
    body = tenant.client.get(f"/api/v1/clusters/{running.public_id}").json()
    assert body["schema_registry_url"] == f"http://testserver/schema-registry/{running.public_id}"
    assert tenant.client.get(f"/api/v1/clusters/{pending.public_id}").json()["schema_registry_url"] is None


def test_overview_page_and_snippets_carry_the_registry(client: Client):
    tenant = Tenant("owner")
    client.force_login(tenant.user)
    cluster = ClusterFactory(
        organization=tenant.organization, status=ClusterStatus.RUNNING, security_protocol="SASL_PLAINTEXT"
    )
    key = ApiKeyFactory(cluster=cluster).key
    url = f"http://testserver/schema-registry/{cluster.public_id}"
    page = html.unescape(client.get(f"/clusters/{cluster.public_id}/?key={key}").content.decode())
    assert f'<code id="schema-registry-url">{url}</code>' in page
    # The Avro snippet and the Java properties: schema.registry.url and basic.auth.user.info.
    assert f'"url": "{url}"' in page and f'"basic.auth.user.info": "{key}:<API_SECRET>"' in page
    assert f"schema.registry.url={url}" in page and f"basic.auth.user.info={key}:<API_SECRET>" in page
    # The downloads offered with a new key's secret carry the registry settings too.
    made = client.post(f"/clusters/{cluster.public_id}/api-keys/", {"description": "with registry"})
    assert made.status_code == 201 and "schema.registry.url%3D" in made.content.decode()

    cluster.status = ClusterStatus.PROVISIONING
    cluster.save()
    page = client.get(f"/clusters/{cluster.public_id}/").content.decode()
    assert "schema-registry-url" not in page and "schema.registry.url" not in page
