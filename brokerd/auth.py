"""SASL PLAIN and SCRAM-SHA-256/512 (RFC 5802) against the credentials file.

The server side of SCRAM never runs PBKDF2: the verifier holds StoredKey and ServerKey. PLAIN
has to derive the salted password (4096 iterations); that runs in a worker thread and a
success is cached per (user, password digest) until the credentials file changes, so logins
never stall the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from brokerd import credentials

log = logging.getLogger("brokerd.auth")


class AuthenticationFailed(Exception):
    pass


class CredentialStore:
    """The credentials file, reloaded when its mtime/inode/size change."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.users: dict[str, dict[str, Any]] = {}
        self._stamp: tuple | None = None
        self._plain_cache: dict[tuple[str, bytes], bytes] = {}
        self.on_removed: list[Callable[[set[str]], None]] = []
        self.reloads = 0
        # keys with an expires_at stop authenticating then, and their connections close.
        self.clock: Callable[[], float] = time.time
        self._expired: set[str] = set()  # expired users whose connections were already closed

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)

    def load_initial(self) -> None:
        """Load at start-up; errors here stop the broker with a clear message."""
        if not self.path:
            return
        if os.path.exists(self.path) and not os.access(self.path, os.R_OK):
            raise credentials.CredentialsError(
                f"credentials file {self.path} is not readable; fix its permissions"
            )
        self._stamp = self._stat()
        try:
            self.users = credentials.load(self.path)
        except credentials.CredentialsError as exc:
            raise credentials.CredentialsError(f"credentials file {self.path}: {exc}") from None

    def poll(self) -> bool:
        """Reload if the file changed. Returns True if it was reloaded."""
        if not self.path:
            return False
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        try:
            users = credentials.load(self.path)
        except (OSError, credentials.CredentialsError) as exc:
            log.error("credentials file %s not reloaded, keeping the previous users: %s", self.path, exc)
            self._stamp = stamp
            return False
        self._stamp = stamp
        removed = set(self.users) - set(users)
        changed = {
            u
            for u in users
            if u in self.users
            and credentials.verifiers_of(users[u]) != credentials.verifiers_of(self.users[u])
        }  # a new expires_at alone (a rotation's overlap) keeps the key's connections open
        self.users = users
        self._expired &= set(users)
        self._expired -= {u for u in self._expired if not self.is_expired(u)}
        self._plain_cache.clear()
        self.reloads += 1
        log.info("credentials reloaded: %d user(s), %d removed", len(users), len(removed))
        if removed or changed:
            for callback in self.on_removed:
                callback(removed | changed)
        return True

    def is_expired(self, username: str) -> bool:
        entry = self.users.get(username)
        return entry is not None and credentials.is_expired(entry, self.clock())

    def check_expiry(self) -> set[str]:
        """Close the connections of keys whose expires_at passed (once per key). Returns them."""
        now = self.clock()
        newly = {
            u
            for u, entry in self.users.items()
            if u not in self._expired and credentials.is_expired(entry, now)
        }
        if newly:
            self._expired |= newly
            log.info("%d key(s) expired: %s", len(newly), ", ".join(sorted(newly)))
            for callback in self.on_removed:
                callback(newly)
        return newly

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
                self.check_expiry()
            except Exception:  # never let the watcher die
                log.exception("credentials watcher failed")

    # --- PLAIN --------------------------------------------------------------------------
    async def check_plain(self, username: str, password: str) -> bool:
        entry = self.users.get(username)
        if entry is None:
            return False
        digest = hashlib.sha256(password.encode("utf-8")).digest()
        key = (username, digest)
        stored = entry["SCRAM-SHA-256"]["stored_key"]
        if self._plain_cache.get(key) == stored.encode():
            return True
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, credentials.check_plain, entry, password)
        if ok and self.users.get(username) is entry:
            self._plain_cache[key] = stored.encode()
        return ok


def _saslname(raw: str) -> str:
    return raw.replace("=2C", ",").replace("=3D", "=")


def _parse_attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise AuthenticationFailed("malformed SCRAM message")
        out[key] = value
    return out


