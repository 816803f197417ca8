"""Log-in throttling and lockout, for the portal's log-in form and the REST password log-in alike.

Both go through Django's ``authenticate``, so the checks live in an authentication backend
(``LockoutModelBackend``, first in ``AUTHENTICATION_BACKENDS``):

- an **account** with ``KASTLE_LOGIN_MAX_FAILURES`` (5) failed log-ins in a row is locked for
  ``KASTLE_LOGIN_LOCKOUT_SECONDS`` (900): every attempt is refused without checking the password,
  even a correct one; a successful log-in resets the count;
- a **client address** with ``KASTLE_LOGIN_IP_MAX_FAILURES`` (30) failures within the lockout
  window is throttled for the rest of that window (password spraying across accounts).

Counts live in the shared cache (Redis in production), so every web process sees them. Each
failure of a known account, each lockout and each throttled address is an audit event
(``auth.login_failed``, ``auth.login_locked``, ``auth.login_throttled``) in the account's
organizations (no organization for unknown emails). Passwords are never logged or audited.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

from .audit import Actor, audit_record, client_ip
from .models import User, UserManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginRefused:
    reason: str  # "locked" | "throttled"
    retry_after: int  # seconds


def _ident(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _keys(email: str) -> tuple[str, str]:
    ident = _ident(UserManager.normalize_email(email or "").lower())
    return f"kastle:login:fail:{ident}", f"kastle:login:lock:{ident}"


def _ip_keys(ip: str) -> tuple[str, str]:
    ident = _ident(ip)
    return f"kastle:login:ipfail:{ident}", f"kastle:login:iplock:{ident}"


def _window() -> int:
    return int(settings.KASTLE_LOGIN_LOCKOUT_SECONDS)


def refused(email: str, ip: str | None) -> LoginRefused | None:
    """Is a log-in for `email` from `ip` refused right now (without trying the password)?"""
    _, lock_key = _keys(email)
    until = cache.get(lock_key)
    if until is not None:
        return LoginRefused("locked", max(1, int(until - _now())))
    if ip:
        _, ip_lock = _ip_keys(ip)
        until = cache.get(ip_lock)
        if until is not None:
            return LoginRefused("throttled", max(1, int(until - _now())))
    return None


def _now() -> float:
    import time

    return time.time()


def _incr(key: str, ttl: int) -> int:
    if cache.add(key, 1, ttl):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, ttl)
        return 1


def _audit(user: User | None, action: str, ip: str | None, details: dict) -> None:
    actor = Actor(user=user, ip=ip)
    org_ids = list(user.memberships.values_list("organization_id", flat=True)) if user is not None else []
    for org_id in org_ids or [None]:
        audit_record(
            organization_id=org_id,
            actor=actor,
            action=action,
            target_type="user",
            target_id=str(user.public_id) if user is not None else "",
            target_label=(user.email if user is not None else details.get("email", ""))[:200],
            details=details,
        )


def record_failure(email: str, ip: str | None) -> None:
    email = UserManager.normalize_email(email or "").lower()
    window = _window()
    fail_key, lock_key = _keys(email)
    failures = _incr(fail_key, window)
    user = User.objects.filter(email__iexact=email).first() if email else None
    if user is not None:
        _audit(user, "auth.login_failed", ip, {"failures": failures})
    if failures >= settings.KASTLE_LOGIN_MAX_FAILURES and cache.add(lock_key, _now() + window, window):
        cache.delete(fail_key)
        logger.warning("log-in locked for %s after %d failures (from %s)", email, failures, ip or "?")
        details = {"failures": failures, "locked_seconds": window, "email": email}
        _audit(user, "auth.login_locked", ip, details)
    if ip:
        ip_fail, ip_lock = _ip_keys(ip)
        count = _incr(ip_fail, window)
        if count >= settings.KASTLE_LOGIN_IP_MAX_FAILURES and cache.add(ip_lock, _now() + window, window):
            cache.delete(ip_fail)
            logger.warning("log-ins from %s throttled after %d failures", ip, count)
            _audit(None, "auth.login_throttled", ip, {"failures": count, "throttled_seconds": window})


def record_success(email: str) -> None:
    fail_key, _ = _keys(email)
    cache.delete(fail_key)


class LockoutModelBackend(ModelBackend):
    """ModelBackend with lockout. A refusal raises PermissionDenied, so no later backend retries it.

    ``request.kastle_login_refused`` carries the refusal (LoginRefused) for the views' messages.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        email = username if username is not None else kwargs.get(User.USERNAME_FIELD)
        if email is None or password is None:
            return None
        ip = client_ip(request) if request is not None else None
        refusal = refused(email, ip)
        if refusal is not None:
            if request is not None:
                request.kastle_login_refused = refusal
            raise PermissionDenied(refusal.reason)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(email, ip)
            refusal = refused(email, ip)
            if refusal is not None and request is not None:
                request.kastle_login_refused = refusal
            raise PermissionDenied("invalid")  # the other backends would only check it again
        record_success(email)
        return user


def refusal_message(refusal: LoginRefused) -> str:
    minutes = max(1, (refusal.retry_after + 59) // 60)
    if refusal.reason == "locked":
        return (
            f"Too many failed log-ins for this account. It is locked for {minutes} more minute(s); "
            "try again later."
        )
    return f"Too many failed log-ins from your address. Try again in {minutes} minute(s)."
