"""Every `kastle` command, with the placeholders the bad-input test fills in.

{cluster}: a cluster id; {topic}, {key}, {group}, {acl}, {sa}: objects on it (or in the org).
The test runs each command against a platform that is down, with a wrong token, with an unknown
cluster, with unknown objects, and with a flag that does not exist.
"""

from __future__ import annotations

import contextlib
import io
import sys

from kastle.app import run

C = ["--cluster", "{cluster}"]

COMMANDS: list[list[str]] = [
    ["whoami"],
    ["context", "set", "{cluster}"],
    ["cluster", "list"],
    ["cluster", "describe", "{cluster}"],
    ["cluster", "create", "never", "--plan", "basic"],
    ["cluster", "delete", "{cluster}", "--yes"],
    ["cluster", "plans"],
    ["topic", "create", "never", *C],
    ["topic", "list", *C],
    ["topic", "describe", "{topic}", *C],
    ["topic", "update", "{topic}", "--partitions", "9", *C],
    ["topic", "delete", "{topic}", "--yes", *C],
    ["topic", "produce", "{topic}", *C],
    ["topic", "consume", "{topic}", "--max", "1", *C],
    ["api-key", "create", "--no-wait", *C],
    ["api-key", "list", *C],
    ["api-key", "describe", "{key}", *C],
    ["api-key", "revoke", "{key}", "--yes", *C],
    ["api-key", "rotate", "{key}", *C],
    ["consumer-group", "list", *C],
    ["consumer-group", "describe", "{group}", *C],
    ["consumer-group", "reset-offsets", "{group}", "--to", "earliest", *C],
    ["consumer-group", "delete", "{group}", "--yes", *C],
    ["acl", "list", *C],
    [
        "acl",
        "create",
        "--principal",
        "User:*",
        "--operation",
        "READ",
        "--resource-type",
        "TOPIC",
        "--resource-name",
        "never",
        *C,
    ],
    ["acl", "delete", "{acl}", "--yes", *C],
    ["service-account", "list"],
    ["service-account", "create", "never"],
    ["service-account", "describe", "{sa}"],
    ["service-account", "update", "{sa}", "--name", "never"],
    ["service-account", "delete", "{sa}", "--yes"],
    ["usage", "--cluster", "{cluster}"],
    ["costs"],
    ["config", "client", "--lang", "python", *C],
]
OBJECTS = ("{topic}", "{key}", "{group}", "{acl}", "{sa}")
PUBLIC = {("cluster", "plans")}  # answers without a token
#: Unknown objects that are not a 404, as in Kafka: offsets can be set for a group that does not
#: exist yet, once a topic is named (exit 1, and the message says so).
MISSING_OK = {("consumer-group", "reset-offsets"): (1, "name a topic")}

#: Bad values (not just unknown flags): (args, exit code, a word the one-line error must contain).
BAD_VALUES: list[tuple[list[str], int, str]] = [
    (["cluster", "create", "x"], 2, "--plan"),
    (["cluster", "create", "x", "--plan", "gold"], 1, "plan"),
    (["cluster", "list", "-o", "xml"], 2, "--output"),
    (["cluster", "delete", "{cluster}"], 2, "--yes"),
    (["topic", "create", "t", "--partitions", "0", *C], 2, "--partitions"),
    (["topic", "create", "t", "--config", "retention.ms", *C], 2, "key=value"),
    (["topic", "create", "bad name!", *C], 1, "name"),
    (["topic", "update", "{topic}", *C], 2, "nothing to change"),
    (["topic", "delete", "{topic}", *C], 2, "--yes"),
    (["topic", "produce", "{topic}", "--value-format", "xml", *C], 2, "--value-format"),
    (["topic", "consume", "{topic}", "--offset", "1", "--timestamp", "2", *C], 2, "cannot be combined"),
    (["topic", "consume", "{topic}", "--timestamp", "yesterday", *C], 2, "--timestamp"),
    (["api-key", "create", "--access", "produce", *C], 2, "--scope-prefix"),
    (["api-key", "create", "--scope-prefix", "o", "--access", "all", *C], 2, "--access"),
    (["api-key", "create", "--expires-in", "3parsecs", *C], 2, "--expires-in"),
    (["api-key", "rotate", "{key}", "--overlap", "soon", *C], 2, "--overlap"),
    (["consumer-group", "reset-offsets", "{group}", "--to", "sideways", *C], 2, "--to"),
    (["consumer-group", "reset-offsets", "{group}", "--to", "offset", *C], 2, "--value"),
    (["acl", "delete", "--yes", *C], 2, "ACL id"),
    (
        [
            "acl",
            "create",
            "--principal",
            "User:*",
            "--operation",
            "FLY",
            "--resource-type",
            "TOPIC",
            "--resource-name",
            "x",
            *C,
        ],
        1,
        "operation",
    ),
    (["service-account", "update", "{sa}"], 2, "nothing to change"),
    (["config", "client", "--lang", "cobol", *C], 2, "--lang"),
    (["usage", "--group-by", "minute"], 1, "group_by"),
    (["login", "--token", "t", "--email", "a@b.c"], 2, "--token"),
]


def fill(args: list[str], **values: str) -> list[str]:
    return [a.format(**values) if "{" in a else a for a in args]


def invoke(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    """`kastle ARGS` in this process (the same code as the console script, minus the interpreter
    start-up: the matrix has a few hundred runs)."""
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(args)
    finally:
        sys.stdin = saved_stdin
    return code, out.getvalue(), err.getvalue()
