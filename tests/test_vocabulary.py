"""Source files explain themselves in domain words, never in the tracker's.

An explanation such as "the acls issue" or "issue 4" means nothing to a reader without the
tracker; comments and docstrings say what the code does and why, in Kafka's and Kastle's words.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {
    ".py", ".pyi", ".html", ".js", ".css", ".md", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh",
    ".txt", ".json", ".sql",
}
# Directories that hold no sources of ours (dependencies, build output, runtime data).
SKIP_DIRS = {".git", "node_modules", "var", "__pycache__", ".venv", "venv", "build", "dist", ".ruff_cache"}
AREAS = (
    "admin", "groups?", "acls?", "security", "metering", "billing", "tls", "storage", "compaction",
    "replication", "coordination", "provisioning", "portal", "cli", "fuzz(?:ing)?", "idempotence",
    "transactions?", "metrics", "schema(?:s| registry)?", "quotas?", "sasl", "core", "perf(?:ormance)?",
)
TRACKER = re.compile(
    r"\bissues?[ _#-]*\d+"  # "issue 4", "issue #12", "issues 3-5"
    r"|\b(?:" + "|".join(AREAS) + r")[ _/-]issues?\b"  # "acls issue", "groups_issue", "admin-issue"
    # "this issue", "later issues"; not the verb ("that issue certificates")
    r"|\b(?:this|later|earlier|previous|next|another|that) issues?(?:'s)?\b"
    r"(?! (?:a|an|the|certificates?|keys?|tokens?)\b)"
    r"|\bissue's\b",
    re.IGNORECASE,
)


def source_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or not path.is_file():
            continue
        if path.suffix in SUFFIXES or rel.parts[0] in {"scripts", ".ci"}:
            out.append(path)
    return out


def tracker_words(text: str) -> list[str]:
    return [m.group(0) for m in TRACKER.finditer(text)]


def test_pattern_catches_tracker_words_and_spares_the_verb() -> None:
    assert tracker_words("# acls issue: READ on each topic") == ["acls issue"]
    assert tracker_words("from brokerd.handlers import groups as groups_issue") == ["groups_issue"]
    assert tracker_words("Target (issue 2): p99 <= 50 ms") == ["issue 2"]
    found = tracker_words("found by the admin issue's fuzzer; since this issue")
    assert found == ["admin issue", "this issue"]
    assert tracker_words("workers that issue certificates; Issue a REST token; re-issue the CA") == []


def test_no_tracker_words_in_sources() -> None:
    me = Path(__file__).resolve()
    found = []
    for path in source_files():
        if path.resolve() == me:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            words = tracker_words(line)
            if words:
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {words}")
    assert not found, "tracker vocabulary in sources (say it in domain words):\n" + "\n".join(found)
