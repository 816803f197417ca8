"""kastle usage and kastle costs: the metered usage rows and what they cost."""

from __future__ import annotations

from typing import Annotated

import typer

from kastle.output import Format, OutputOpt, emit
from kastle.session import Session

USAGE = [
    ("cluster", "cluster"),
    ("api key", "api_key"),
    ("topic", "topic"),
    ("when", lambda r: r.get("hour") or r.get("day")),
    ("bytes in", "bytes_in"),
    ("bytes out", "bytes_out"),
    ("records in", "records_in"),
    ("records out", "records_out"),
]
COSTS = [
    ("cluster", lambda c: c.get("cluster_name") or c.get("cluster")),
    ("api key", "api_key"),
    ("topic", "topic"),
    ("day", "day"),
    ("from", "start_date"),
    ("to (excl.)", "end_date"),
    ("amount", lambda c: f"{c['amount']} {c['currency']}"),
]


def register(app: typer.Typer) -> None:
    app.command()(usage)
    app.command()(costs)


def usage(
    cluster: Annotated[
        str | None, typer.Option("--cluster", "-c", help="Only this cluster (default: all of them).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Inclusive, ISO 8601 (default: 24 hours ago).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Exclusive, ISO 8601 (default: now).")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="hour or day.")] = "hour",
    output: OutputOpt = Format.table,
) -> None:
    """Metered usage per cluster, API key and topic, per hour or day."""
    params = {
        k: v for k, v in {"cluster": cluster, "start": start, "end": end, "group_by": group_by}.items() if v
    }
    what = f"cluster {cluster}" if cluster else None
    emit(
        Session().api.list_all("usage", what=what, params=params),
        output,
        columns=USAGE,
        empty="No usage yet.",
    )


def costs(
    start_date: Annotated[
        str | None, typer.Option("--start-date", help="Inclusive, YYYY-MM-DD (default: this month's first).")
    ] = None,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="Exclusive, YYYY-MM-DD (default: tomorrow).")
    ] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="cluster, api_key, topic or day.")] = "cluster",
    output: OutputOpt = Format.table,
) -> None:
    """Costs, with a line per billing dimension, grouped by cluster, API key, topic or day."""
    params = {
        k: v for k, v in {"start_date": start_date, "end_date": end_date, "group_by": group_by}.items() if v
    }
    emit(Session().api.list_all("billing/costs", params=params), output, columns=COSTS, empty="No costs yet.")
