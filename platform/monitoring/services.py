"""Alert writes: channels, rules, evaluation and delivery.

Evaluation (`alerts_evaluate`, beat task `monitoring.evaluate_alerts`): each enabled rule is
measured (`rules.py`), then applied under its row lock (`rule_apply`). Only a change of state
bumps `transitions` and inserts one notification per channel, unique on (rule, channel,
transition). A pass that runs twice, or two passes that overlap, therefore notify at most once
per change: the second pass finds the state already changed, or the row locked (skipped).

Delivery (`notification_deliver`, task `monitoring.deliver_notification`, sent after commit):
the notification's row is locked while it is sent and marked `sent` in the same transaction.
A delivery that fails is retried with backoff (the beat pass sends what is due), up to
`MAX_ATTEMPTS`. The one case that repeats a message is a worker that dies after the receiver
took it and before the commit. Receivers deduplicate on `Kastle-Notification-Id`, which is
stable across retries.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import Organization
from clusters.models import Cluster
from controlplane.errors import ValidationFailed

from . import clients, delivery, live, rules
from .models import (
    AlertRule,
    AlertState,
    ChannelKind,
    Notification,
    NotificationChannel,
    NotificationEvent,
    NotificationStatus,
    RuleKind,
    new_notification_id,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
MAX_EMAILS = 10
#: A notification not delivered this long after it was queued is sent again by the beat pass.
REDISPATCH_AFTER = dt.timedelta(seconds=30)
#: Notifications (the delivery history) are kept this long.
NOTIFICATION_RETENTION = dt.timedelta(days=30)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"The {field.replace('_', ' ')} is invalid: {message}", details={field: [message]}
    )


# --- channels --------------------------------------------------------------------------------------
def _clean_emails(emails: list[str] | None) -> list[str]:
    emails = [e.strip().lower() for e in (emails or []) if e and e.strip()]
    if not emails:
        raise _invalid("emails", "An e-mail channel needs at least one address.")
    if len(emails) > MAX_EMAILS:
        raise _invalid("emails", f"At most {MAX_EMAILS} addresses per channel.")
    for email in emails:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise _invalid("emails", f"{email!r} is not an e-mail address.") from exc
    return list(dict.fromkeys(emails))


def _clean_url(url: str | None) -> str:
    problem = delivery.check_url(url or "")
    if problem:
        raise _invalid("url", problem)
    return url or ""


def _name_taken(model, organization: Organization, name: str, exclude: int | None = None) -> bool:
    qs = model.objects.filter(organization=organization, name=name)
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return qs.exists()


def channel_create(
    *,
    organization: Organization,
    name: str,
    kind: str,
    actor: Actor,
    emails: list[str] | None = None,
    url: str = "",
) -> tuple[NotificationChannel, str | None]:
    """A new channel; for a webhook, also its signing secret (shown only now)."""
    if kind not in ChannelKind.values:
        raise _invalid("kind", f"Use one of {', '.join(ChannelKind.values)}.")
    if _name_taken(NotificationChannel, organization, name):
        raise _invalid("name", f"A channel named {name!r} exists already.")
    channel = NotificationChannel(organization=organization, name=name, kind=kind)
    if kind == ChannelKind.EMAIL:
        channel.emails = _clean_emails(emails)
    else:
        channel.url = _clean_url(url)
    with transaction.atomic():
        channel.save()
        audit_record(
            organization=organization,
            actor=actor,
            action="alert.channel.create",
            target=channel,
            details={"kind": kind, "emails": channel.emails, "url": channel.url},
        )
    return channel, delivery.webhook_secret(channel) if kind == ChannelKind.WEBHOOK else None


def channel_update(
    *,
    channel: NotificationChannel,
    actor: Actor,
    name: str | None = None,
    emails: list[str] | None = None,
    url: str | None = None,
) -> NotificationChannel:
    changes: dict[str, Any] = {}
    if name is not None and name != channel.name:
        if _name_taken(NotificationChannel, channel.organization, name, exclude=channel.pk):
            raise _invalid("name", f"A channel named {name!r} exists already.")
        changes["name"] = name
    if emails is not None:
        if channel.kind != ChannelKind.EMAIL:
            raise _invalid("emails", "Only e-mail channels have addresses.")
        changes["emails"] = _clean_emails(emails)
    if url is not None:
        if channel.kind != ChannelKind.WEBHOOK:
            raise _invalid("url", "Only webhook channels have a URL.")
        changes["url"] = _clean_url(url)
    if not changes:
        return channel
    with transaction.atomic():
        for key, value in changes.items():
            setattr(channel, key, value)
        channel.save(update_fields=[*changes, "updated_at"])
        audit_record(
            organization=channel.organization,
            actor=actor,
            action="alert.channel.update",
            target=channel,
            details=changes,
        )
    return channel


def channel_rotate_secret(*, channel: NotificationChannel, actor: Actor) -> str:
    """A new signing secret (the old one stops signing at once); shown only now."""
    if channel.kind != ChannelKind.WEBHOOK:
        raise _invalid("kind", "Only webhook channels have a signing secret.")
    with transaction.atomic():
        channel.secret_generation += 1
        channel.save(update_fields=["secret_generation", "updated_at"])
        audit_record(
            organization=channel.organization,
            actor=actor,
            action="alert.channel.rotate_secret",
            target=channel,
        )
    return delivery.webhook_secret(channel)


def channel_delete(*, channel: NotificationChannel, actor: Actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=channel.organization, actor=actor, action="alert.channel.delete", target=channel
        )
        channel.delete()


def channel_test(*, channel: NotificationChannel, actor: Actor) -> Notification:
    """Send a test notification now (not queued); the result says whether the channel took it."""
    now = timezone.now()
    public_id = new_notification_id()
    payload = {
        "id": public_id,
        "event": NotificationEvent.TEST,
        "title": f"Test notification for channel {channel.name}",
        "message": f"This is a test of the alert channel {channel.name} ({channel.public_id}), "
        f"sent by {actor.label}. Alerts will arrive like this.",
        "organization": channel.organization.public_id,
        "state": None,
        "since": None,
        "rule": None,
        "value": None,
        "created_at": now.isoformat(),
    }
    notification = Notification(
        public_id=public_id,
        organization=channel.organization,
        channel=channel,
        event=NotificationEvent.TEST,
        payload=payload,
        attempts=1,
    )
    try:
        delivery.deliver(channel, public_id, payload)
    except delivery.DeliveryError as exc:
        notification.status = NotificationStatus.FAILED
        notification.last_error = str(exc)[:500]
    else:
        notification.status = NotificationStatus.SENT
        notification.sent_at = timezone.now()
    with transaction.atomic():
        notification.save()
        audit_record(
            organization=channel.organization,
            actor=actor,
            action="alert.channel.test",
            target=channel,
            details={"status": notification.status, "error": notification.last_error},
        )
    return notification


# --- rules -----------------------------------------------------------------------------------------
def _channels(organization: Organization, ids: list[str] | None) -> list[NotificationChannel]:
    ids = list(dict.fromkeys(ids or []))
    found = {
        c.public_id: c
        for c in NotificationChannel.objects.filter(organization=organization, public_id__in=ids)
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise _invalid("channels", f"No channel {', '.join(missing)} in your organization.")
    return [found[i] for i in ids]


def _check_rule(kind: str, cluster: Cluster | None, threshold: Decimal, group_id: str) -> None:
    if kind not in RuleKind.values:
        raise _invalid("kind", f"Use one of {', '.join(RuleKind.values)}.")
    if kind == RuleKind.SPEND and cluster is not None:
        raise _invalid("cluster", "A spend rule watches the whole organization; leave the cluster out.")
    if kind != RuleKind.SPEND and cluster is None:
        raise _invalid("cluster", f"A {kind} rule watches one cluster; name it (lkc-…).")
    if threshold is None or threshold < 0:
        raise _invalid("threshold", "Must be 0 or more.")
    if group_id and kind != RuleKind.CONSUMER_LAG:
        raise _invalid("group_id", "Only consumer_lag rules name a consumer group.")


def rule_create(
    *,
    organization: Organization,
    name: str,
    kind: str,
    threshold: Decimal,
    actor: Actor,
    cluster: Cluster | None = None,
    group_id: str = "",
    channels: list[str] | None = None,
    enabled: bool = True,
) -> AlertRule:
    _check_rule(kind, cluster, threshold, group_id)
    if _name_taken(AlertRule, organization, name):
        raise _invalid("name", f"A rule named {name!r} exists already.")
    chosen = _channels(organization, channels)
    rule = AlertRule(
        organization=organization,
        cluster=cluster,
        name=name,
        kind=kind,
        threshold=threshold,
        group_id=group_id or "",
        enabled=enabled,
    )
    try:
        with transaction.atomic():
            rule.save()
            rule.channels.set(chosen)
            audit_record(
                organization=organization,
                actor=actor,
                action="alert.rule.create",
                target=rule,
                details=_rule_details(rule, chosen),
            )
    except IntegrityError as exc:  # the same name, created concurrently
        raise _invalid("name", f"A rule named {name!r} exists already.") from exc
    return rule


def _rule_details(rule: AlertRule, channels: list[NotificationChannel]) -> dict[str, Any]:
    return {
        "kind": rule.kind,
        "cluster": rule.cluster.public_id if rule.cluster else None,
        "threshold": str(rule.threshold),
        "group_id": rule.group_id,
        "enabled": rule.enabled,
        "channels": [c.public_id for c in channels],
    }


def rule_update(
    *,
    rule: AlertRule,
    actor: Actor,
    name: str | None = None,
    threshold: Decimal | None = None,
    group_id: str | None = None,
    channels: list[str] | None = None,
    enabled: bool | None = None,
) -> AlertRule:
    """Change a rule. Its state is kept; the next evaluation compares against the new threshold."""
    if name is not None and name != rule.name:
        if _name_taken(AlertRule, rule.organization, name, exclude=rule.pk):
            raise _invalid("name", f"A rule named {name!r} exists already.")
        rule.name = name
    if threshold is not None:
        rule.threshold = threshold
    if group_id is not None:
        rule.group_id = group_id
    if enabled is not None:
        rule.enabled = enabled
    _check_rule(rule.kind, rule.cluster, rule.threshold, rule.group_id)
    chosen = _channels(rule.organization, channels) if channels is not None else None
    with transaction.atomic():
        rule.save(update_fields=["name", "threshold", "group_id", "enabled", "updated_at"])
        if chosen is not None:
            rule.channels.set(chosen)
        audit_record(
            organization=rule.organization,
            actor=actor,
            action="alert.rule.update",
            target=rule,
            details=_rule_details(rule, list(rule.channels.all())),
        )
    return rule


def rule_delete(*, rule: AlertRule, actor: Actor) -> None:
    with transaction.atomic():
        audit_record(organization=rule.organization, actor=actor, action="alert.rule.delete", target=rule)
        rule.delete()


# --- evaluation ------------------------------------------------------------------------------------
def alerts_evaluate(*, now: dt.datetime | None = None) -> dict[str, Any]:
    """Beat: measure every enabled rule, apply changes of state, send what is due."""
    now = now or timezone.now()
    report: dict[str, Any] = {"evaluated": 0, "firing": [], "resolved": [], "no_value": 0}
    snaps: dict[int, live.Snapshot] = {}
    for rule in (
        AlertRule.objects.filter(enabled=True).select_related("cluster", "organization").order_by("pk")
    ):
        snap = None
        if rule.cluster is not None:
            if rule.cluster_id not in snaps:
                snaps[rule.cluster_id] = live.snapshot(rule.cluster)
            snap = snaps[rule.cluster_id]
        try:
            measure = rules.measure(rule, snap, now)
        except Exception:  # one rule's trouble must not stop the others
            logger.exception("monitoring: evaluating rule %s failed", rule.public_id)
            measure = rules.Measure(
                None, error="The evaluation failed; the operator has been told in the logs."
            )
        change = rule_apply(rule_id=rule.pk, measure=measure, now=now)
        report["evaluated"] += 1
        report["no_value"] += measure.value is None
        if change is not None:
            report[change].append(rule.public_id)
    report["redispatched"] = notifications_dispatch_due(now=now)
    return report


def rule_apply(*, rule_id: int, measure: rules.Measure, now: dt.datetime) -> str | None:
    """Record one measurement; on a change of state, queue its notifications. Returns the new state
    when it changed. Skips a rule another pass holds, and a measurement older than the last one."""
    with transaction.atomic():
        rule = (
            AlertRule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("organization", "cluster")
            .filter(pk=rule_id, enabled=True)
            .first()
        )
        if rule is None or (rule.last_evaluated_at is not None and rule.last_evaluated_at >= now):
            return None
        fields = ["last_evaluated_at", "last_error", "memo", "updated_at"]
        rule.last_evaluated_at = now
        if measure.memo:
            rule.memo = measure.memo
        if measure.value is None:
            rule.last_error = measure.error[:500]
            rule.save(update_fields=fields)
            return None
        rule.last_error = ""
        rule.value, rule.detail = measure.value, measure.detail[:300]
        fields += ["value", "detail"]
        want = AlertState.FIRING if measure.value > rule.threshold else AlertState.OK
        if want == rule.state:
            rule.save(update_fields=fields)
            return None
        rule.state, rule.state_changed_at = want, now
        rule.transitions += 1
        rule.save(update_fields=[*fields, "state", "state_changed_at", "transitions"])
        event = NotificationEvent.FIRING if want == AlertState.FIRING else NotificationEvent.RESOLVED
        Notification.objects.bulk_create(
            [
                Notification(
                    public_id=(public_id := new_notification_id()),
                    organization=rule.organization,
                    rule=rule,
                    channel=channel,
                    event=event,
                    transition=rule.transitions,
                    payload=_payload(rule, event, public_id),
                    next_attempt_at=now + REDISPATCH_AFTER,
                )
                for channel in rule.channels.all()
            ],
            ignore_conflicts=True,
        )
        ids = list(
            Notification.objects.filter(
                rule=rule, transition=rule.transitions, status=NotificationStatus.PENDING
            ).values_list("pk", flat=True)
        )
        transaction.on_commit(lambda: [_send_deliver(pk) for pk in ids])
    logger.info("monitoring: rule %s is %s: %s", rule.public_id, want, measure.detail)
    return "firing" if want == AlertState.FIRING else "resolved"


def _payload(rule: AlertRule, event: str, public_id: str) -> dict[str, Any]:
    verb = "is firing" if event == NotificationEvent.FIRING else "resolved"
    return {
        "id": public_id,
        "event": event,
        "title": f"{rule.name} {verb}",
        "message": f"{rule.detail} (threshold {rule.threshold.normalize():f}).",
        "organization": rule.organization.public_id,
        "state": rule.state,
        "since": rule.state_changed_at.isoformat() if rule.state_changed_at else None,
        "value": None if rule.value is None else f"{rule.value.normalize():f}",
        "rule": {
            "id": rule.public_id,
            "name": rule.name,
            "kind": rule.kind,
            "threshold": f"{rule.threshold.normalize():f}",
            "cluster": rule.cluster.public_id if rule.cluster else None,
            "group_id": rule.group_id or None,
        },
        "created_at": timezone.now().isoformat(),
    }


def _send_deliver(notification_pk: int) -> None:
    current_app.send_task("monitoring.deliver_notification", args=[notification_pk])


def notifications_dispatch_due(*, now: dt.datetime | None = None) -> int:
    """Send again what is pending and due (a lost task, or a retry after a failed attempt)."""
    now = now or timezone.now()
    due = list(
        Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
    for pk in due:
        _send_deliver(pk)
    return len(due)


def notification_deliver(*, notification_id: int, now: dt.datetime | None = None) -> str:
    """Send one pending notification (idempotent: a sent, failed or busy one is left alone)."""
    with transaction.atomic():
        n = (
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel")
            .filter(pk=notification_id)
            .first()
        )
        if n is None:
            return "busy"
        if n.status != NotificationStatus.PENDING:
            return n.status
        n.attempts += 1
        try:
            delivery.deliver(n.channel, n.public_id, n.payload)
        except delivery.DeliveryError as exc:
            n.last_error = str(exc)[:500]
            at = now or timezone.now()
            if n.attempts >= MAX_ATTEMPTS:
                n.status = NotificationStatus.FAILED
                logger.warning("monitoring: notification %s failed for good: %s", n.public_id, exc)
            else:
                n.next_attempt_at = at + dt.timedelta(seconds=min(5 * 2 ** (n.attempts - 1), 600))
            n.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
            return n.status
        sent_at = now or timezone.now()
        n.status, n.sent_at, n.last_error = NotificationStatus.SENT, sent_at, ""
        n.save(update_fields=["attempts", "last_error", "status", "sent_at"])
        if n.rule_id is not None:
            AlertRule.objects.filter(pk=n.rule_id).update(last_notified_at=sent_at)
    return NotificationStatus.SENT


def notifications_prune(*, now: dt.datetime | None = None) -> int:
    """Beat, hourly: drop notifications older than NOTIFICATION_RETENTION (rules keep their state)."""
    cutoff = (now or timezone.now()) - NOTIFICATION_RETENTION
    deleted, _ = Notification.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def client_metrics_subscription_set(
    *, cluster: Cluster, name: str, metrics: list[str], interval_ms: int, match: list[str], actor: Actor
) -> dict[str, Any]:
    """Create or replace a client-metrics subscription on every broker of the cluster."""
    clients.subscription_set(cluster, name, metrics, interval_ms, match)
    audit_record(
        organization=cluster.organization,
        actor=actor,
        action="client_metrics_subscription.set",
        target_type="client_metrics_subscription",
        target_id=f"{cluster.public_id}/{name}"[:64],
        target_label=name[:200],
        details={
            "cluster": cluster.public_id,
            "name": name,
            "metrics": metrics,
            "interval_ms": interval_ms,
            "match": match,
        },
    )
    return {"name": name, "metrics": metrics, "interval_ms": interval_ms, "match": match}


def client_metrics_subscription_delete(*, cluster: Cluster, name: str, actor: Actor) -> None:
    clients.subscription_delete(cluster, name)
    audit_record(
        organization=cluster.organization,
        actor=actor,
        action="client_metrics_subscription.delete",
        target_type="client_metrics_subscription",
        target_id=f"{cluster.public_id}/{name}"[:64],
        target_label=name[:200],
        details={"cluster": cluster.public_id, "name": name},
    )
