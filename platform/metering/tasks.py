"""Metering tasks. Each takes ids/names, refetches, calls one service, and is safe to run twice.

Control queue (`settings.CELERY_DEFAULT_QUEUE`), from beat:
  metering.collect          every KASTLE_METERING_INTERVAL_SECONDS: spend caps, then fan out
  metering.close_invoices   hourly: invoice months that ended
  metering.prune_samples    every 10 minutes: drop per-interval samples older than 48 h
Host queue `host.<name>`:
  metering.host_collect(host)   scrape this host's RUNNING brokers, record usage, converge quotas
"""

from __future__ import annotations

import logging

from celery import shared_task

from provisioning import conf as host_conf
from sharedkit.files import file_lock

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="metering.collect", acks_late=True, ignore_result=True)
def collect() -> dict:
    return services.usage_collect_control()


@shared_task(name="metering.host_collect", acks_late=True, ignore_result=True)
def host_collect(host_name: str) -> dict:
    if host_name != host_conf.host_name():
        logger.error(
            "metering.host_collect for host %s reached a worker of host %s", host_name, host_conf.host_name()
        )
        return {}
    root = host_conf.host_root(host_name)
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".metering.lock", blocking=False) as acquired:
        if not acquired:
            return {"skipped": "another pass is running"}
        report = services.usage_collect_host(host_name=host_name)
    if report.missed or report.quotas or report.stale:
        logger.info("metering pass on %s: %s", host_name, report.as_dict())
    return report.as_dict()


@shared_task(name="metering.close_invoices", acks_late=True, ignore_result=True)
def close_invoices() -> list[str]:
    return services.invoices_close_due()


@shared_task(name="metering.prune_samples", acks_late=True, ignore_result=True)
def usage_samples_prune() -> int:
    return services.usage_samples_prune()
