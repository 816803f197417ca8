"""Portal: the API key form offers a scope (prefix + access) and a service-account owner."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from iam.models import ApiKey, ServiceAccount
from tests.platform.factories import ClusterFactory, MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def test_scoped_key_owned_by_a_service_account(client: Client):
    owner = MembershipFactory(role=Role.OWNER)
    client.force_login(owner.user)
    cluster = ClusterFactory(organization=owner.organization, security_protocol="SASL_PLAINTEXT")
    app = ServiceAccount.objects.create(organization=owner.organization, name="orders-app")
    ServiceAccount.objects.create(organization=OrganizationFactory(), name="not-ours")
    url = f"/clusters/{cluster.public_id}/api-keys/"
    page = client.get(url).content.decode()
    assert "orders-app" in page and "not-ours" not in page
    assert 'name="access"' in page and 'name="topic_prefix"' in page
    missing = client.post(url, {"access": "consume"})
    assert missing.status_code == 400 and 'id="id_topic_prefix-error"' in missing.content.decode()
    bad = client.post(url, {"access": "consume", "topic_prefix": "no spaces"})
    assert bad.status_code == 400 and 'id="id_topic_prefix-error"' in bad.content.decode()
    made = client.post(url, {"access": "consume", "topic_prefix": "orders.", "owner": app.public_id})
    assert made.status_code == 201, made.content[:500]
    key = ApiKey.objects.get(cluster=cluster)
    assert key.scope == {"topic_prefix": "orders.", "access": "consume"} and key.service_account == app
    listing = client.get(url).content.decode()
    assert "orders-app" in listing and "orders.*" in listing
    full = client.post(url, {"description": "everything"})
    assert full.status_code == 201
    assert ApiKey.objects.get(description="everything").scope is None
