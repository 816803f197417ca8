"""Delivering one notification: an e-mail (Django's mail backend) or a signed webhook POST.

Webhook requests carry:
  Content-Type: application/json
  Kastle-Notification-Id: ntf-…     the same on every retry of one notification: deduplicate on it
  Kastle-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
docs/monitoring.md shows how to verify them. The secret is derived, never stored (`webhook_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.core.mail import send_mail
from django.utils.crypto import salted_hmac

from . import conf
from .models import NotificationChannel

SIGNATURE_HEADER = "Kastle-Signature"
ID_HEADER = "Kastle-Notification-Id"
USER_AGENT = "Kastle-Alerts/1"


class DeliveryError(Exception):
    """The channel did not take the notification (the message says why, for the tenant)."""


def webhook_secret(channel: NotificationChannel) -> str:
    """The channel's signing secret: HMAC of SECRET_KEY, the channel's id and its secret generation."""
    digest = salted_hmac(
        "monitoring.webhook-secret", f"{channel.public_id}:{channel.secret_generation}", algorithm="sha256"
    ).hexdigest()
    return "whsec_" + digest


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None
) -> bool:
    """What a receiver does (docs/monitoring.md): recompute, compare in constant time, check the age."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def check_url(url: str) -> str | None:
    """Why a webhook URL is refused, or None. Private, loopback and link-local targets are refused
    unless KASTLE_WEBHOOK_ALLOW_PRIVATE: a tenant must not reach the operator's own services."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Use an http:// or https:// URL with a host name."
    if conf.webhook_allow_private():
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"The host name {parts.hostname} does not resolve."
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return f"{parts.hostname} resolves to {address}, a private address; webhooks must be public."
    return None


def send_webhook(channel: NotificationChannel, notification_id: str, payload: dict[str, Any]) -> None:
    problem = check_url(channel.url)
    if problem:
        raise DeliveryError(problem)
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: notification_id,
        SIGNATURE_HEADER: sign(webhook_secret(channel), int(time.time()), body),
    }
    try:
        # stream: only the status counts, and a body the receiver streams or stalls must not hold
        # the worker (the timeout bounds each read, not the whole body)
        response = requests.post(
            channel.url,
            data=body,
            headers=headers,
            timeout=conf.webhook_timeout(),
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        raise DeliveryError(f"POST {channel.url} failed: {type(exc).__name__}") from exc
    status = response.status_code
    response.close()
    if not 200 <= status < 300:
        raise DeliveryError(f"POST {channel.url} answered {status}; a 2xx is expected.")


def send_email(channel: NotificationChannel, payload: dict[str, Any]) -> None:
    subject = f"[Kastle] {payload['title']}"
    lines = [payload["message"], ""]
    rule = payload.get("rule")
    if rule:
        lines += [
            f"Rule: {rule['name']} ({rule['id']}, {rule['kind']}), threshold {rule['threshold']}",
            f"State: {payload['state']} since {payload.get('since') or '-'}",
        ]
        if rule.get("cluster"):
            lines.append(f"Cluster: {rule['cluster']}")
    lines.append(f"Notification: {payload['id']}")
    try:
        sent = send_mail(subject, "\n".join(lines), conf.alert_from_email(), list(channel.emails))
    except (OSError, ValueError) as exc:  # smtplib errors are OSErrors
        raise DeliveryError(f"The mail server refused the message: {type(exc).__name__}: {exc}") from exc
    if sent != 1:
        raise DeliveryError("The mail backend sent nothing.")


def deliver(channel: NotificationChannel, notification_id: str, payload: dict[str, Any]) -> None:
    if channel.kind == "webhook":
        send_webhook(channel, notification_id, payload)
    else:
        send_email(channel, payload)
