"""kastle cluster create|list|describe|delete|restart|grow|plans."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from kastle.api import Api, seg
from kastle.errors import INTERRUPTED, CliError, UsageError
from kastle.output import Format, OutputOpt, emit, note, spinner
from kastle.session import ClusterOpt, Session, YesOpt, complete_cluster, confirm

app = typer.Typer(help="Create, list, describe, delete, restart and grow clusters.", no_args_is_help=True)

COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("plan", "plan"),
    ("status", "status"),
    ("bootstrap", "bootstrap_servers"),
    ("security", "security_protocol"),
]
DETAIL = [
    *COLUMNS,
    ("reason", "status_reason"),
    ("degraded", "degraded"),
    ("degraded because", "degraded_reason"),
    ("sasl mechanisms", "sasl_mechanisms"),
    ("created", "created_at"),
]

IdArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[ID]", help="The cluster's id (default: current).", autocompletion=complete_cluster
    ),
]
WaitTimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds --wait waits before giving up.")
]


def _poll(
    session: Session,
    cluster_id: str,
    timeout: float,
    verb: str,
    check: Callable[[dict[str, Any]], tuple[bool, str]],
) -> dict[str, Any]:
    """Poll the cluster (spinner on stderr) until `check(cluster)` says it is finished. `check`
    returns (finished, what it is now, for the spinner and a timeout) and raises CliError when it
    failed."""
    deadline = time.monotonic() + timeout
    try:
        with spinner(f"{verb} cluster {cluster_id}…") as update:
            while True:
                cluster = session.cluster(cluster_id)
                finished, now = check(cluster)
                if finished:
                    return cluster
                if time.monotonic() >= deadline:
                    raise CliError(
                        f"cluster {cluster_id} is still {now} after {timeout:.0f}s; "
                        f"`kastle cluster describe {cluster_id} -o json` shows its progress"
                    )
                update(f"{verb} cluster {cluster_id}… {now}")
                time.sleep(0.5)
    except KeyboardInterrupt:
        note(f"Stopped waiting; cluster {cluster_id} carries on (`kastle cluster describe {cluster_id}`).")
        raise typer.Exit(INTERRUPTED) from None


def wait_for(
    session: Session, cluster_id: str, targets: set[str], timeout: float, verb: str
) -> dict[str, Any]:
    """Poll the cluster until its status is one of `targets`; FAILED fails."""

    def check(cluster: dict[str, Any]) -> tuple[bool, str]:
        status = cluster["status"]
        if status == "FAILED" and status not in targets:
            raise CliError(
                f"cluster {cluster_id} FAILED: {cluster.get('status_reason') or 'no reason given'} "
                f"(`kastle cluster delete {cluster_id}`, or retry it in the portal)"
            )
        return status in targets, status

    return _poll(session, cluster_id, timeout, verb, check)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The cluster's name.")],
    plan: Annotated[
        str, typer.Option("--plan", "-p", help="basic, standard or dedicated (`kastle cluster plans`).")
    ],
    security_protocol: Annotated[
        str,
        typer.Option(
            "--security-protocol", help="SASL_SSL (TLS, the default) or SASL_PLAINTEXT (unencrypted)."
        ),
    ] = "SASL_SSL",
    wait: Annotated[bool, typer.Option("--wait", help="Wait (with a spinner) until it is RUNNING.")] = False,
    timeout: WaitTimeoutOpt = 300,
    output: OutputOpt = Format.table,
) -> None:
    """Create a cluster (it starts PROVISIONING); it becomes the current cluster if none is set."""
    session = Session()
    body = {"name": name, "plan": plan, "security_protocol": security_protocol}
    cluster = session.api.post("clusters", body)
    if not session.config.current_cluster:
        session.config.current_cluster = cluster["id"]
        session.config.save()
        note(f"Current cluster: {cluster['id']} (`kastle context set ID` to change).")
    if wait:
        cluster = wait_for(session, cluster["id"], {"RUNNING"}, timeout, "Provisioning")
    emit(cluster, output, columns=DETAIL)


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="Only clusters in this status (e.g. RUNNING, DELETED).")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Your organization's clusters (deleted ones only with --status DELETED)."""
    session = Session()
    params = {"status": status.upper()} if status else None
    emit(session.api.list_all("clusters", params=params), output, columns=COLUMNS, empty="No clusters.")


