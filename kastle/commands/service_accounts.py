"""kastle service-account list|create|describe|update|delete: organization-wide key owners."""

from __future__ import annotations

from typing import Annotated

import typer

from kastle.api import seg
from kastle.errors import UsageError
from kastle.output import Format, OutputOpt, done, emit
from kastle.session import Session, YesOpt, confirm

app = typer.Typer(help="Service accounts: owners of API keys that are not people.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The service account's id (sa-…).")]
COLUMNS = [("id", "id"), ("name", "name"), ("description", "description"), ("api keys", "api_keys")]


def _what(sa_id: str) -> str:
    return f"service account {sa_id}"


@app.command("list")
def list_(output: OutputOpt = Format.table) -> None:
    """Your organization's service accounts."""
    emit(Session().api.list_all("service-accounts"), output, columns=COLUMNS, empty="No service accounts.")


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Its name.")],
    description: Annotated[str, typer.Option("--description", "-d", help="What it is for.")] = "",
    output: OutputOpt = Format.table,
) -> None:
    """Create a service account (then `kastle api-key create --service-account ID`)."""
    body = {"name": name, "description": description}
    emit(Session().api.post("service-accounts", body), output, columns=COLUMNS)


@app.command()
def describe(sa_id: IdArg, output: OutputOpt = Format.table) -> None:
    """One service account and its live API keys."""
    emit(Session().api.get(f"service-accounts/{seg(sa_id)}", what=_what(sa_id)), output, columns=COLUMNS)


@app.command()
def update(
    sa_id: IdArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d", help="A new description.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Rename a service account or change its description."""
    body = {k: v for k, v in {"name": name, "description": description}.items() if v is not None}
    if not body:
        raise UsageError("nothing to change: give --name or --description")
    emit(
        Session().api.patch(f"service-accounts/{seg(sa_id)}", body, what=_what(sa_id)),
        output,
        columns=COLUMNS,
    )


@app.command()
def delete(sa_id: IdArg, yes: YesOpt = False, output: OutputOpt = Format.table) -> None:
    """Delete a service account (its API keys are revoked)."""
    session = Session()
    confirm(yes, f"Delete service account {sa_id} and revoke its API keys?")
    session.api.delete(f"service-accounts/{seg(sa_id)}", what=_what(sa_id))
    done(output, f"Deleted service account {sa_id}.", {"id": sa_id, "deleted": True})
