"""What can go wrong, as one-line messages with exit codes a script can branch on."""

from __future__ import annotations

#: Exit codes (documented in `kastle --help` and the README).
OK = 0
FAILED = 1  # the platform refused the request (invalid, forbidden, conflict) or the operation failed
USAGE = 2  # bad command line (click's own code for usage errors)
NOT_FOUND = 3  # the cluster, topic, key, group, ... does not exist (or belongs to another organization)
AUTH = 4  # not logged in, or the token was refused
UNAVAILABLE = 5  # the platform or the cluster cannot be reached, or answered with a server error
INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 refused or failed, 2 bad usage, 3 not found, 4 not logged in or token refused, "
    "5 platform or cluster unreachable (or a server error), 130 interrupted."
)


class CliError(Exception):
    """An error the user can act on: printed as one line `kastle: <message>`, no traceback."""

    exit_code = FAILED

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    exit_code = USAGE


class NotFound(CliError):
    exit_code = NOT_FOUND


class AuthError(CliError):
    exit_code = AUTH


class Unavailable(CliError):
    exit_code = UNAVAILABLE
