"""Portal walls and words (Django test client; no browser or broker needed): tenant scoping (another
organization's URLs are 404), role rules, validation messages beside fields, secrets shown once,
invitations, CSRF, audit filters."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import AuditEvent, Membership, Role
from clusters.models import Cluster, ClusterStatus
from iam.models import ApiKey
from tests.platform.factories import PASSWORD, ApiKeyFactory, ClusterFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def _login(client: Client, role: str = Role.OWNER, organization=None) -> Membership:
    kwargs = {"role": role}
    if organization is not None:
        kwargs["organization"] = organization
    membership = MembershipFactory(**kwargs)
    client.force_login(membership.user)
    return membership


def _cluster_urls(cid: str) -> list[str]:
    return [
        f"/clusters/{cid}/",
        f"/clusters/{cid}/row/",
        f"/clusters/{cid}/status/",
        f"/clusters/{cid}/ca.pem",
        f"/clusters/{cid}/delete/",
        f"/clusters/{cid}/topics/",
        f"/clusters/{cid}/topics/orders/",
        f"/clusters/{cid}/topics/orders/delete/",
        f"/clusters/{cid}/api-keys/",
        f"/clusters/{cid}/messages/",
        f"/clusters/{cid}/groups/",
        f"/clusters/{cid}/groups/g1/",
    ]


def test_another_organizations_urls_are_404(client):
    _login(client)
    theirs = ClusterFactory(name="their-cluster")
    key = ApiKeyFactory(cluster=theirs)
    for url in _cluster_urls(theirs.public_id):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "their-cluster" not in response.content.decode()
    posts = [
        (f"/clusters/{theirs.public_id}/delete/", {"confirm": "their-cluster"}),
        (f"/clusters/{theirs.public_id}/retry/", {}),
        (f"/clusters/{theirs.public_id}/topics/", {"name": "x", "partitions": 1}),
        (f"/clusters/{theirs.public_id}/api-keys/", {"description": "x"}),
        (f"/clusters/{theirs.public_id}/api-keys/{key.key}/revoke/", {}),
        (f"/clusters/{theirs.public_id}/messages/", {"produce-topic": "t", "produce-value": "v"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    theirs.refresh_from_db()
    key.refresh_from_db()
    assert theirs.status == ClusterStatus.RUNNING and key.revoked_at is None
    page = client.get("/clusters/lkc-nope00/")
    assert "belongs to another organization" in page.content.decode()  # a page in words


def test_cluster_list_shows_only_my_clusters_and_polls_transitional_ones(client):
    mine = _login(client)
    ClusterFactory(organization=mine.organization, name="steady")
    starting = ClusterFactory(
        organization=mine.organization, name="starting", status=ClusterStatus.PROVISIONING
    )
    ClusterFactory(name="not-mine")
    html = client.get("/").content.decode()
    assert "steady" in html and "starting" in html and "not-mine" not in html
    # Only the provisioning row polls (htmx), and its fragment re-renders the row.
    assert html.count('hx-trigger="every 1s"') == 1
    row = client.get(f"/clusters/{starting.public_id}/row/", HTTP_HX_REQUEST="true")
    assert row.status_code == 200 and "Provisioning" in row.content.decode()
    Cluster.objects.filter(pk=starting.pk).update(
        status=ClusterStatus.RUNNING, bootstrap_servers="127.0.0.1:1"
    )
    row = client.get(f"/clusters/{starting.public_id}/row/", HTTP_HX_REQUEST="true").content.decode()
    assert "Running" in row and "hx-trigger" not in row
    status = client.get(f"/clusters/{starting.public_id}/status/?was=PROVISIONING", HTTP_HX_REQUEST="true")
    assert status["HX-Refresh"] == "true"


def test_members_can_look_but_not_change(client):
    member = _login(client, Role.MEMBER)
    cluster = ClusterFactory(organization=member.organization, name="prod")
    key = ApiKeyFactory(cluster=cluster)
    detail = client.get(f"/clusters/{cluster.public_id}/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert (
        "Delete cluster" not in html
        and "Create API key" not in client.get(f"/clusters/{cluster.public_id}/api-keys/").content.decode()
    )
    assert "Create cluster" not in client.get("/").content.decode()
    for method, url, data in [
        ("get", f"/clusters/{cluster.public_id}/delete/", None),
        ("post", f"/clusters/{cluster.public_id}/delete/", {"confirm": "prod"}),
        ("get", "/clusters/new/", None),
        ("post", "/clusters/new/", {"name": "x", "plan": "basic", "security_protocol": "SASL_SSL"}),
        ("post", f"/clusters/{cluster.public_id}/api-keys/", {"description": "x"}),
        ("post", f"/clusters/{cluster.public_id}/api-keys/{key.key}/revoke/", {}),
        ("post", f"/clusters/{cluster.public_id}/topics/", {"name": "x", "partitions": 1}),
        ("post", f"/clusters/{cluster.public_id}/messages/", {"produce-topic": "t"}),
        ("post", "/organization/", {"action": "invite", "role": "member"}),
        ("post", "/usage/", {"spend_cap": "10"}),
    ]:
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        assert response.status_code == 403, (method, url)
        assert "your role is <strong>member</strong>" in response.content.decode()
    cluster.refresh_from_db()
    key.refresh_from_db()
    assert cluster.status == ClusterStatus.RUNNING and key.revoked_at is None
    assert Cluster.objects.filter(organization=member.organization).count() == 1


def test_admins_manage_clusters_but_not_members(client):
    admin = _login(client, Role.ADMIN)
    owner = MembershipFactory(organization=admin.organization, role=Role.OWNER)
    settings_page = client.get("/organization/").content.decode()
    assert "Invite someone" in settings_page and 'value="remove"' not in settings_page
    for action in ("role", "remove"):
        response = client.post(
            "/organization/", {"action": action, "user": owner.user.public_id, "role": "member"}
        )
        assert response.status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    # An admin cannot invite an owner.
    response = client.post("/organization/", {"action": "invite", "role": "owner"}, follow=True)
    assert "as admin or below" in response.content.decode()


def test_create_wizard_shows_plans_and_errors_beside_fields(client):
    owner = _login(client)
    page = client.get("/clusters/new/").content.decode()
    for plan in ("Basic", "Standard", "Dedicated"):
        assert plan in page
    assert "100 partitions" in page and "/hour" in page  # limits and prices on the cards
    response = client.post("/clusters/new/", {"name": "", "plan": "gold"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_name-error"' in html and "This field is required." in html
    assert 'id="id_plan-error"' in html and "Pick one of the plans shown." in html
    ClusterFactory(organization=owner.organization, name="taken")
    response = client.post(
        "/clusters/new/", {"name": "taken", "plan": "basic", "security_protocol": "SASL_SSL"}
    )
    assert response.status_code == 400
    assert re.search(r'id="id_name-error">A cluster with this name already exists', response.content.decode())
    assert not Cluster.objects.filter(organization=owner.organization).exclude(name="taken").exists()


def test_create_and_delete_cluster_with_typed_name(client, celery_queue):
    owner = _login(client)
    response = client.post(
        "/clusters/new/", {"name": "orders", "plan": "standard", "security_protocol": "SASL_PLAINTEXT"}
    )
    cluster = Cluster.objects.get(organization=owner.organization, name="orders")
    assert response.status_code == 302 and response["Location"] == f"/clusters/{cluster.public_id}/"
    assert cluster.plan == "standard" and cluster.security_protocol == "SASL_PLAINTEXT"
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.RUNNING)
    wrong = client.post(f"/clusters/{cluster.public_id}/delete/", {"confirm": "order"})
    assert wrong.status_code == 400 and "Type orders exactly to confirm." in wrong.content.decode()
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.RUNNING
    done = client.post(f"/clusters/{cluster.public_id}/delete/", {"confirm": "orders"})
    assert done.status_code == 302
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.DELETING
    assert AuditEvent.objects.filter(action="cluster.delete", actor=owner.user).exists()


def test_api_key_secret_is_shown_once(client):
    owner = _login(client)
    cluster = ClusterFactory(organization=owner.organization, name="c", security_protocol="SASL_PLAINTEXT")
    response = client.post(f"/clusters/{cluster.public_id}/api-keys/", {"description": "billing service"})
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    html = response.content.decode()
    key = ApiKey.objects.get(cluster=cluster)
    secret = re.search(r'id="new-secret" class="secret">([A-Za-z0-9]+)<', html).group(1)
    assert len(secret) == 64 and key.key in html
    assert "Download Java client.properties" in html and f"password%3D%22{secret}%22" in html
    listing = client.get(f"/clusters/{cluster.public_id}/api-keys/").content.decode()
    assert key.key in listing and secret not in listing
    overview = client.get(f"/clusters/{cluster.public_id}/?key={key.key}").content.decode()
    assert (
        f"&quot;sasl.username&quot;: &quot;{key.key}&quot;" in overview and "&lt;API_SECRET&gt;" in overview
    )
    assert secret not in overview
    too_long = client.post(f"/clusters/{cluster.public_id}/api-keys/", {"description": "x" * 201})
    assert too_long.status_code == 400 and 'id="id_description-error"' in too_long.content.decode()
    revoked = client.post(f"/clusters/{cluster.public_id}/api-keys/{key.key}/revoke/")
    assert revoked.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_invitation_link_lets_a_new_person_join_once(client):
    owner = _login(client)
    response = client.post(
        "/organization/", {"action": "invite", "role": "admin", "email": "new@example.com"}
    )
    link = re.search(
        r'id="invite-link" class="secret">http://testserver(/invite/[^/]+/)<', response.content.decode()
    )
    assert link, response.content.decode()[:2000]
    path = link.group(1)
    guest = Client()
    page = guest.get(path)
    assert page.status_code == 200 and f"Join {owner.organization.name}" in page.content.decode()
    short = guest.post(path, {"email": "new@example.com", "password": "short"})
    assert short.status_code == 400 and 'id="id_password-error"' in short.content.decode()
    joined = guest.post(path, {"email": "new@example.com", "password": "a long enough passphrase"})
    assert joined.status_code == 302
    membership = Membership.objects.get(user__email="new@example.com")
    assert membership.organization == owner.organization and membership.role == Role.ADMIN
    assert guest.get("/").status_code == 200
    assert Client().get(path).status_code == 404  # used: the link no longer works


def test_owner_changes_roles_and_password(client):
    owner = _login(client)
    other = MembershipFactory(organization=owner.organization, role=Role.MEMBER)
    response = client.post(
        "/organization/", {"action": "role", "user": other.user.public_id, "role": "admin"}
    )
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.role == Role.ADMIN
    # The last owner cannot demote themself: an error in words, nothing changes.
    page = client.post(
        "/organization/", {"action": "role", "user": owner.user.public_id, "role": "member"}, follow=True
    )
    assert "at least one owner" in page.content.decode()
    wrong = client.post(
        "/account/password/",
        {"old_password": "nope", "new_password1": "another long passphrase", "new_password2": "x"},
    )
    assert wrong.status_code == 400
    html = wrong.content.decode()
    assert 'id="id_old_password-error"' in html and 'id="id_new_password2-error"' in html
    ok = client.post(
        "/account/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "another long passphrase",
            "new_password2": "another long passphrase",
        },
    )
    assert ok.status_code == 302
    assert client.get("/").status_code == 200  # still logged in


def test_rest_tokens_shown_once_and_audit_filters(client):
    owner = _login(client)
    response = client.post("/organization/tokens/", {"name": "ci"})
    assert response.status_code == 201
    raw = re.search(r'id="new-token" class="secret">(kst_[^<]+)<', response.content.decode()).group(1)
    assert raw not in client.get("/organization/tokens/").content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/clusters").status_code == 200
    ClusterFactory(organization=owner.organization, name="audited")
    client.post(f"/clusters/{Cluster.objects.get(name='audited').public_id}/delete/", {"confirm": "audited"})
    everything = client.get("/organization/audit/").content.decode()
    assert "token.create" in everything and "cluster.delete" in everything
    filtered = client.get("/organization/audit/?action=cluster.").content.decode()
    assert "cluster.delete" in filtered and "token.create" not in filtered
    bad = client.get("/organization/audit/?since=yesterday")
    assert bad.status_code == 200 and "Enter a valid date." in bad.content.decode()


def test_usage_page_and_spend_cap(client):
    owner = _login(client)
    page = client.get("/usage/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Credit" in html and "Costs by cluster" in html and "Costs by API key" in html
    assert "no usage recorded in this period yet" in html  # empty charts say so
    bad = client.post("/usage/", {"spend_cap": "-5"})
    assert bad.status_code == 400 and 'id="id_spend_cap-error"' in bad.content.decode()
    assert client.post("/usage/", {"spend_cap": "25.50"}).status_code == 302
    assert "of a $25.50 cap" in client.get("/usage/").content.decode()
    assert AuditEvent.objects.filter(
        organization=owner.organization, action="billing.spend_cap.update"
    ).exists()


def test_forms_need_csrf_tokens(client):
    owner = _login(client)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner.user)
    response = strict.post("/clusters/new/", {"name": "x", "plan": "basic", "security_protocol": "SASL_SSL"})
    assert response.status_code == 403 and "form may have expired" in response.content.decode()
    assert not Cluster.objects.exists()
    for url in ("/clusters/new/", "/organization/", "/organization/tokens/", "/account/password/", "/usage/"):
        assert "csrfmiddlewaretoken" in client.get(url).content.decode(), url
