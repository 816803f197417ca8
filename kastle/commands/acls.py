"""kastle acl list|create|delete: a cluster's ACL bindings (Kafka's model)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kastle.api import seg
from kastle.errors import UsageError
from kastle.output import Format, OutputOpt, done, emit
from kastle.session import ClusterOpt, Session, YesOpt, confirm

app = typer.Typer(
    help="ACLs: who may do what on which topic, group or transactional id.", no_args_is_help=True
)

COLUMNS = [
    ("id", "id"),
    ("principal", "principal"),
    ("permission", "permission"),
    ("operation", "operation"),
    ("resource", lambda a: f"{a['resource_type']}:{a['resource_name']}"),
    ("pattern", "pattern_type"),
    ("host", "host"),
    ("managed", "managed"),
]

ResourceTypeOpt = Annotated[
    str | None, typer.Option("--resource-type", help="TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID.")
]
ResourceNameOpt = Annotated[
    str | None, typer.Option("--resource-name", help="A name, a prefix (PREFIXED), * or kafka-cluster.")
]
PatternOpt = Annotated[
    str | None, typer.Option("--pattern-type", help="LITERAL or PREFIXED (MATCH in filters).")
]
PrincipalOpt = Annotated[
    str | None,
    typer.Option("--principal", help="An API key (KEY or User:KEY), a service account (sa-…) or User:*."),
]
OperationOpt = Annotated[
    str | None, typer.Option("--operation", help="READ, WRITE, CREATE, DESCRIBE, ALL, …")
]
PermissionOpt = Annotated[str | None, typer.Option("--permission", help="ALLOW or DENY.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="A client address, or * (any).")]


FILTERS = ("resource_type", "resource_name", "pattern_type", "principal", "operation", "permission", "host")


def _path(cluster_id: str) -> str:
    return f"clusters/{seg(cluster_id)}/acls"


def _fields(**values: str | None) -> dict[str, Any]:
    upper = {"resource_type", "pattern_type", "operation", "permission"}
    return {k: (v.upper() if k in upper else v) for k, v in values.items() if v is not None}


def _filters(*values: str | None) -> dict[str, Any]:
    """The filter options of list and delete, in FILTERS order, as REST query parameters."""
    return _fields(**dict(zip(FILTERS, values, strict=True)))


@app.command("list")
def list_(
    resource_type: ResourceTypeOpt = None,
    resource_name: ResourceNameOpt = None,
    pattern_type: PatternOpt = None,
    principal: PrincipalOpt = None,
    operation: OperationOpt = None,
    permission: PermissionOpt = None,
    host: HostOpt = None,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """The cluster's ACLs, optionally filtered."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    params = _filters(resource_type, resource_name, pattern_type, principal, operation, permission, host)
    rows = session.api.list_all(_path(cluster_id), what=f"cluster {cluster_id}", params=params)
    emit(rows, output, columns=COLUMNS, empty="No ACLs.")


@app.command()
def create(
    principal: Annotated[str, typer.Option("--principal", help=PrincipalOpt.__metadata__[0].help)],
    operation: Annotated[str, typer.Option("--operation", help="READ, WRITE, CREATE, DESCRIBE, ALL, …")],
    resource_type: Annotated[
        str, typer.Option("--resource-type", help="TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID.")
    ],
    resource_name: Annotated[
        str, typer.Option("--resource-name", help="A name, a prefix (PREFIXED), * or kafka-cluster.")
    ],
    pattern_type: Annotated[str, typer.Option("--pattern-type", help="LITERAL or PREFIXED.")] = "LITERAL",
    permission: Annotated[str, typer.Option("--permission", help="ALLOW or DENY.")] = "ALLOW",
    host: Annotated[str, typer.Option("--host", help="A client address, or * (any).")] = "*",
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create an ACL (for a service account: on each of its keys, and on keys issued later)."""
    session = Session()
    cluster_id = session.cluster_id(cluster)
    body = _fields(
        principal=principal, operation=operation, resource_type=resource_type, resource_name=resource_name,
        pattern_type=pattern_type, permission=permission, host=host,
    )  # fmt: skip
    emit(session.api.post(_path(cluster_id), body, what=f"cluster {cluster_id}"), output, columns=COLUMNS)


@app.command()
def delete(
    acl_id: Annotated[
        str | None, typer.Argument(metavar="[ACL_ID]", help="One binding's id (acl-…).")
    ] = None,
    resource_type: ResourceTypeOpt = None,
    resource_name: ResourceNameOpt = None,
    pattern_type: PatternOpt = None,
    principal: PrincipalOpt = None,
    operation: OperationOpt = None,
    permission: PermissionOpt = None,
    host: HostOpt = None,
    yes: YesOpt = False,
    cluster: ClusterOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Delete one ACL by id, or every ACL matching the filter options."""
    filters = _filters(resource_type, resource_name, pattern_type, principal, operation, permission, host)
    if bool(acl_id) == bool(filters):
        raise UsageError("give an ACL id, or filter options (--principal, --resource-name, …), but not both")
    session = Session()
    cluster_id = session.cluster_id(cluster)
    if acl_id:
        confirm(yes, f"Delete ACL {acl_id} on cluster {cluster_id}?")
        session.api.delete(f"{_path(cluster_id)}/{seg(acl_id)}", what=f"ACL {acl_id} on cluster {cluster_id}")
        done(output, f"Deleted ACL {acl_id}.", {"cluster": cluster_id, "id": acl_id, "deleted": True})
        return
    confirm(yes, f"Delete every ACL on cluster {cluster_id} matching {filters}?")
    result = session.api.delete(_path(cluster_id), what=f"cluster {cluster_id}", params=filters)
    emit(
        result["deleted"] if output is Format.table else result,
        output,
        columns=COLUMNS,
        empty="No ACL matched.",
    )
