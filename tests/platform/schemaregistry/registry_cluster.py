"""A tenant's RUNNING cluster with a real brokerd provisioned inline (no worker) and a registry
client speaking HTTP basic auth with the cluster's API keys, through Django's test client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from clusters.models import Cluster
from schemaregistry import storage
from tests.platform.api import Tenant
from tests.platform.factories import ApiKeyFactory
from tests.platform.inline_cluster import SECRET, provision_inline

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


class Registry:
    """Requests to one cluster's registry as one API key."""

    def __init__(self, cluster: Cluster, key: str, secret: str = SECRET) -> None:
        self.cluster, self.key = cluster, key
        self.base = f"/schema-registry/{cluster.public_id}"
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        self.client = Client(HTTP_AUTHORIZATION=f"Basic {token}")

    def call(self, method: str, path: str, body: Any = None, **query: Any):
        url = self.base + path
        if query:
            url += "?" + "&".join(
                f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in query.items()
            )
        data = json.dumps(body) if body is not None else None
        return getattr(self.client, method.lower())(url, data=data, content_type=MEDIA_TYPE)

    def ok(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        response = self.call(method, path, body, **query)
        assert response.status_code == 200, (response.status_code, response.content[:800])
        assert response["Content-Type"] == MEDIA_TYPE
        return response.json()

    def error(self, status: int, code: int, method: str, path: str, body: Any = None, **query: Any) -> str:
        response = self.call(method, path, body, **query)
        assert response.status_code == status, (response.status_code, response.content[:800])
        payload = response.json()
        assert set(payload) == {"error_code", "message"} and payload["error_code"] == code, payload
        return payload["message"]

    def register(self, subject: str, schema: str, schema_type: str = "AVRO", **extra: Any) -> int:
        body = {"schema": schema, **({"schemaType": schema_type} if schema_type != "AVRO" else {}), **extra}
        return self.ok("POST", f"/subjects/{subject}/versions", body)["id"]


class RunningCluster:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.cluster, self.key = provision_inline(tenant.organization)
        self.registry = Registry(self.cluster, self.key)

    def key_for(self, **scope: str) -> Registry:
        """A registry client as a new key of this cluster (scoped when `scope` is given)."""
        fields = {"scope_topic_prefix": scope["prefix"], "scope_access": scope["access"]} if scope else {}
        return Registry(self.cluster, ApiKeyFactory(cluster=self.cluster, **fields).key)


@pytest.fixture
def running(host_env) -> Iterator[RunningCluster]:
    yield RunningCluster(Tenant("owner"))
    storage.forget_all()
