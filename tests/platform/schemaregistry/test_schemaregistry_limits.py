"""The plan's cap on schemas per cluster: Confluent's error shape over REST, and the portal's
register form says the same beside the form."""

from __future__ import annotations

import dataclasses
import json

import pytest
from django.test import Client

from clusters.models import Cluster
from clusters.plans import PLANS

pytestmark = pytest.mark.django_db

ORDER = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}


def _schema(name: str) -> str:
    return json.dumps({**ORDER, "name": name})


def _metered(cluster: Cluster) -> int:
    return Cluster.objects.get(pk=cluster.pk).schemas


def test_schema_versions_are_capped_per_plan(running, monkeypatch):
    monkeypatch.setitem(PLANS, "basic", dataclasses.replace(PLANS["basic"], max_schemas=2))
    registry = running.registry
    first = registry.register("a-value", _schema("A"))
    registry.register("b-value", _schema("B"))
    message = registry.error(422, 42205, "POST", "/subjects/c-value/versions", {"schema": _schema("C")})
    assert "Basic plan allows 2 schema versions" in message
    assert _metered(running.cluster) == 2  # the count metering bills, as the cap counts it
    # A schema already there answers its id, as ever; a soft delete frees its place.
    assert registry.register("a-value", _schema("A")) == first
    registry.ok("DELETE", "/subjects/b-value")
    assert _metered(running.cluster) == 1
    assert registry.register("c-value", _schema("C")) > first
    assert _metered(running.cluster) == 2

    # The portal's register form shows the registry's words and code.
    portal = Client()
    portal.force_login(running.tenant.user)
    page = portal.post(f"/clusters/{running.cluster.public_id}/schemas/", {
        "action": "register", "register-subject": "d-value", "register-schema_type": "AVRO",
        "register-schema": _schema("D")})
    assert page.status_code == 400
    assert "Schema limit exceeded: the Basic plan allows 2 schema versions" in page.content.decode()
    assert "error 42205" in page.content.decode()
