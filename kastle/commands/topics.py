"""kastle topic create|list|describe|update|delete (REST) and produce|consume (Kafka)."""

from __future__ import annotations

from typing import Annotated

import typer

from kastle.api import seg
from kastle.errors import UsageError
from kastle.output import Format, OutputOpt, done, emit
from kastle.session import ClusterOpt, Session, YesOpt, confirm, parse_pairs

from . import data

app = typer.Typer(
    help="Topics: create, list, describe, update, delete, produce and consume.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(metavar="TOPIC", help="The topic's name.")]
ConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--config", help="A topic config as key=value (repeatable), e.g. retention.ms=86400000."),
]

SUMMARY = [("name", "name"), ("partitions", "partitions_count")]
DETAIL = [
    ("name", "name"),
    ("partitions", "partitions_count"),
    ("records", "records"),
    ("size bytes", "size_bytes"),
    (
        "configs (non-default)",
        lambda t: {c["name"]: c["value"] for c in t.get("configs", []) if not c.get("is_default")} or "-",
    ),
]
PARTITIONS = [
    ("partition", "partition"),
    ("leader", "leader"),
    ("replicas", "replicas"),
    ("earliest", "earliest_offset"),
    ("latest", "latest_offset"),
    ("bytes", "size_bytes"),
]


def _path(cluster_id: str, name: str | None = None) -> str:
    base = f"clusters/{seg(cluster_id)}/topics"
    return f"{base}/{seg(name)}" if name is not None else base


def _show(topic: dict, output: Format) -> None:
    emit(topic, output, columns=DETAIL)
    if output is Format.table:
        emit(topic.get("partitions", []), output, columns=PARTITIONS)


@app.command()
def create(
    name: NameArg,
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=1, help="Partition count.")] = 1,
    config: ConfigOpt = None,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create a topic."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    body = {"name": name, "partitions": partitions, "configs": parse_pairs(config, "--config")}
    _show(session.api.post(_path(cluster_id), body, what=f"cluster {cluster_id}"), output)


@app.command("list")
def list_(cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """The cluster's topics."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    topics = session.api.list_all(_path(cluster_id), what=f"cluster {cluster_id}")
    emit(topics, output, columns=SUMMARY, empty="No topics.")


@app.command()
def describe(name: NameArg, cluster: ClusterOpt = None, output: OutputOpt = Format.table) -> None:
    """A topic's partitions, offsets, size and configs."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    _show(session.api.get(_path(cluster_id, name), what=f"topic {name} on cluster {cluster_id}"), output)


@app.command()
def update(
    name: NameArg,
    partitions: Annotated[
        int | None, typer.Option("--partitions", "-p", min=1, help="The new partition count (only grows).")
    ] = None,
    config: ConfigOpt = None,
    reset_config: Annotated[
        list[str] | None,
        typer.Option("--reset-config", help="A config to reset to the cluster default (repeatable)."),
    ] = None,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Add partitions or change configs."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    body: dict = {}
    if partitions is not None:
        body["partitions"] = partitions
    configs: dict[str, str | None] = dict(parse_pairs(config, "--config"))
    configs.update({key: None for key in reset_config or []})
    if configs:
        body["configs"] = configs
    if not body:
        raise UsageError("nothing to change: give --partitions, --config key=value or --reset-config key")
    _show(
        session.api.patch(_path(cluster_id, name), body, what=f"topic {name} on cluster {cluster_id}"), output
    )


@app.command()
def delete(
    name: NameArg, yes: YesOpt = False, cluster: ClusterOpt = None, output: OutputOpt = Format.table
) -> None:
    """Delete a topic and its data."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    confirm(yes, f"Delete topic {name} on cluster {cluster_id} and its data?")
    session.api.delete(_path(cluster_id, name), what=f"topic {name} on cluster {cluster_id}")
    done(output, f"Deleted topic {name}.", {"cluster": cluster_id, "topic": name, "deleted": True})


app.command()(data.produce)
app.command()(data.consume)
