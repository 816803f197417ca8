"""Metering settings, from Django settings when set there, else from the environment.

KASTLE_METERING_INTERVAL_SECONDS      scrape every RUNNING broker this often (default 60)
KASTLE_METERING_MAX_GAP_SECONDS       time-based usage (storage, partitions, cluster hours) covers at
                                      most this long since a broker's previous sample (default
                                      max(10 intervals, 600 s)); a longer gap is not charged
KASTLE_METERING_SAMPLE_RETENTION_HOURS  per-interval samples kept for charts (default 48)
KASTLE_SPEND_CAP_PRODUCER_BYTE_RATE   produce quota (bytes/s per API key) of a capped organization
                                      (default 1024)
KASTLE_TRIAL_CREDIT                   credit granted at sign-up, USD (default 400.00)
KASTLE_INVOICE_GRACE_SECONDS          a month is invoiced this long after it ended (default 3600)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

from sharedkit.envconf import number, setting


def _float(name: str, default: float) -> float:
    return number(name, default, positive=True)


def interval() -> float:
    return _float("KASTLE_METERING_INTERVAL_SECONDS", 60.0)


def max_gap() -> float:
    raw = setting("KASTLE_METERING_MAX_GAP_SECONDS", "")
    return _float("KASTLE_METERING_MAX_GAP_SECONDS", 0) if raw else max(10 * interval(), 600.0)


def sample_retention_hours() -> float:
    return _float("KASTLE_METERING_SAMPLE_RETENTION_HOURS", 48.0)


def spend_cap_producer_byte_rate() -> int:
    return int(_float("KASTLE_SPEND_CAP_PRODUCER_BYTE_RATE", 1024))


def trial_credit() -> Decimal:
    raw = setting("KASTLE_TRIAL_CREDIT", "400.00")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"KASTLE_TRIAL_CREDIT must be an amount in USD, not {raw!r}") from exc
    return value.quantize(Decimal("0.01"))


def invoice_grace() -> float:
    return _float("KASTLE_INVOICE_GRACE_SECONDS", 3600.0)
