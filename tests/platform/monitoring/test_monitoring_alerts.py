"""Alert channels, rules, evaluation and delivery against PostgreSQL, a real HTTP receiver and
Django's mail backend (the in-memory one pytest-django installs)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import AuditEvent
from metering.models import BillingAccount
from monitoring import delivery, rules, services
from monitoring.live import SOURCES, Snapshot
from monitoring.models import AlertRule, Notification
from tests.platform.api import Tenant, assert_error, assert_page
from tests.platform.factories import ClusterFactory
from tests.platform.monitoring.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.KASTLE_WEBHOOK_ALLOW_PRIVATE = "true"
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def tenant():
    return Tenant("owner")


def webhook(tenant, url: str, name: str = "ops-hook") -> dict:
    made = tenant.client.post("/api/v1/alerts/channels", {"name": name, "kind": "webhook", "url": url})
    assert made.status_code == 201, made.content
    return made.json()


def snap(**kwargs) -> Snapshot:
    return Snapshot(cluster="lkc-x", running=True, sources=dict.fromkeys(SOURCES, True), **kwargs)


def test_channels_validate_and_show_the_secret_once(tenant, receiver, settings):
    created = webhook(tenant, receiver.url)
    assert created["secret"].startswith("whsec_") and created["kind"] == "webhook"
    shown = tenant.client.get(f"/api/v1/alerts/channels/{created['id']}").json()
    assert "secret" not in shown and created["secret"] not in str(
        assert_page(tenant.client.get("/api/v1/alerts/channels").json())
    )
    assert created["secret"] not in str(AuditEvent.objects.values_list("details", flat=True))

    err = assert_error(
        tenant.client.post("/api/v1/alerts/channels", {"name": "m", "kind": "email", "emails": ["nope"]}), 400
    )
    assert "emails" in err["details"]
    assert_error(tenant.client.post("/api/v1/alerts/channels", {"name": "m", "kind": "email"}), 400)
    again = {"name": "ops-hook", "kind": "webhook", "url": receiver.url}
    err = assert_error(tenant.client.post("/api/v1/alerts/channels", again), 400)
    assert "name" in err["details"]
    settings.KASTLE_WEBHOOK_ALLOW_PRIVATE = "false"  # a tenant may not aim webhooks at internal services
    for url in ("http://127.0.0.1:6379/", "http://10.1.2.3/hook", "ftp://example.com/x", "http:///x"):
        err = assert_error(
            tenant.client.post("/api/v1/alerts/channels", {"name": "x", "kind": "webhook", "url": url}), 400
        )
        assert "url" in err["details"], url

    rotated = tenant.client.post(f"/api/v1/alerts/channels/{created['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (created["secret"], "")
    actions = set(
        AuditEvent.objects.filter(organization=tenant.organization).values_list("action", flat=True)
    )
    assert {"alert.channel.create", "alert.channel.rotate_secret"} <= actions


def test_test_notification_is_signed_and_reports_failures(tenant, receiver):
    created = webhook(tenant, receiver.url)
    result = tenant.client.post(f"/api/v1/alerts/channels/{created['id']}/test")
    assert result.status_code == 200, result.content
    assert result.json()["status"] == "sent" and result.json()["event"] == "test"
    [got] = receiver.events()
    assert delivery.verify(created["secret"], got.headers[delivery.SIGNATURE_HEADER], got.body)
    assert not delivery.verify(created["secret"], got.headers[delivery.SIGNATURE_HEADER], got.body + b" ")
    assert not delivery.verify("whsec_other", got.headers[delivery.SIGNATURE_HEADER], got.body)
    assert got.headers[delivery.ID_HEADER] == result.json()["id"] == got.json["id"]

    receiver.status = 500
    failed = tenant.client.post(f"/api/v1/alerts/channels/{created['id']}/test").json()
    assert failed["status"] == "failed" and "500" in failed["last_error"]

    oncall = {"name": "oncall", "kind": "email", "emails": ["Oncall@Example.com"]}
    mails = tenant.client.post("/api/v1/alerts/channels", oncall).json()
    assert tenant.client.post(f"/api/v1/alerts/channels/{mails['id']}/test").json()["status"] == "sent"
    [message] = mail.outbox
    assert message.to == ["oncall@example.com"] and "Test notification" in message.subject


def test_a_webhook_is_sent_once_its_status_arrives_whatever_its_body(tenant, receiver):
    """Only the status line counts: a receiver's body is never read, so one that announces a body
    and never sends it cannot hold a worker."""
    receiver.endless_body = True
    created = webhook(tenant, receiver.url)
    result = tenant.client.post(f"/api/v1/alerts/channels/{created['id']}/test").json()
    assert result["status"] == "sent", result["last_error"]
    assert len(receiver.events()) == 1


def test_rules_validate_their_kind_cluster_and_channels(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    other = ClusterFactory(organization=Tenant("owner").organization)
    post = lambda body: tenant.client.post("/api/v1/alerts/rules", body, format="json")  # noqa: E731
    base = {"name": "lag", "kind": "consumer_lag", "threshold": "100"}
    assert "cluster" in assert_error(post(base), 400)["details"]
    assert "cluster" in assert_error(post({**base, "cluster": other.public_id}), 400)["details"]
    assert (
        "cluster"
        in assert_error(post({**base, "kind": "spend", "cluster": cluster.public_id}), 400)["details"]
    )
    assert (
        "channels"
        in assert_error(post({**base, "cluster": cluster.public_id, "channels": ["nch-x"]}), 400)["details"]
    )
    assert (
        "threshold"
        in assert_error(post({**base, "cluster": cluster.public_id, "threshold": "-1"}), 400)["details"]
    )
    storage = {"name": "s", "kind": "storage", "threshold": "1", "cluster": cluster.public_id}
    assert "group_id" in assert_error(post({**storage, "group_id": "g"}), 400)["details"]
    made = post({**base, "cluster": cluster.public_id, "group_id": "billing"})
    assert made.status_code == 201, made.content
    assert made.json()["state"] == "ok" and made.json()["cluster"] == cluster.public_id
    changed = tenant.client.patch(
        f"/api/v1/alerts/rules/{made.json()['id']}", {"threshold": "5"}, format="json"
    )
    assert changed.status_code == 200 and Decimal(changed.json()["threshold"]) == 5


def test_a_change_of_state_notifies_once_even_when_applied_twice(tenant, receiver):
    cluster = ClusterFactory(organization=tenant.organization)
    hook = webhook(tenant, receiver.url)
    rule = services.rule_create(
        organization=tenant.organization,
        name="lag",
        kind="consumer_lag",
        threshold=Decimal(10),
        cluster=cluster,
        channels=[hook["id"]],
        actor=services_actor(tenant),
    )
    t0 = timezone.now()
    lagging = rules.consumer_lag(rule, snap(lag=[["billing", "orders", 0, 5, 40]]))
    assert lagging.value == 40 and "billing" in lagging.detail
    assert services.rule_apply(rule_id=rule.pk, measure=lagging, now=t0) == "firing"
    # The same pass again (a retried task) and an older, late pass change nothing.
    assert services.rule_apply(rule_id=rule.pk, measure=lagging, now=t0) is None
    assert services.rule_apply(rule_id=rule.pk, measure=lagging, now=t0 - dt.timedelta(seconds=1)) is None
    assert services.rule_apply(rule_id=rule.pk, measure=lagging, now=t0 + dt.timedelta(seconds=1)) is None
    [firing] = Notification.objects.filter(rule=rule)
    assert firing.event == "firing" and firing.status == "pending"

    # Delivering twice sends once.
    assert services.notification_deliver(notification_id=firing.pk) == "sent"
    assert services.notification_deliver(notification_id=firing.pk) == "sent"
    [got] = receiver.events()
    assert delivery.verify(hook["secret"], got.headers[delivery.SIGNATURE_HEADER], got.body)
    assert got.json["event"] == "firing" and got.json["rule"]["id"] == rule.public_id
    assert got.json["value"] == "40"
    rule.refresh_from_db()
    assert rule.state == "firing" and rule.last_notified_at is not None and rule.transitions == 1

    caught_up = rules.consumer_lag(rule, snap(lag=[["billing", "orders", 0, 45, 0]]))
    assert (
        services.rule_apply(rule_id=rule.pk, measure=caught_up, now=t0 + dt.timedelta(seconds=2))
        == "resolved"
    )
    resolved = Notification.objects.get(rule=rule, event="resolved")
    assert resolved.transition == 2

    # A failing receiver: the notification stays pending with a backoff, then fails for good.
    receiver.status = 503
    for attempt in range(1, services.MAX_ATTEMPTS + 1):
        status = services.notification_deliver(notification_id=resolved.pk)
        resolved.refresh_from_db()
        assert resolved.attempts == attempt and "503" in resolved.last_error
        assert status == ("failed" if attempt == services.MAX_ATTEMPTS else "pending")
    assert services.notification_deliver(notification_id=resolved.pk) == "failed"
    assert len(receiver.events()) == 1 + services.MAX_ATTEMPTS

    # The delivery history is kept for 30 days; the rule keeps its state.
    later = timezone.now() + services.NOTIFICATION_RETENTION + dt.timedelta(minutes=1)
    assert services.notifications_prune(now=later - dt.timedelta(minutes=2)) == 0
    assert services.notifications_prune(now=later) == 2
    assert AlertRule.objects.get(pk=rule.pk).transitions == 2


def services_actor(tenant):
    from accounts.audit import Actor

    return Actor(user=tenant.user)


def test_rule_kinds_measure_what_they_say(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    rule = AlertRule(
        organization=tenant.organization,
        cluster=cluster,
        kind="under_replicated_partitions",
        threshold=Decimal(0),
    )
    single = snap(partitions=[["orders", 0, 1, 1, 1], ["orders", 1, 1, 1, 1]])
    m = rules.under_replicated(rule, single)
    assert m.value == 0 and "single replica" in m.detail  # a single-broker cluster: OK, and says why
    replicated = snap(partitions=[["orders", 0, 1, 3, 2], ["orders", 1, -1, 3, 0], ["orders", 2, 2, 3, 3]])
    assert rules.under_replicated(rule, replicated).value == 2
    broken = Snapshot(cluster="lkc-x", running=True, sources={"metadata": False})
    assert rules.under_replicated(rule, broken).value is None

    rule.kind = "storage"
    assert rules.storage(rule, snap(stored=[["a", 0, 1_500_000_000], ["a", 1, 500_000_000]])).value == 2

    rule.kind = "produce_throttling"
    t0 = timezone.now()
    first = rules.produce_throttling(rule, snap(throttle=[["k", "producer_byte_rate", 3.0, 3]]), t0)
    assert first.value == 0
    rule.memo = first.memo
    later = snap(throttle=[["k", "producer_byte_rate", 8.0, 9], ["k", "consumer_byte_rate", 100.0, 1]])
    assert rules.produce_throttling(rule, later, t0 + dt.timedelta(seconds=10)).value == Decimal("0.5")

    spend = AlertRule(organization=tenant.organization, kind="spend", threshold=Decimal(80))
    no_cap = rules.spend(spend, t0)
    assert no_cap.value is None and "spend cap" in no_cap.error
    BillingAccount.objects.create(organization=tenant.organization, spend_cap=Decimal("0.00"))
    assert rules.spend(spend, t0).value == 100


def test_evaluation_pass_records_why_a_rule_has_no_value(tenant):
    cluster = ClusterFactory(organization=tenant.organization, status="PROVISIONING")
    rule = services.rule_create(
        organization=tenant.organization,
        name="lag",
        kind="consumer_lag",
        threshold=Decimal(1),
        cluster=cluster,
        actor=services_actor(tenant),
    )
    report = services.alerts_evaluate()
    assert report["evaluated"] == 1 and report["no_value"] == 1
    rule.refresh_from_db()
    assert rule.state == "ok" and "not RUNNING" in rule.last_error and rule.last_evaluated_at is not None
    body = tenant.client.get(f"/api/v1/alerts/rules/{rule.public_id}").json()
    assert "not RUNNING" in body["last_error"]
