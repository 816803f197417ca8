"""What every command needs: the config, a logged-in REST client, and the cluster it acts on."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kastle.api import Api, seg
from kastle.config import Config
from kastle.errors import UsageError


def complete_cluster(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of cluster ids (with their names) from the REST API; quiet on any error."""
    try:
        clusters = Session().api.list_all("clusters")
    except Exception:  # completion must never print an error into the user's shell
        return []
    return [(c["id"], c["name"]) for c in clusters if c["id"].startswith(incomplete)]


ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        "-c",
        envvar="KASTLE_CLUSTER",
        help="The cluster's id (lkc-…); default: the current context (`kastle context set ID`).",
        show_default=False,
        autocompletion=complete_cluster,
    ),
]

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class Session:
    def __init__(self) -> None:
        self.config = Config.load()
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            url, token = self.config.require_login()
            self._api = Api(url, token)
        return self._api

    def cluster_id(self, explicit: str | None) -> str:
        cluster = explicit or self.config.current_cluster
        if not cluster:
            raise UsageError("no cluster given: pass --cluster ID, or run `kastle context set ID`")
        return cluster

    def cluster(self, cluster_id: str) -> dict[str, Any]:
        return self.api.get(f"clusters/{seg(cluster_id)}", what=f"cluster {cluster_id}")


def confirm(yes: bool, question: str) -> None:
    """Ask before destroying something; without a terminal, `--yes` is required."""
    if yes:
        return
    import sys

    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: pass --yes to confirm (no terminal to ask on)")
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(1)


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """`k=v` options (`--config retention.ms=1000`) into a dict, naming the bad one."""
    out: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {value!r} is not key=value (e.g. {flag} retention.ms=86400000)")
        out[key.strip()] = val
    return out
