"""ACL input: what a REST call or portal form gives, checked into bindings' fields (400 naming the field)."""

from __future__ import annotations

import re
from typing import Any

from clusters.models import Cluster
from controlplane.errors import ValidationFailed
from iam import selectors as iam_selectors

from .bindings import CLUSTER_NAME, OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES, VALID_OPERATIONS

INVALID = "The ACL is invalid."
FILTER_INVALID = "The ACL filter is invalid."
KEY_RE = re.compile(r"^[A-Z0-9]{16}$")
SA_RE = re.compile(r"^sa-[a-z0-9]{1,13}$")
TOPIC_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")


def _choice(value: Any, choices, field: str, *, required: bool, message: str, extra=()) -> str | None:
    if value is None or value == "":
        if required:
            raise ValidationFailed(message, details={field: ["This field is required."]})
        return None
    if not isinstance(value, str) or value.upper() not in (*choices, *extra):
        allowed = ", ".join([*choices, *extra])
        raise ValidationFailed(message, details={field: [f"Expected one of: {allowed}."]})
    return value.upper()


def _name(value: Any, field: str, *, required: bool, message: str) -> str | None:
    if value is None:
        if required:
            raise ValidationFailed(message, details={field: ["This field is required."]})
        return None
    if not isinstance(value, str) or not value or len(value) > 255 or any(ord(c) < 32 for c in value):
        raise ValidationFailed(message, details={field: ["Give a non-empty name of at most 255 characters."]})
    return value


def _host(value: Any, *, message: str, default: str | None) -> str | None:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > 255 or " " in value:
        raise ValidationFailed(message, details={"host": ["Give an IP address or * for any host."]})
    return value


def resolve_principal(cluster: Cluster, value: Any, *, message: str = INVALID):
    """`KEY`, `User:KEY` (a live key of this cluster), `sa-…` (a service account of the organization)
    or `User:*` (every key). Returns (kind, object) with kind in key/service_account/wildcard."""
    if not isinstance(value, str) or not value:
        raise ValidationFailed(message, details={"principal": ["This field is required."]})
    if value == "User:*":
        return "wildcard", value
    if value.startswith("ServiceAccount:"):
        value = value.removeprefix("ServiceAccount:")
    if SA_RE.match(value):
        account = iam_selectors.service_account_get(organization=cluster.organization_id, public_id=value)
        if account is None:
            raise ValidationFailed(message, details={"principal": [f"No service account {value} here."]})
        return "service_account", account
    key = value.removeprefix("User:")
    if KEY_RE.match(key):
        api_key = iam_selectors.api_key_list_live(cluster=cluster).filter(key=key).first()
        if api_key is None:
            raise ValidationFailed(
                message, details={"principal": [f"No live API key {key} on cluster {cluster.public_id}."]}
            )
        return "key", api_key
    raise ValidationFailed(
        message,
        details={
            "principal": [
                "Give an API key of this cluster (KEY or User:KEY), a service account (sa-…) or User:*."
            ]
        },
    )


def validate_acl(cluster: Cluster, data: dict[str, Any]) -> tuple[str, Any, dict[str, str]]:
    """(principal kind, principal object, binding fields without the principal); 400 naming the field."""
    resource_type = _choice(
        data.get("resource_type"), RESOURCE_TYPES, "resource_type", required=True, message=INVALID
    )
    pattern_type = _choice(
        data.get("pattern_type") or "LITERAL", PATTERN_TYPES, "pattern_type", required=True, message=INVALID
    )
    name = data.get("resource_name")
    if resource_type == "CLUSTER":
        name = name or CLUSTER_NAME
        if name != CLUSTER_NAME or pattern_type != "LITERAL":
            raise ValidationFailed(
                INVALID, details={"resource_name": [f"The cluster resource is the literal {CLUSTER_NAME!r}."]}
            )
    name = _name(name, "resource_name", required=True, message=INVALID)
    if resource_type == "TOPIC" and name != "*" and not TOPIC_NAME_RE.match(name):
        raise ValidationFailed(
            INVALID, details={"resource_name": ["Use only ASCII letters, digits, '.', '_' and '-' (or *)."]}
        )
    if pattern_type == "PREFIXED" and name == "*":
        raise ValidationFailed(
            INVALID, details={"resource_name": ["'*' is a LITERAL wildcard, not a prefix."]}
        )
    operation = _choice(data.get("operation"), OPERATIONS, "operation", required=True, message=INVALID)
    if operation not in VALID_OPERATIONS[resource_type]:
        allowed = ", ".join(sorted(VALID_OPERATIONS[resource_type]))
        raise ValidationFailed(
            INVALID,
            details={"operation": [f"{operation} does not apply to {resource_type}; use one of {allowed}."]},
        )
    permission = _choice(
        data.get("permission") or "ALLOW", PERMISSIONS, "permission", required=True, message=INVALID
    )
    host = _host(data.get("host"), message=INVALID, default="*")
    kind, principal = resolve_principal(cluster, data.get("principal"))
    fields = {
        "resource_type": resource_type,
        "resource_name": name,
        "pattern_type": pattern_type,
        "host": host,
        "operation": operation,
        "permission": permission,
    }
    return kind, principal, fields


def validate_filter(cluster: Cluster, data: dict[str, Any]) -> tuple[dict[str, Any], set[str] | None]:
    """(make_filter kwargs without the principal, the principals to keep or None for all)."""
    msg = FILTER_INVALID
    fields = {
        "resource_type": _choice(
            data.get("resource_type"), RESOURCE_TYPES, "resource_type", required=False, message=msg
        ),
        "resource_name": _name(
            data.get("resource_name") or None, "resource_name", required=False, message=msg
        ),
        "pattern_type": _choice(
            data.get("pattern_type"),
            PATTERN_TYPES,
            "pattern_type",
            required=False,
            message=msg,
            extra=("MATCH",),
        ),
        "operation": _choice(data.get("operation"), OPERATIONS, "operation", required=False, message=msg),
        "permission": _choice(data.get("permission"), PERMISSIONS, "permission", required=False, message=msg),
        "host": _host(data.get("host"), message=msg, default=None),
    }
    principals = None
    if data.get("principal"):
        kind, obj = resolve_principal(cluster, data["principal"], message=msg)
        if kind == "key":
            principals = {obj.principal}
        elif kind == "wildcard":
            principals = {obj}
        else:
            keys = iam_selectors.api_key_list_live(cluster=cluster, service_account=obj)
            principals = {k.principal for k in keys}
    return fields, principals
