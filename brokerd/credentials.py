"""The credentials file format shared by brokerd and the control plane.

Pure Python, no Django. A credentials file is JSON::

    {"version": 1,
     "users": {"<username>": {"SCRAM-SHA-256": {"salt": b64, "iterations": 4096,
                                                 "stored_key": b64, "server_key": b64},
                              "SCRAM-SHA-512": {...}}}}

Only SCRAM verifiers (RFC 5802) are kept, never a password. A PLAIN login is checked by
deriving the SCRAM-SHA-256 stored key from the offered password with the stored salt.

Optional per-user fields (readers that do not know them ignore them):

    "expires_at": <unix seconds, a number>   the key stops authenticating at this time, and
                                             brokerd closes its connections when it passes
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokerd.durable import atomic_write

MECHANISMS: dict[str, str] = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
DEFAULT_ITERATIONS = 4096
FORMAT_VERSION = 1


class CredentialsError(ValueError):
    """The credentials file or an entry in it is malformed."""


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @property
    def hash_name(self) -> str:
        return MECHANISMS[self.mechanism]

    def to_json(self) -> dict[str, Any]:
        return {
            "salt": _b64(self.salt),
            "iterations": self.iterations,
            "stored_key": _b64(self.stored_key),
            "server_key": _b64(self.server_key),
        }

    @classmethod
    def from_json(cls, mechanism: str, data: dict[str, Any]) -> ScramVerifier:
        try:
            return cls(
                mechanism=mechanism,
                salt=base64.b64decode(data["salt"], validate=True),
                iterations=int(data["iterations"]),
                stored_key=base64.b64decode(data["stored_key"], validate=True),
                server_key=base64.b64decode(data["server_key"], validate=True),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CredentialsError(f"bad {mechanism} verifier: {exc}") from exc


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def salted_password(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 Hi(): PBKDF2 with HMAC of the mechanism's hash."""
    return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)


def derive_keys(hash_name: str, salted: bytes) -> tuple[bytes, bytes, bytes]:
    """Return (client_key, stored_key, server_key) for a salted password."""
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return client_key, stored_key, server_key


def make_verifier(
    mechanism: str, password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> ScramVerifier:
    hash_name = MECHANISMS[mechanism]
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = salted_password(hash_name, password.encode("utf-8"), salt, iterations)
    _, stored_key, server_key = derive_keys(hash_name, salted)
    return ScramVerifier(mechanism, salt, iterations, stored_key, server_key)


def make_user_entry(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> dict[str, Any]:
    """Verifiers for every supported mechanism, each with its own salt."""
    return {m: make_verifier(m, password, iterations=iterations).to_json() for m in MECHANISMS}


def check_plain(entry: dict[str, Any], password: str) -> bool:
    """Check a PLAIN password against a user's SCRAM-SHA-256 verifier."""
    verifier = ScramVerifier.from_json("SCRAM-SHA-256", entry["SCRAM-SHA-256"])
    candidate = make_verifier(
        verifier.mechanism, password, iterations=verifier.iterations, salt=verifier.salt
    )
    return hmac.compare_digest(candidate.stored_key, verifier.stored_key)


def expires_at(entry: dict[str, Any]) -> float | None:
    """The entry's expiry (unix seconds), or None if it never expires."""
    value = entry.get("expires_at")
    return None if value is None else float(value)


def is_expired(entry: dict[str, Any], now: float) -> bool:
    value = entry.get("expires_at")
    return value is not None and now >= float(value)


def verifiers_of(entry: dict[str, Any]) -> dict[str, Any]:
    """Only the SCRAM verifiers of an entry (to tell a changed secret from a changed expiry)."""
    return {m: entry.get(m) for m in MECHANISMS}


def parse(text: str) -> dict[str, dict[str, Any]]:
    """Parse and validate a credentials document; return {username: entry}."""
    try:
        doc = json.loads(text) if text.strip() else {"version": FORMAT_VERSION, "users": {}}
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"credentials file is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), dict):
        raise CredentialsError('credentials file must be a JSON object with a "users" object')
    users: dict[str, dict[str, Any]] = doc["users"]
    for name, entry in users.items():
        if not isinstance(entry, dict):
            raise CredentialsError(f"user {name!r}: entry must be an object")
        for mechanism in MECHANISMS:
            if mechanism not in entry:
                raise CredentialsError(f"user {name!r}: missing {mechanism} verifier")
            ScramVerifier.from_json(mechanism, entry[mechanism])
        expiry = entry.get("expires_at")
        if expiry is not None and (isinstance(expiry, bool) or not isinstance(expiry, int | float)):
            raise CredentialsError(f"user {name!r}: expires_at must be a number of unix seconds")
    return users


def dumps(users: dict[str, dict[str, Any]]) -> str:
    return json.dumps({"version": FORMAT_VERSION, "users": users}, indent=1, sort_keys=True)


def load(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return {}
    return parse(p.read_text(encoding="utf-8"))


def write_atomic(path: str | os.PathLike[str], users: dict[str, dict[str, Any]]) -> None:
    """Write the whole file with a rename, so readers never see a half-written file."""
    atomic_write(path, dumps(users), mode=0o600)


def set_user(
    path: str | os.PathLike[str], username: str, password: str, *, expires_at: float | None = None
) -> None:
    users = load(path)
    users[username] = make_user_entry(password)
    if expires_at is not None:
        users[username]["expires_at"] = expires_at
    write_atomic(path, users)


def delete_user(path: str | os.PathLike[str], username: str) -> bool:
    users = load(path)
    if users.pop(username, None) is None:
        return False
    write_atomic(path, users)
    return True
