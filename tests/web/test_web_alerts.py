"""Portal: the alerts page (rules, channels, the test button, states), role and tenant walls
(Django test client; webhooks go to a real HTTP server)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from monitoring import delivery, rules, services
from monitoring.live import SOURCES, Snapshot
from monitoring.models import AlertRule, NotificationChannel
from tests.platform.factories import ClusterFactory, MembershipFactory
from tests.platform.monitoring.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.KASTLE_WEBHOOK_ALLOW_PRIVATE = "true"
    r = WebhookReceiver()
    yield r
    r.close()


def _login(client: Client, role: str = Role.OWNER, organization=None):
    membership = MembershipFactory(role=role, **({"organization": organization} if organization else {}))
    client.force_login(membership.user)
    return membership


def test_admin_sets_up_channels_and_rules_and_sees_their_state(client, receiver):
    mine = _login(client)
    cluster = ClusterFactory(organization=mine.organization, name="orders")
    page = client.get("/alerts/")
    assert page.status_code == 200 and b"No rules yet" in page.content

    made = client.post(
        "/alerts/", {"action": "create_channel", "name": "hook", "kind": "webhook", "url": receiver.url}
    )
    assert made.status_code == 201 and made["Cache-Control"] == "no-store"
    secret = re.search(r'<code id="new-secret" class="secret">([^<]+)</code>', made.content.decode()).group(1)
    assert secret not in client.get("/alerts/").content.decode()  # shown once
    hook = NotificationChannel.objects.get(organization=mine.organization, name="hook")

    bad = client.post(
        "/alerts/", {"action": "create_channel", "name": "mail", "kind": "email", "emails": "x@"}
    )
    assert bad.status_code == 400 and b"is not an e-mail address" in bad.content
    ok = client.post(
        "/alerts/",
        {
            "action": "create_channel",
            "name": "mail",
            "kind": "email",
            "emails": "a@example.com, b@example.com",
        },
    )
    assert ok.status_code == 302

    no_cluster = client.post(
        "/alerts/",
        {"action": "create_rule", "name": "lag", "kind": "consumer_lag", "threshold": "10", "cluster": ""},
    )
    assert no_cluster.status_code == 400 and b"watches one cluster" in no_cluster.content
    created = client.post(
        "/alerts/",
        {
            "action": "create_rule",
            "name": "lag",
            "kind": "consumer_lag",
            "threshold": "10",
            "cluster": cluster.public_id,
            "group_id": "billing",
            "channels": [hook.public_id],
        },
    )
    assert created.status_code == 302, created.content[:2000]
    rule = AlertRule.objects.get(organization=mine.organization, name="lag")

    # The test button: a signed message reaches the receiver, and the page says so.
    tested = client.post("/alerts/", {"action": "test_channel", "channel": hook.public_id}, follow=True)
    assert b"Test notification sent to hook" in tested.content
    [got] = receiver.events()
    assert delivery.verify(secret, got.headers[delivery.SIGNATURE_HEADER], got.body)

    # A firing rule shows as firing, with its value in words.
    snap = Snapshot(
        cluster=cluster.public_id,
        running=True,
        sources=dict.fromkeys(SOURCES, True),
        lag=[["billing", "orders", 0, 0, 42]],
    )
    services.rule_apply(rule_id=rule.pk, measure=rules.consumer_lag(rule, snap), now=timezone.now())
    row = re.search(
        rf'<tr id="rule-{rule.public_id}">.*?</tr>', client.get("/alerts/").content.decode(), re.S
    )
    assert "firing" in row.group(0) and "lags 42 records" in row.group(0)

    assert client.post("/alerts/", {"action": "disable_rule", "rule": rule.public_id}).status_code == 302
    rule.refresh_from_db()
    assert rule.enabled is False
    assert client.post("/alerts/", {"action": "delete_rule", "rule": rule.public_id}).status_code == 302
    assert not AlertRule.objects.filter(pk=rule.pk).exists()


def test_members_look_and_other_tenants_cannot_touch(client):
    owner = _login(Client())
    hook, _ = services.channel_create(
        organization=owner.organization,
        name="mail",
        kind="email",
        emails=["a@example.com"],
        actor=services_actor(owner),
    )
    rule = services.rule_create(
        organization=owner.organization,
        name="over budget",
        kind="spend",
        threshold=Decimal(80),
        actor=services_actor(owner),
    )

    _login(client, Role.MEMBER, owner.organization)
    page = client.get("/alerts/").content.decode()
    assert "over budget" in page and rule.public_id in page and "Create a rule" not in page
    refused = client.post("/alerts/", {"action": "delete_rule", "rule": rule.public_id})
    assert refused.status_code == 403 and b"admin" in refused.content

    stranger = Client()
    _login(stranger)
    theirs = stranger.get("/alerts/").content.decode()
    assert rule.name not in theirs and hook.public_id not in theirs and rule.public_id not in theirs
    attempts = [
        ("delete_rule", "rule", rule.public_id),
        ("disable_rule", "rule", rule.public_id),
        ("test_channel", "channel", hook.public_id),
        ("delete_channel", "channel", hook.public_id),
    ]
    for action, field, value in attempts:
        assert stranger.post("/alerts/", {"action": action, field: value}).status_code == 404
    assert AlertRule.objects.filter(pk=rule.pk).exists()
    assert NotificationChannel.objects.filter(pk=hook.pk).exists()
    assert AlertRule.objects.get(pk=rule.pk).enabled


def services_actor(membership):
    from accounts.audit import Actor

    return Actor(user=membership.user)
