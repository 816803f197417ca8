"""Compatibility levels and the check of a new schema against a subject's earlier versions.

BACKWARD: the new schema reads data written with the latest version; FORWARD: the latest version
reads data written with the new schema; FULL: both. The _TRANSITIVE levels check every live
version instead of only the latest. NONE checks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from .formats import ParsedSchema, incompatibilities

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "BACKWARD"


def check(level: str, new: ParsedSchema, previous: Sequence[ParsedSchema]) -> list[str]:
    """Messages naming each incompatibility of `new` with `previous` (oldest first) under `level`."""
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.removesuffix("_TRANSITIVE")
    messages: list[str] = []
    for old in reversed(against):
        if base in ("BACKWARD", "FULL"):
            messages += [f"new schema reading data of an old one: {m}" for m in incompatibilities(new, old)]
        if base in ("FORWARD", "FULL"):
            messages += [f"old schema reading data of the new one: {m}" for m in incompatibilities(old, new)]
        if messages:
            break
    return messages
