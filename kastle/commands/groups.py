"""kastle consumer-group list|describe|reset-offsets|delete."""

from __future__ import annotations

from typing import Annotated

import typer

from kastle.api import seg
from kastle.errors import UsageError
from kastle.output import Format, OutputOpt, done, emit, note
from kastle.session import ClusterOpt, Session, YesOpt, confirm

app = typer.Typer(help="Consumer groups: list, describe, reset offsets, delete.", no_args_is_help=True)

GroupArg = Annotated[str, typer.Argument(metavar="GROUP", help="The consumer group's id.")]

SUMMARY = [("group", "group_id"), ("state", "state"), ("type", "type"), ("simple", "simple")]
DETAIL = [
    ("group", "group_id"),
    ("state", "state"),
    ("members", lambda g: len(g.get("members") or [])),
    ("assignor", "partition_assignor"),
    ("coordinator", lambda g: g["coordinator"]["id"] if g.get("coordinator") else None),
    ("total lag", "total_lag"),
]
OFFSETS = [
    ("topic", "topic"),
    ("partition", "partition"),
    ("committed", "committed_offset"),
    ("latest", "latest_offset"),
    ("lag", "lag"),
    ("member", "member_id"),
]
RESET = [
    ("topic", "topic"),
    ("partition", "partition"),
    ("previous", "previous_offset"),
    ("new", "new_offset"),
]


def _path(cluster_id: str, group: str | None = None) -> str:
    base = f"clusters/{seg(cluster_id)}/consumer-groups"
    return f"{base}/{seg(group)}" if group is not None else base


@app.command("list")
def list_(cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """The cluster's consumer groups."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    groups = session.api.list_all(_path(cluster_id), what=f"cluster {cluster_id}")
    emit(groups, output, columns=SUMMARY, empty="No consumer groups.")


@app.command()
def describe(group: GroupArg, cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """A group's state, members, committed offsets and lag."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    body = session.api.get(_path(cluster_id, group), what=f"consumer group {group} on cluster {cluster_id}")
    emit(body, output, columns=DETAIL)
    if output is Format.table:
        emit(body.get("offsets") or [], output, columns=OFFSETS, empty="No committed offsets.")


@app.command("reset-offsets")
def reset_offsets(
    group: GroupArg,
    to: Annotated[str, typer.Option("--to", help="earliest, latest, timestamp or offset.")],
    value: Annotated[
        str | None, typer.Option("--value", help="For --to timestamp (ms or ISO 8601) or --to offset.")
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Only this topic.")] = None,
    partition: Annotated[
        list[int] | None,
        typer.Option("--partition", min=0, help="Only this partition of --topic (repeatable)."),
    ] = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="Apply the reset (without it: a dry run).")
    ] = False,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Show (dry run) or, with --execute, set a group's committed offsets. The group must be empty."""
    if to not in ("earliest", "latest", "timestamp", "offset"):
        raise UsageError(f"--to {to!r}: choose earliest, latest, timestamp or offset")
    if to in ("timestamp", "offset") and not value:
        raise UsageError(f"--to {to} needs --value")
    if partition and not topic:
        raise UsageError("--partition needs --topic")
    session = Session()
    cluster_id = session.cluster_id(cluster)
    body = {"to": to, "value": value, "topic": topic, "partitions": partition or None, "dry_run": not execute}
    result = session.api.post(
        f"{_path(cluster_id, group)}/reset-offsets",
        body,
        what=f"consumer group {group} on cluster {cluster_id}",
    )
    emit(result["offsets"] if output is Format.table else result, output, columns=RESET, empty="No offsets.")
    if output is Format.table:
        note("Dry run: nothing changed; add --execute to apply." if result["dry_run"] else "Offsets reset.")


@app.command()
def delete(
    group: GroupArg, yes: YesOpt = False, cluster: ClusterOpt = None, output: OutputOpt = Format.table
) -> None:
    """Delete a group and its committed offsets (it must have no members)."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    confirm(yes, f"Delete consumer group {group} on cluster {cluster_id}?")
    session.api.delete(_path(cluster_id, group), what=f"consumer group {group} on cluster {cluster_id}")
    done(
        output,
        f"Deleted consumer group {group}.",
        {"cluster": cluster_id, "group_id": group, "deleted": True},
    )
