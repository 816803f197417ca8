"""Settings from Django settings when set there, else from the environment (else a default).

Each app keeps its own list of settings (`provisioning/conf.py`, `metering/conf.py`, …); this
module is how they are read and checked, so a bad value fails the same way everywhere: with
ImproperlyConfigured naming the variable and the value.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def setting(name: str, default: str) -> str:
    value = getattr(settings, name, None)
    if value is None or value == "":
        value = os.environ.get(name, "").strip() or default
    return str(value)


def number(
    name: str, default: float, *, what: str = "a number", positive: bool = False, negative_ok: bool = True
) -> float:
    """A float setting; `what` names the unit in the error ("a number of seconds")."""
    raw = setting(name, str(default))
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {what}, not {raw!r}") from exc
    if not math.isfinite(value):  # "inf" and "nan" parse, then break every timeout made of them
        raise ImproperlyConfigured(f"{name} must be {what} (a finite one), not {raw!r}")
    if positive and value <= 0:
        raise ImproperlyConfigured(f"{name} must be positive, not {raw!r}")
    if not negative_ok and value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative, not {raw!r}")
    return value


def flag(name: str, default: bool) -> bool:
    """A yes/no setting: 1, true, yes or on (any case) is yes."""
    return setting(name, "true" if default else "false").lower() in ("1", "true", "yes", "on")


def integer(name: str, default: int) -> int:
    raw = setting(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc


def data_root() -> Path:
    """KASTLE_DATA_DIR: brokers' data (hosts/<name>/) and the platform CA (pki/) live below it."""
    return Path(getattr(settings, "KASTLE_DATA_DIR", None) or setting("KASTLE_DATA_DIR", "var")).resolve()
