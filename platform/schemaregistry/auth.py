"""HTTP basic auth with the cluster's API keys, checked against their stored SCRAM verifiers.

A verified (key, secret) is remembered for at most `CACHE_TTL_S`, so PBKDF2 does not run on every
request of a busy client, while a revoked or expired key stops working within that second (the
platform promises revocation within 2 s). What a key may do follows its scope: unscoped keys do
everything; a prefix-scoped key reads (consume) or reads and writes (produce, full) the subjects of
its topics, i.e. subjects starting with its prefix (TopicNameStrategy `<topic>-key`/`-value`,
TopicRecordNameStrategy `<topic>-<record>`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from brokerd.credentials import check_plain
from clusters.models import Cluster
from iam.models import ApiKey

from . import errors

CACHE_TTL_S = 1.0
_cache: dict[tuple[int, str, bytes], tuple[float, Caller]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Caller:
    key: str
    prefix: str | None  # None: an unscoped key
    access: str  # full, produce or consume

    def may_read(self, subject: str) -> bool:
        return self.prefix is None or subject.startswith(self.prefix)

    def may_write(self, subject: str) -> bool:
        return self.may_read(subject) and self.access != "consume"

    @property
    def is_unscoped(self) -> bool:
        return self.prefix is None

    def require_read(self, subject: str) -> None:
        if not self.may_read(subject):
            raise errors.forbidden(
                f"API key {self.key} may only use subjects of topics starting with {self.prefix!r}"
            )

    def require_write(self, subject: str) -> None:
        self.require_read(subject)
        if self.access == "consume":
            raise errors.forbidden(f"API key {self.key} has consume access: it may only read schemas")

    def require_unscoped(self, what: str) -> None:
        if not self.is_unscoped:
            raise errors.forbidden(
                f"API key {self.key} is scoped to a topic prefix; {what} needs an unscoped key"
            )


def _credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise errors.unauthorized("Unauthorized: use HTTP basic auth with an API key and its secret")
    try:
        key, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.unauthorized("Unauthorized: malformed basic credentials") from None
    if not sep or not key or not secret:
        raise errors.unauthorized("Unauthorized: malformed basic credentials")
    return key, secret


def authenticate(cluster: Cluster, header: str | None) -> Caller:
    """The caller of a registry request on `cluster` (401 for no, wrong, revoked or foreign keys)."""
    if not header:
        raise errors.unauthorized()
    key, secret = _credentials(header)
    digest = hashlib.sha256(secret.encode()).digest()
    cache_key = (cluster.pk, key, digest)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(cache_key)
    if hit is not None and hit[0] > now:
        return hit[1]
    row = (
        ApiKey.objects.filter(cluster=cluster, key=key, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .values("verifier", "scope_topic_prefix", "scope_access")
        .first()
    )
    if row is None or not check_plain(row["verifier"], secret):
        raise errors.unauthorized()
    caller = Caller(
        key=key,
        prefix=row["scope_topic_prefix"] if row["scope_access"] else None,
        access=row["scope_access"] or "full",
    )
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[cache_key] = (now + CACHE_TTL_S, caller)
    return caller
