"""Domain errors raised by services; the API's exception handler turns them into the error shape."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A service refused a write. Subclasses set the HTTP status and a stable error code."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details if details is not None else {}


class ValidationFailed(ServiceError):
    """Bad input found by a service (e.g. a name already taken). `details` maps fields to messages."""

    status_code = 400
    code = "validation_error"


class Conflict(ServiceError):
    """The object's current state does not allow this (e.g. an illegal status transition)."""

    status_code = 409
    code = "conflict"


class LimitExceeded(Conflict):
    """A plan limit would be exceeded."""

    code = "limit_exceeded"


class Forbidden(ServiceError):
    status_code = 403
    code = "permission_denied"
