"""Alert tasks (queue `settings.CELERY_DEFAULT_QUEUE`). Each is safe to run twice (services.py says why).

monitoring.evaluate_alerts            beat, every KASTLE_ALERT_INTERVAL_SECONDS: measure every enabled
                                      rule, queue notifications on changes of state, resend what is due
monitoring.deliver_notification(id)   send one notification (after the commit that queued it)
"""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="monitoring.evaluate_alerts", acks_late=True, ignore_result=True)
def evaluate_alerts() -> dict:
    return services.alerts_evaluate()


@shared_task(name="monitoring.deliver_notification", acks_late=True, ignore_result=True)
def deliver_notification(notification_id: int) -> str:
    return services.notification_deliver(notification_id=notification_id)


@shared_task(name="monitoring.prune_notifications", acks_late=True, ignore_result=True)
def prune_notifications() -> int:
    return services.notifications_prune()