@app.command()
def describe(cluster_id: IdArg = None, cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """A cluster's status, bootstrap servers and security settings."""
    session = Session()
    emit(session.cluster(session.cluster_id(cluster_id or cluster)), output, columns=DETAIL)


@app.command()
def delete(
    cluster_id: Annotated[
        str, typer.Argument(metavar="ID", help="The cluster's id.", autocompletion=complete_cluster)
    ],
    yes: YesOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is DELETED.")] = False,
    timeout: WaitTimeoutOpt = 300,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a cluster: its brokers stop, its data and keys go. There is no undo."""
    session = Session()
    cluster = session.cluster(cluster_id)
    confirm(yes, f"Delete cluster {cluster['id']} ({cluster['name']}) and all its data?")
    cluster = session.api.delete(f"clusters/{seg(cluster_id)}", what=f"cluster {cluster_id}")
    if session.config.current_cluster == cluster_id:
        session.config.current_cluster = None
    session.config.api_keys.pop(cluster_id, None)
    session.config.save()
    if wait:
        cluster = wait_for(session, cluster_id, {"DELETED"}, timeout, "Deleting")
    emit(cluster, output, columns=DETAIL)


def wait_for_progress(
    session: Session, cluster_id: str, field: str, running: set[str], timeout: float, verb: str
) -> dict[str, Any]:
    """Poll the cluster until its `field` progress (restart, scale) is no longer in `running`."""

    def check(cluster: dict[str, Any]) -> tuple[bool, str]:
        progress = cluster.get(field) or {}
        if progress.get("state") == "failed":
            raise CliError(f"cluster {cluster_id}: {verb.lower()} failed: {progress.get('error')}")
        return progress.get("state") not in running, f"{verb.lower()} ({progress.get('state')})"

    return _poll(session, cluster_id, timeout, verb, check)


@app.command()
def restart(
    cluster_id: IdArg = None,
    cluster: ClusterOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every broker restarted.")] = False,
    timeout: WaitTimeoutOpt = 600,
    output: OutputOpt = Format.table,
) -> None:
    """Restart the cluster's brokers one at a time, each back in full ISR before the next."""
    session = Session()
    cid = session.cluster_id(cluster_id or cluster)
    body = session.api.post(f"clusters/{seg(cid)}/restart", what=f"cluster {cid}")
    if wait:
        body = wait_for_progress(session, cid, "restart", {"running"}, timeout, "Restarting")
    emit(body, output, columns=DETAIL)


@app.command()
def grow(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="The broker count to grow to.")],
    cluster_id: IdArg = None,
    cluster: ClusterOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the replicas are balanced.")] = False,
    timeout: WaitTimeoutOpt = 1800,
    output: OutputOpt = Format.table,
) -> None:
    """Grow a Dedicated cluster to more brokers; replicas then move over to balance."""
    session = Session()
    cid = session.cluster_id(cluster_id or cluster)
    body = session.api.post(f"clusters/{seg(cid)}/brokers", {"count": count}, what=f"cluster {cid}")
    if wait:
        body = wait_for_progress(session, cid, "scale", {"starting", "reassigning"}, timeout, "Growing")
    emit(body, output, columns=DETAIL)


@app.command()
def plans(output: OutputOpt = Format.table) -> None:
    """The plans a cluster can have, with their limits and prices (no login needed)."""
    config = Session().config
    site = config.site_url
    if not site:
        raise UsageError("which Kastle? run `kastle login --url URL` or set KASTLE_URL")
    api = Api(site, config.effective_token)
    columns = [
        ("name", "name"),
        ("brokers", "brokers"),
        ("max partitions", "max_partitions"),
        ("in MB/s", "ingress_mbps"),
        ("out MB/s", "egress_mbps"),
        ("USD/hour", lambda p: (p.get("prices") or {}).get("base_per_hour")),
        ("description", "description"),
    ]
    emit(api.list_all("plans"), output, columns=columns)
