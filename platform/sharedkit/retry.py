"""How long a task waits before its next attempt after a transient error."""

from __future__ import annotations

#: No wait is longer than this: a cluster's tenant is waiting on the outcome.
MAX_BACKOFF_S = 30.0


def backoff(retries: int, *, cap: float = MAX_BACKOFF_S) -> float:
    """Exponential: 1, 2, 4, 8, 16 s (`retries` done so far), never more than `cap`."""
    return float(min(2**retries, cap))
