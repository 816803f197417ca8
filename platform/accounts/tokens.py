"""REST token format and digests. A token is shown once; only its SHA-256 digest is stored."""

import hashlib
import secrets

TOKEN_PREFIX = "kst_"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
