"""kastle api-key create|list|describe|revoke|rotate: SASL credentials for a cluster's clients.

A new key's secret is stored in the config file (0600) for `topic produce`/`consume` and
`config client`, written to --write-config if asked, and printed only with -o json (the REST
object, shown once). The command returns once the cluster's brokers accept the key.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from kastle import kafka
from kastle.api import seg
from kastle.config import write_private
from kastle.errors import INTERRUPTED, UsageError
from kastle.output import Format, OutputOpt, done, emit, note, spinner
from kastle.session import ClusterOpt, Session, YesOpt, confirm

app = typer.Typer(help="API keys: the SASL credentials of Kafka clients.", no_args_is_help=True)

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="The API key (its SASL username).")]
WriteConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--write-config",
        help="Also write a ready client config (librdkafka properties, for kcat -F) to this file (0600).",
        dir_okay=False,
    ),
]
WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Return only once the brokers accept the key.")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for the brokers.")]

COLUMNS = [
    ("key", "key"),
    ("description", "description"),
    ("status", "status"),
    ("owner", lambda k: f"{k['owner']['type']}:{k['owner']['id']}" if k.get("owner") else None),
    (
        "scope",
        lambda k: f"{k['scope']['access']} {k['scope']['topic_prefix']}*" if k.get("scope") else "full",
    ),
    ("expires", "expires_at"),
    ("last used", "last_used_at"),
]
CREATED = [
    ("key", "key"),
    ("description", "description"),
    ("cluster", "cluster"),
    ("owner", COLUMNS[3][1]),
    ("scope", COLUMNS[4][1]),
    ("expires", "expires_at"),
]
DURATION = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str, flag: str) -> int:
    match = DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{flag} {value!r}: give a duration like 90s, 30m, 12h, 30d or 2w")
    return int(match.group(1)) * UNITS[match.group(2)]


def _path(cluster_id: str, key: str | None = None) -> str:
    base = f"clusters/{seg(cluster_id)}/api-keys"
    return f"{base}/{seg(key)}" if key else base


def _issue_key(cluster: str | None, rotated: str | None, body: dict[str, Any], *, write_config: Path | None,
           wait: bool, timeout: float, output: Format) -> None:  # fmt: skip
    """Create a key (or rotate `rotated`), keep it, wait for the brokers, and show it."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    if rotated is None:
        path, what = _path(cluster_id), f"cluster {cluster_id}"
    else:
        path, what = f"{_path(cluster_id, rotated)}/rotate", f"API key {rotated} on cluster {cluster_id}"
    created = session.api.post(path, body, what=what)
    _keep(session, cluster_id, created, write_config, wait, timeout)
    _show_created(session, created, output, write_config)


def _keep(session: Session, cluster_id: str, created: dict[str, Any], write_config: Path | None,
          wait: bool, timeout: float) -> None:  # fmt: skip
    """Store the new key, write its client config, and wait until the brokers accept it."""
    session.config.api_keys[cluster_id] = {"api_key": created["key"], "api_secret": created["secret"]}
    session.config.save()
    if not (write_config or wait):
        return
    cluster = session.cluster(cluster_id)
    if cluster.get("status") != "RUNNING":
        note(f"Cluster {cluster_id} is {cluster.get('status')}: the key works once it is RUNNING.")
        return
    conf = kafka.client_settings(session, cluster, created["key"], created["secret"])
    if write_config:
        write_private(write_config, kafka.properties(conf))
    if wait:
        try:
            with spinner(f"Waiting for the brokers to accept key {created['key']}…"):
                kafka.wait_until_accepted(conf, timeout)
        except KeyboardInterrupt:
            note(f"Stopped waiting; key {created['key']} is stored and will work shortly.")
            raise typer.Exit(INTERRUPTED) from None


def _show_created(
    session: Session, created: dict[str, Any], output: Format, write_config: Path | None
) -> None:
    if output is Format.table:
        emit(created, output, columns=CREATED)
        where = f"{session.config.path}" + (f" and {write_config}" if write_config else "")
        note(f"The secret is stored in {where} (mode 0600); it is shown only now, and only with -o json.")
    else:
        emit(created, output)


@app.command()
def create(
    description: Annotated[str, typer.Option("--description", "-d", help="What the key is for.")] = "",
    scope_prefix: Annotated[
        str | None,
        typer.Option("--scope-prefix", help="Restrict the key to topics (and groups) with this prefix."),
    ] = None,
    access: Annotated[
        str | None, typer.Option("--access", help="With --scope-prefix: produce, consume or full.")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="The key stops working after this long (30d, 12h, …).")
    ] = None,
    service_account: Annotated[
        str | None,
        typer.Option("--service-account", help="Owner: this service account (sa-…) instead of you."),
    ] = None,
    write_config: WriteConfigOpt = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create an API key; it becomes the cluster's key for produce, consume and config client."""
    if bool(scope_prefix) != bool(access):
        raise UsageError(
            "--scope-prefix and --access go together (e.g. --scope-prefix orders. --access produce)"
        )
    if access and access not in ("produce", "consume", "full"):
        raise UsageError(f"--access {access!r}: choose produce, consume or full")
    body: dict[str, Any] = {"description": description}
    if expires_in:
        seconds = parse_duration(expires_in, "--expires-in")
        body["expires_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()
    if scope_prefix:
        body["scope"] = {"topic_prefix": scope_prefix, "access": access}
    if service_account:
        body["owner"] = {"type": "service_account", "id": service_account}
    _issue_key(cluster, None, body, write_config=write_config, wait=wait, timeout=timeout, output=output)


@app.command("list")
def list_(cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """The cluster's API keys (never their secrets)."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    keys = session.api.list_all(_path(cluster_id), what=f"cluster {cluster_id}")
    emit(keys, output, columns=COLUMNS, empty="No API keys.")


@app.command()
def describe(key: KeyArg, cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """One API key (never its secret)."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    emit(session.api.get(_path(cluster_id, key), what=f"API key {key} on cluster {cluster_id}"), output)


@app.command()
def revoke(
    key: KeyArg, yes: YesOpt = False, cluster: ClusterOpt = None, output: OutputOpt = Format.table
) -> None:
    """Revoke a key: clients using it are refused within seconds."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    confirm(yes, f"Revoke API key {key} on cluster {cluster_id}?")
    session.api.delete(_path(cluster_id, key), what=f"API key {key} on cluster {cluster_id}")
    stored = session.config.stored_key(cluster_id)
    if stored and stored[0] == key:
        session.config.api_keys.pop(cluster_id, None)
        session.config.save()
    done(output, f"Revoked API key {key}.", {"cluster": cluster_id, "key": key, "revoked": True})


@app.command()
def rotate(
    key: KeyArg,
    overlap: Annotated[
        str, typer.Option("--overlap", help="How long the old key keeps working beside the new one.")
    ] = "1h",
    write_config: WriteConfigOpt = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Issue a new key with the same owner and access; the old one expires after --overlap."""
    seconds = 0 if overlap.strip() in ("0", "0s") else parse_duration(overlap, "--overlap")
    body = {"overlap_seconds": seconds}
    _issue_key(cluster, key, body, write_config=write_config, wait=wait, timeout=timeout, output=output)
