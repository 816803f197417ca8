"""Monitoring settings, from Django settings when set there, else from the environment.

KASTLE_METRICS_EXPORT_CACHE_SECONDS  a cluster's live figures (broker /metrics, offsets, groups) are
                                     reused for this long by the export and the alert evaluation,
                                     so scrapes every 15 s and many scrapers cost one collection
                                     (default 10)
KASTLE_ALERT_INTERVAL_SECONDS        alert rules are evaluated this often (default 30; read by
                                     controlplane.settings for the beat schedule)
KASTLE_WEBHOOK_TIMEOUT_SECONDS       one webhook delivery attempt waits this long (default 5)
KASTLE_WEBHOOK_ALLOW_PRIVATE         webhooks may target loopback/private addresses (default false:
                                     a tenant must not reach the operator's internal services)
KASTLE_ALERT_FROM_EMAIL              sender of alert e-mails (default Django's DEFAULT_FROM_EMAIL)
"""

from __future__ import annotations

from django.conf import settings

from sharedkit.envconf import flag, number, setting


def _float(name: str, default: float) -> float:
    return number(name, default, negative_ok=False)


def export_cache_seconds() -> float:
    return _float("KASTLE_METRICS_EXPORT_CACHE_SECONDS", 10.0)


def webhook_timeout() -> float:
    return max(_float("KASTLE_WEBHOOK_TIMEOUT_SECONDS", 5.0), 0.5)


def webhook_allow_private() -> bool:
    return flag("KASTLE_WEBHOOK_ALLOW_PRIVATE", False)


def alert_from_email() -> str:
    return setting("KASTLE_ALERT_FROM_EMAIL", settings.DEFAULT_FROM_EMAIL)
