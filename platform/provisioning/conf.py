"""Provisioning settings, from Django settings when set there, else from the environment.

Per host (each broker host's worker reads its own):
  KASTLE_HOST_NAME        this host's name; its worker consumes `host.<name>` (default `local`)
  KASTLE_HOST_ADDRESS     the address brokers listen on and advertise (default 127.0.0.1)
  KASTLE_HOST_PORTS       the port range brokers may use, `MIN-MAX` (default 20000-20999)
  KASTLE_HOST_CAPACITY    how many brokers the host may run (default 200)
  KASTLE_DATA_DIR         data root; a host keeps its brokers under hosts/<name>/
Timings (seconds): KASTLE_HEARTBEAT_INTERVAL (5), KASTLE_HOST_TIMEOUT (30, no heartbeat for this
long = host not live), KASTLE_RECONCILE_INTERVAL (3), KASTLE_BROKER_START_TIMEOUT (30),
KASTLE_OPERATION_LEASE (20), KASTLE_UNCLAIMED_GRACE (15).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _get(name: str, default: str) -> str:
    value = getattr(settings, name, None)
    if value is None or value == "":
        value = os.environ.get(name, "").strip() or default
    return str(value)


def _float(name: str, default: float) -> float:
    raw = _get(name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {raw!r}") from exc


def host_name() -> str:
    return _get("KASTLE_HOST_NAME", "local")


def host_address() -> str:
    return _get("KASTLE_HOST_ADDRESS", "127.0.0.1")


def host_ports() -> tuple[int, int]:
    raw = _get("KASTLE_HOST_PORTS", "20000-20999")
    low, sep, high = raw.partition("-")
    try:
        port_min, port_max = int(low), int(high if sep else low)
    except ValueError as exc:
        raise ImproperlyConfigured(f"KASTLE_HOST_PORTS must look like 20000-20999, not {raw!r}") from exc
    if not (1 <= port_min <= port_max <= 65535) or port_max - port_min < 1:
        raise ImproperlyConfigured(
            f"KASTLE_HOST_PORTS {raw!r} must be a range of at least 2 ports within 1-65535"
        )
    return port_min, port_max


def host_capacity() -> int:
    raw = _get("KASTLE_HOST_CAPACITY", "200")
    try:
        return max(0, int(raw))
    except ValueError as exc:
        raise ImproperlyConfigured(f"KASTLE_HOST_CAPACITY must be an integer, not {raw!r}") from exc


def data_root() -> Path:
    return Path(getattr(settings, "KASTLE_DATA_DIR", None) or _get("KASTLE_DATA_DIR", "var")).resolve()


def host_root(name: str | None = None) -> Path:
    return data_root() / "hosts" / (name or host_name())


def heartbeat_interval() -> float:
    return _float("KASTLE_HEARTBEAT_INTERVAL", 5.0)


def host_timeout() -> float:
    return _float("KASTLE_HOST_TIMEOUT", 30.0)


def reconcile_interval() -> float:
    return _float("KASTLE_RECONCILE_INTERVAL", 3.0)


def broker_start_timeout() -> float:
    return _float("KASTLE_BROKER_START_TIMEOUT", 30.0)


def operation_lease() -> float:
    """How long a lifecycle task's lease lasts unrenewed; an expired lease means its worker died."""
    return _float("KASTLE_OPERATION_LEASE", 20.0)


def unclaimed_grace() -> float:
    """A PROVISIONING/DELETING cluster nobody leased for this long is driven again by reconciliation."""
    return _float("KASTLE_UNCLAIMED_GRACE", 15.0)


#: How often reconciliation drives a cluster again before giving up with FAILED.
MAX_REDRIVES = 3
