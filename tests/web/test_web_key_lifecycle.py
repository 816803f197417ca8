"""Portal: API key expiry on create, the list's expires / status / last used columns, rotation (the
new secret shown once, the old key given an expiry), role and tenant walls (Django test client)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, Membership, Role
from iam.models import ApiKey
from tests.platform.factories import ApiKeyFactory, ClusterFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def _login(client: Client, role: str = Role.OWNER) -> Membership:
    membership = MembershipFactory(role=role)
    client.force_login(membership.user)
    return membership


def _row(html: str, key: str) -> str:
    match = re.search(r"<tr><th scope=\"row\"><code>" + key + r"</code>.*?</tr>", html, re.S)
    assert match, f"no row for {key}"
    return match.group(0)


def _secret(html: str) -> str:
    match = re.search(r'<code id="new-secret" class="secret">([^<]+)</code>', html)
    assert match, html[:500]
    return match.group(1)


def test_create_with_expiry_validated_beside_the_field(client):
    mine = _login(client)
    cluster = ClusterFactory(organization=mine.organization)
    url = f"/clusters/{cluster.public_id}/api-keys/"
    assert 'type="datetime-local"' in client.get(url).content.decode()

    past = client.post(url, {"description": "old", "expires_at": "2001-02-03T04:05"})
    html = past.content.decode()
    assert past.status_code == 400
    assert re.search(r'id="id_expires_at-error">Must be at least 10 seconds in the future', html), html
    garbage = client.post(url, {"description": "old", "expires_at": "soon"})
    assert garbage.status_code == 400 and 'id="id_expires_at-error"' in garbage.content.decode()
    assert not ApiKey.objects.filter(cluster=cluster).exists()

    when = (timezone.now() + dt.timedelta(days=3)).replace(second=0, microsecond=0)
    made = client.post(url, {"description": "temp", "expires_at": when.strftime("%Y-%m-%dT%H:%M")})
    assert made.status_code == 201, made.content[:500]
    key = ApiKey.objects.get(cluster=cluster)
    assert key.expires_at == when
    assert when.strftime("%Y-%m-%d %H:%M") in made.content.decode()  # on the secret page, too
    iso = client.post(url, {"description": "iso", "expires_at": "2999-01-01T00:00:00Z"})
    assert iso.status_code == 201
    assert ApiKey.objects.get(description="iso").expires_at == dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
    forever = client.post(url, {"description": "forever"})
    assert forever.status_code == 201 and ApiKey.objects.get(description="forever").expires_at is None


def test_list_shows_expiry_status_and_last_use(client):
    mine = _login(client)
    cluster = ClusterFactory(organization=mine.organization)
    now = timezone.now()
    plain = ApiKeyFactory(cluster=cluster)
    soon = ApiKeyFactory(cluster=cluster, expires_at=now + dt.timedelta(days=2))
    later = ApiKeyFactory(cluster=cluster, expires_at=now + dt.timedelta(days=60))
    gone = ApiKeyFactory(cluster=cluster, expires_at=now - dt.timedelta(hours=1))
    used = ApiKeyFactory(cluster=cluster, last_used_at=dt.datetime(2026, 5, 6, 7, 8, tzinfo=dt.UTC))
    html = client.get(f"/clusters/{cluster.public_id}/api-keys/").content.decode()
    for header in ("Expires", "Status", "Last used"):
        assert f'<th scope="col">{header}</th>' in html
    row = _row(html, plain.key)
    assert '<td class="key-expires">never</td>' in row and '<td class="key-last-used">never</td>' in row
    assert ">active<" in row and "Rotate" in row
    assert ">expiring<" in _row(html, soon.key)
    far = _row(html, later.key)
    assert ">active<" in far and later.expires_at.strftime("%Y-%m-%d %H:%M UTC") in far
    expired = _row(html, gone.key)
    assert ">expired<" in expired and "Rotate" not in expired and "Revoke" in expired
    assert "2026-05-06 07:08 UTC" in _row(html, used.key)


def test_rotate_shows_the_new_secret_once_and_expires_the_old_key(client):
    mine = _login(client)
    cluster = ClusterFactory(organization=mine.organization, security_protocol="SASL_PLAINTEXT")
    old = ApiKeyFactory(cluster=cluster, description="orders service")
    url = f"/clusters/{cluster.public_id}/api-keys/{old.key}/rotate/"
    page = client.get(url).content.decode()
    assert 'name="overlap"' in page and 'value="86400"' in page and 'name="overlap_seconds"' in page

    # Custom overlap: required, and range-checked by the service (beside the field).
    missing = client.post(url, {"overlap": "custom"})
    assert missing.status_code == 400 and 'id="id_overlap_seconds-error"' in missing.content.decode()
    huge = client.post(url, {"overlap": "custom", "overlap_seconds": 10**9})
    assert huge.status_code == 400
    assert re.search(r'id="id_overlap_seconds-error">Must be between 0 and', huge.content.decode())
    assert ApiKey.objects.filter(cluster=cluster).count() == 1

    before = timezone.now()
    rotated = client.post(url, {"overlap": "86400"})
    assert rotated.status_code == 201, rotated.content[:500]
    assert rotated["Cache-Control"] == "no-store"
    html = rotated.content.decode()
    secret = _secret(html)
    new = ApiKey.objects.get(rotated_from=old)
    assert new.description == "orders service" and new.expires_at is None
    assert f'<code id="new-key">{new.key}</code>' in html
    assert f"This key replaces <code>{old.key}</code>, which keeps working until" in html
    assert f"kastle-{cluster.name}-{new.key}.properties" in html  # the create flow's downloads
    old.refresh_from_db()
    assert before + dt.timedelta(hours=24) <= old.expires_at <= timezone.now() + dt.timedelta(hours=24)
    assert AuditEvent.objects.filter(action="api_key.rotate", target_id=old.key).count() == 1

    # The secret is never shown again; the old key is listed as expiring.
    listing = client.get(f"/clusters/{cluster.public_id}/api-keys/").content.decode()
    assert secret not in listing
    assert ">expiring<" in _row(listing, old.key) and ">active<" in _row(listing, new.key)
    keys_url = f"/clusters/{cluster.public_id}/api-keys/"
    assert secret not in client.get(f"{keys_url}{new.key}/rotate/").content.decode()

    # A custom overlap only moves the old key's expiry earlier.
    again = client.post(url, {"overlap": "custom", "overlap_seconds": "120"})
    assert again.status_code == 201 and _secret(again.content.decode()) != secret
    old.refresh_from_db()
    assert old.expires_at <= timezone.now() + dt.timedelta(seconds=120)

    # An expired key cannot be rotated (the service's refusal, in words); a revoked one is gone.
    old.expires_at = timezone.now() - dt.timedelta(seconds=1)
    old.save(update_fields=["expires_at"])
    refused = client.post(url, {"overlap": "3600"})
    assert refused.status_code == 409 and "only a live key can be rotated" in refused.content.decode()
    client.post(f"{keys_url}{new.key}/revoke/")
    assert client.post(f"{keys_url}{new.key}/rotate/", {"overlap": "0"}).status_code == 404


def test_member_cannot_rotate(client):
    member = _login(client, Role.MEMBER)
    cluster = ClusterFactory(organization=member.organization)
    key = ApiKeyFactory(cluster=cluster)
    listing = client.get(f"/clusters/{cluster.public_id}/api-keys/")
    assert listing.status_code == 200 and "Rotate" not in listing.content.decode()
    url = f"/clusters/{cluster.public_id}/api-keys/{key.key}/rotate/"
    assert client.get(url).status_code == 403
    denied = client.post(url, {"overlap": "3600"})
    assert denied.status_code == 403 and "admin" in denied.content.decode()
    key.refresh_from_db()
    assert key.expires_at is None and ApiKey.objects.filter(cluster=cluster).count() == 1


def test_another_organizations_keys_and_groups_are_404(client):
    mine = _login(client)
    my_cluster = ClusterFactory(organization=mine.organization)
    theirs = ClusterFactory(name="their-cluster")
    key = ApiKeyFactory(cluster=theirs)
    urls = [
        f"/clusters/{theirs.public_id}/api-keys/{key.key}/rotate/",
        f"/clusters/{my_cluster.public_id}/api-keys/{key.key}/rotate/",  # their key under my cluster
        f"/clusters/{theirs.public_id}/groups/g1/delete/",
    ]
    for url in urls:
        assert client.get(url).status_code == 404, url
    assert client.post(urls[0], {"overlap": "0"}).status_code == 404
    assert client.post(urls[1], {"overlap": "0"}).status_code == 404
    assert client.post(urls[2], {"confirm": "g1"}).status_code == 404
    key.refresh_from_db()
    assert key.expires_at is None and not ApiKey.objects.filter(rotated_from=key).exists()
