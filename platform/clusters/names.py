"""The cluster-name rule, in one place: the service enforces it, and the REST serializer and the
portal's form ask it too, so every field's error is reported at once in the rule's own words."""

from __future__ import annotations

import re

MAX_LENGTH = 64
RULE = "Use only ASCII letters, digits, dots and dashes, starting with a letter or digit (e.g. orders-eu.1)."
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


def name_problem(name: object) -> str | None:
    """Why `name` (already stripped) is not a cluster name, or None when it is one."""
    if not isinstance(name, str) or not name:
        return "This field may not be blank."
    if len(name) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if not _NAME_RE.match(name):
        return RULE
    return None
