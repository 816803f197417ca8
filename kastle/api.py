"""The REST client: `/api/v1/` with a Bearer token, every failure turned into a one-line CliError.

`--verbose` logs each request's method, path, status and time to stderr: never a header, a
body or a query string (they may carry tokens, passwords or secrets).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kastle.errors import AuthError, CliError, NotFound, Unavailable

if TYPE_CHECKING:
    import requests

log = logging.getLogger("kastle")

TIMEOUT = (5, 60)  # connect, read: topic and group calls go to the brokers and can take a while
USER_AGENT = "kastle-cli/0.1"


def seg(value: str) -> str:
    """One URL path segment (topic names may hold dots; ids never hold slashes)."""
    return quote(value, safe="")


class Api:
    def __init__(self, url: str, token: str | None = None) -> None:
        import requests  # here, not at the top: a usage error should not pay for importing it

        self.url = url
        self.base = f"{url}/api/v1/"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # --- verbs --------------------------------------------------------------------------------
    def get(self, path: str, *, what: str | None = None, params: dict | None = None) -> Any:
        return self.request("GET", path, what=what, params=params)

    def post(self, path: str, body: Any = None, *, what: str | None = None) -> Any:
        return self.request("POST", path, what=what, json=body if body is not None else {})

    def patch(self, path: str, body: Any, *, what: str | None = None) -> Any:
        return self.request("PATCH", path, what=what, json=body)

    def put(self, path: str, body: Any, *, what: str | None = None) -> Any:
        return self.request("PUT", path, what=what, json=body)

    def delete(self, path: str, *, what: str | None = None, params: dict | None = None) -> Any:
        return self.request("DELETE", path, what=what, params=params)

    def list_all(self, path: str, *, what: str | None = None, params: dict | None = None) -> list[Any]:
        """Every page of a paginated list, as one list (what `-o json` prints for list commands)."""
        params = {**(params or {}), "page_size": 200}
        items: list[Any] = []
        page = 1
        while True:
            body = self.get(path, what=what, params={**params, "page": page})
            if not isinstance(body, dict) or "results" not in body:
                raise Unavailable(
                    f"{self.url} answered {path} without a paginated list: is it a Kastle site?"
                )
            items.extend(body["results"])
            if not body.get("next"):
                return items
            page += 1

    def text(self, path: str, *, what: str | None = None) -> str:
        return self.request("GET", path, what=what, raw=True)

    # --- the one place requests are made --------------------------------------------------------
    def request(self, method: str, path: str, *, what: str | None = None, raw: bool = False, **kw) -> Any:
        import requests

        url = self.base + path
        start = time.monotonic()
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kw)
        except requests.exceptions.ConnectionError as exc:
            raise Unavailable(
                f"cannot reach Kastle at {self.url} ({_reason(exc)}): is it running? "
                "Check KASTLE_URL or `kastle login --url`"
            ) from None
        except requests.exceptions.Timeout:
            raise Unavailable(
                f"Kastle at {self.url} did not answer {method} /api/v1/{path} in time"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise Unavailable(f"request to {self.url} failed: {exc.__class__.__name__}") from None
        log.info(
            "%s /api/v1/%s -> %s (%.0f ms)",
            method,
            path,
            response.status_code,
            (time.monotonic() - start) * 1000,
        )
        if response.status_code >= 400:
            raise self._error(response, what)
        if raw:
            return response.text
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise Unavailable(
                f"{self.url} answered /api/v1/{path} with something other than JSON "
                f"({response.headers.get('Content-Type', 'no content type')}): check KASTLE_URL"
            ) from None

    def _error(self, response: requests.Response, what: str | None) -> CliError:
        code, message, details = _error_body(response)
        status = response.status_code
        if status == 401:
            return AuthError(
                f"{self.url} refused the token ({message or 'unauthorized'}): "
                "run `kastle login` again, or fix KASTLE_TOKEN"
            )
        if status == 404:
            if what:
                return NotFound(f"{what} not found in your organization")
            return NotFound(message or "not found")
        if status >= 500 or code is None:
            return Unavailable(
                f"Kastle at {self.url} answered HTTP {status}"
                + (f": {message}" if message else " (is KASTLE_URL a Kastle site?)")
            )
        text = message or f"HTTP {status}"
        if details:
            text = f"{text.rstrip('.')}: {flatten(details)}"
        if status == 429 and isinstance(details, dict) and "retry_after_seconds" not in text:
            text += " (try again later)"
        return CliError(text)


def _error_body(response: requests.Response) -> tuple[str | None, str | None, Any]:
    try:
        body = response.json()
    except ValueError:
        return None, None, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    return error.get("code"), error.get("message"), error.get("details")


def flatten(details: Any, prefix: str = "") -> str:
    """`{"name": ["Required."], "scope": {"access": ["Bad."]}}` -> `name: Required.; scope.access: Bad.`"""
    parts: list[str] = []
    if isinstance(details, dict):
        for key, value in details.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix
            inner = flatten(value, name)
            if inner:
                parts.append(inner)
        return "; ".join(parts)
    if isinstance(details, list):
        texts = [flatten(v, prefix) if isinstance(v, dict | list) else str(v) for v in details]
        joined = " ".join(t for t in texts if t)
        if all(not isinstance(v, dict | list) for v in details):
            return f"{prefix}: {joined}" if prefix else joined
        return joined
    return f"{prefix}: {details}" if prefix else str(details)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if hint in text:
            return hint.lower()
    return "connection failed"