class SaslSession:
    """One authentication exchange. ``step`` returns (server bytes, done)."""

    def __init__(self, mechanism: str, store: CredentialStore) -> None:
        self.mechanism = mechanism
        self.store = store
        self.principal: str | None = None
        self._state = 0
        self._scram: dict[str, Any] = {}

    async def step(self, token: bytes) -> tuple[bytes, bool]:
        if self.mechanism == "PLAIN":
            return await self._plain(token)
        return self._scram_step(token)

    async def _plain(self, token: bytes) -> tuple[bytes, bool]:
        parts = token.split(b"\x00")
        if len(parts) != 3:
            raise AuthenticationFailed("Invalid SASL/PLAIN message")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != user:
            raise AuthenticationFailed("Authentication failed: authorization id must match the user")
        if not user or not await self.store.check_plain(user, password):
            raise AuthenticationFailed("Authentication failed: Invalid username or password")
        if self.store.is_expired(user):  # the password was right, so saying why is safe
            raise AuthenticationFailed("Authentication failed: the API key has expired")
        self.principal = user
        return b"", True

    def _scram_step(self, token: bytes) -> tuple[bytes, bool]:
        hash_name = credentials.MECHANISMS[self.mechanism]
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("malformed SCRAM message") from None
        if self._state == 0:
            gs2, sep, bare = text.partition(",")
            authz, sep2, bare = bare.partition(",")
            if not sep or not sep2 or gs2 not in ("n", "y"):
                raise AuthenticationFailed(
                    "Invalid SCRAM client first message (channel binding not supported)"
                )
            attrs = _parse_attrs(bare)
            if "n" not in attrs or "r" not in attrs:
                raise AuthenticationFailed("Invalid SCRAM client first message")
            extensions = {k for k in attrs if k not in ("n", "r")}
            if extensions:
                raise AuthenticationFailed("Authentication failed: SCRAM extensions are not supported")
            user = _saslname(attrs["n"])
            if authz.startswith("a=") and _saslname(authz[2:]) != user:
                raise AuthenticationFailed("Authentication failed: authorization id must match the user")
            entry = self.store.users.get(user)
            if entry is None or self.mechanism not in entry:
                raise AuthenticationFailed("Authentication failed: Invalid user credentials")
            verifier = credentials.ScramVerifier.from_json(self.mechanism, entry[self.mechanism])
            nonce = attrs["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
            server_first = f"r={nonce},s={base64.b64encode(verifier.salt).decode()},i={verifier.iterations}"
            self._scram = {
                "user": user,
                "verifier": verifier,
                "nonce": nonce,
                "client_nonce": attrs["r"],
                "client_first_bare": bare,
                "server_first": server_first,
                "gs2": f"{gs2},{authz},",
            }
            self._state = 1
            return server_first.encode(), False
        if self._state == 1:
            s = self._scram
            without_proof, sep, proof_part = text.rpartition(",p=")
            if not sep:
                raise AuthenticationFailed("Invalid SCRAM client final message")
            attrs = _parse_attrs(without_proof)
            expected_cb = base64.b64encode(s["gs2"].encode()).decode()
            # librdkafka before 2.6.1 (kcat 1.7 ships 2.0.2) sends the client nonce twice
            # (librdkafka#4895); Kafka accepts that form too, and the server nonce is still checked.
            nonces = (s["nonce"], s["client_nonce"] + s["nonce"])
            if attrs.get("c") != expected_cb or attrs.get("r") not in nonces:
                raise AuthenticationFailed("Authentication failed: invalid nonce or channel binding")
            try:
                proof = base64.b64decode(proof_part, validate=True)
            except ValueError:
                raise AuthenticationFailed("Invalid SCRAM client proof") from None
            verifier = s["verifier"]
            auth_message = f"{s['client_first_bare']},{s['server_first']},{without_proof}".encode()
            signature = hmac.new(verifier.stored_key, auth_message, hash_name).digest()
            if len(proof) != len(signature):
                raise AuthenticationFailed("Authentication failed: Invalid user credentials")
            client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
            if not hmac.compare_digest(hashlib.new(hash_name, client_key).digest(), verifier.stored_key):
                raise AuthenticationFailed("Authentication failed: Invalid user credentials")
            # the user may have been removed while we were talking
            if s["user"] not in self.store.users:
                raise AuthenticationFailed("Authentication failed: Invalid user credentials")
            if self.store.is_expired(s["user"]):
                raise AuthenticationFailed("Authentication failed: the API key has expired")
            server_sig = hmac.new(verifier.server_key, auth_message, hash_name).digest()
            self.principal = s["user"]
            self._state = 2
            return f"v={base64.b64encode(server_sig).decode()}".encode(), True
        raise AuthenticationFailed("SCRAM exchange already complete")
