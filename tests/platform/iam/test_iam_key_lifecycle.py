"""API key lifecycle: expires_at, rotation with an overlap, last_used_at from brokerd's metrics."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from iam import services
from iam.models import ApiKey
from iam.selectors import cluster_credential_entries
from tests.platform.api import assert_error
from tests.platform.factories import ApiKeyFactory, ClusterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cluster(tenant):
    return ClusterFactory(organization=tenant.organization, plan="basic")


def keys_path(cluster) -> str:
    return f"/api/v1/clusters/{cluster.public_id}/api-keys"


def test_create_with_expires_at_in_the_future_only(tenant, cluster) -> None:
    soon = timezone.now() + dt.timedelta(hours=1)
    made = tenant.client.post(keys_path(cluster), {"description": "temp", "expires_at": soon.isoformat()})
    assert made.status_code == 201, made.content
    assert dt.datetime.fromisoformat(made.json()["expires_at"].replace("Z", "+00:00")) == soon
    key = ApiKey.objects.get(key=made.json()["key"])
    assert key.expires_at == soon and key.is_active
    entry = cluster_credential_entries(cluster=cluster)[key.key]
    assert entry["expires_at"] == pytest.approx(soon.timestamp())
    listed = tenant.client.get(f"{keys_path(cluster)}/{key.key}").json()
    assert listed["status"] == "ACTIVE" and listed["expires_at"]

    for bad in ((timezone.now() - dt.timedelta(minutes=1)).isoformat(), timezone.now().isoformat(), "soon"):
        error = assert_error(tenant.client.post(keys_path(cluster), {"expires_at": bad}), 400)
        assert "expires_at" in error["details"], bad


def test_expired_keys_leave_the_credentials_file_and_do_not_count_against_the_plan(tenant, cluster) -> None:
    expired = ApiKeyFactory(cluster=cluster, expires_at=timezone.now() - dt.timedelta(seconds=1))
    live = ApiKeyFactory(cluster=cluster)
    entries = cluster_credential_entries(cluster=cluster)
    assert live.key in entries and expired.key not in entries
    assert "expires_at" not in entries[live.key]
    body = tenant.client.get(f"{keys_path(cluster)}/{expired.key}").json()
    assert body["status"] == "EXPIRED"
    limit = cluster.plan_limits.max_api_keys
    for _ in range(limit - 1):
        ApiKeyFactory(cluster=cluster)
    assert_error(tenant.client.post(keys_path(cluster), {}), 409, "limit_exceeded")
    ApiKey.objects.filter(pk=live.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert tenant.client.post(keys_path(cluster), {}).status_code == 201


def test_rotate_issues_a_new_key_and_expires_the_old_one_after_the_overlap(tenant, cluster) -> None:
    old = ApiKeyFactory(cluster=cluster, description="orders", created_by=tenant.user)
    before = timezone.now()
    response = tenant.client.post(f"{keys_path(cluster)}/{old.key}/rotate", {"overlap_seconds": 600})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"key", "secret", "rotated_from", "rotated_from_expires_at", "expires_at"}
    assert body["rotated_from"] == old.key and body["key"] != old.key and body["description"] == "orders"
    new = ApiKey.objects.get(key=body["key"])
    old.refresh_from_db()
    assert new.rotated_from == old and new.created_by == tenant.user and new.expires_at is None
    assert before + dt.timedelta(seconds=600) <= old.expires_at <= timezone.now() + dt.timedelta(seconds=600)
    from brokerd.credentials import check_plain

    assert check_plain(new.verifier, body["secret"])
    entries = cluster_credential_entries(cluster=cluster)
    assert entries[old.key]["expires_at"] == pytest.approx(old.expires_at.timestamp())
    assert "expires_at" not in entries[new.key]
    event = AuditEvent.objects.get(action="api_key.rotate")
    assert event.target_id == old.key and event.details["new_key"] == new.key
    assert body["secret"] not in str(AuditEvent.objects.values_list("details", flat=True))
    listed = tenant.client.get(f"{keys_path(cluster)}/{new.key}").json()
    assert listed["rotated_from"] == old.key

    # A second rotation of the old key can only shorten its life, never extend it.
    again = tenant.client.post(f"{keys_path(cluster)}/{old.key}/rotate", {"overlap_seconds": 3600})
    assert again.status_code == 201
    expiry = old.expires_at
    old.refresh_from_db()
    assert old.expires_at == expiry


def test_rotate_rules(tenant, cluster, other_tenant) -> None:
    key = ApiKeyFactory(cluster=cluster)
    path = f"{keys_path(cluster)}/{key.key}/rotate"
    assert_error(tenant.client.post(path, {"overlap_seconds": -1}), 400)
    assert_error(tenant.client.post(path, {"overlap_seconds": 31 * 24 * 3600}), 400)
    assert_error(other_tenant.client.post(path, {}), 404)
    assert_error(tenant.member("member").client.post(path, {}), 403)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert_error(tenant.client.post(path, {}), 409, "invalid_state")
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert_error(tenant.client.post(path, {}), 404)
    # Rotation works at the plan's key limit (the old key is on its way out).
    for _ in range(cluster.plan_limits.max_api_keys):
        last = ApiKeyFactory(cluster=cluster)
    assert tenant.client.post(f"{keys_path(cluster)}/{last.key}/rotate", {}).status_code == 201


METRICS = """# HELP kastle_principal_last_seen_timestamp_seconds Unix time of the principal's latest request
# TYPE kastle_principal_last_seen_timestamp_seconds gauge
kastle_principal_last_seen_timestamp_seconds{principal="ANONYMOUS"} 1.7e+09
kastle_principal_last_seen_timestamp_seconds{principal="%s"} %s
kastle_principal_last_seen_timestamp_seconds{principal="kastle-internal"} 1.8e+09
kastle_bytes_in_total{principal="%s",topic="t"} 10.0
"""


def test_last_used_at_follows_the_brokers_last_seen_gauge(cluster) -> None:
    key = ApiKeyFactory(cluster=cluster)
    other_cluster_key = ApiKeyFactory()
    seen = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
    text = METRICS % (key.key, f"{seen.timestamp():.3f}", key.key)
    assert services.last_seen_from_metrics(text)[key.key] == seen.timestamp()
    assert services.api_keys_mark_used_from_metrics(cluster_id=cluster.pk, text=text) == 1
    key.refresh_from_db()
    assert key.last_used_at == seen
    # Never backwards; other clusters' keys with the same name are untouched.
    older = METRICS % (key.key, f"{(seen - dt.timedelta(hours=1)).timestamp():.3f}", key.key)
    assert services.api_keys_mark_used_from_metrics(cluster_id=cluster.pk, text=older) == 0
    key.refresh_from_db()
    assert key.last_used_at == seen
    other = other_cluster_key.cluster_id
    assert services.api_keys_mark_used_from_metrics(cluster_id=other, text=text) == 0
    assert services.api_keys_mark_used_from_metrics(cluster_id=cluster.pk, text="garbage {{") == 0
