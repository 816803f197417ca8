"""The config file: the site, the REST token, the current cluster and API keys per cluster.

It lives in the user's config directory (`$XDG_CONFIG_HOME/kastle/config.json`, by default
`~/.config/kastle/config.json`; `KASTLE_CONFIG` names another file) and holds secrets, so the
directory is 0700 and the file 0600, written whole and renamed into place (never half-written).
`KASTLE_URL` and `KASTLE_TOKEN` override the file, for CI.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kastle.errors import AuthError, CliError


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kastle"


def config_path() -> Path:
    explicit = os.environ.get("KASTLE_CONFIG")
    return Path(explicit) if explicit else config_dir() / "config.json"


@dataclass
class Config:
    url: str | None = None
    token: str | None = None
    token_id: str | None = None  # set when `kastle login` made the token (logout revokes it)
    email: str | None = None
    current_cluster: str | None = None
    #: cluster id -> {"api_key": ..., "api_secret": ...}: what produce, consume and config client use
    api_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path = field(default_factory=config_path, repr=False)

    # --- the effective site and token (environment first) ------------------------------------
    @property
    def site_url(self) -> str | None:
        url = os.environ.get("KASTLE_URL") or self.url
        return normalize_url(url) if url else None

    @property
    def effective_token(self) -> str | None:
        if os.environ.get("KASTLE_TOKEN"):
            return os.environ["KASTLE_TOKEN"]
        if self.url and self.site_url != normalize_url(self.url):
            return None  # KASTLE_URL names another site: the stored token is never sent there
        return self.token

    def require_login(self) -> tuple[str, str]:
        url, token = self.site_url, self.effective_token
        if not url:
            raise AuthError("no Kastle site configured: run `kastle login --url URL` or set KASTLE_URL")
        if not token:
            raise AuthError(f"not logged in to {url}: run `kastle login` or set KASTLE_TOKEN")
        return url, token

    # --- file I/O -----------------------------------------------------------------------------
    @classmethod
    def load(cls) -> Config:
        path = config_path()
        try:
            raw = path.read_text()
        except FileNotFoundError:
            return cls(path=path)
        except OSError as exc:
            raise CliError(f"cannot read the config file {path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            raise CliError(
                f"the config file {path} is not valid JSON: fix it or remove it and run `kastle login`"
            ) from None
        known = {k: data[k] for k in ("url", "token", "token_id", "email", "current_cluster") if k in data}
        keys = data.get("api_keys") if isinstance(data.get("api_keys"), dict) else {}
        return cls(**known, api_keys=keys, path=path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token": self.token,
            "token_id": self.token_id,
            "email": self.email,
            "current_cluster": self.current_cluster,
            "api_keys": self.api_keys,
        }

    def save(self) -> None:
        write_private(self.path, json.dumps(self.as_dict(), indent=2) + "\n")

    # --- API keys -----------------------------------------------------------------------------
    def stored_key(self, cluster_id: str) -> tuple[str, str] | None:
        entry = self.api_keys.get(cluster_id) or {}
        if entry.get("api_key") and entry.get("api_secret"):
            return entry["api_key"], entry["api_secret"]
        return None


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):  # KASTLE_URL is the site root; forgive the API path
        url = url[: -len("/api/v1")]
    if not url.startswith(("http://", "https://")):
        raise CliError(f"the Kastle URL {url!r} must start with http:// or https://")
    return url


def write_private(path: Path, text: str) -> None:
    """Write a secret-bearing file atomically with mode 0600 (its directory 0700 if we make it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _unwritable(path, exc) from None
        raise


def _unwritable(path: Path, exc: OSError) -> CliError:
    return CliError(f"cannot write {path}: {exc.strerror or exc}; name a file in a writable directory")
