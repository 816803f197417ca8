"""ACLs on a cluster's brokers, through the Kafka protocol (CreateAcls/DescribeAcls/DeleteAcls).

The brokers hold every ACL, durably, as Kafka does: what the REST API lists is what a tenant's
AdminClient `describe_acls` returns. PostgreSQL holds only the *desired* part Kastle owns:

- a key's scope (`ApiKey.scope_*`, compiled by `bindings.compile_scope`; no scope = full access);
- a service account's bindings (`ServiceAccountBinding`), applied to `User:<key>` of each of the
  account's live keys on the cluster.

`cluster_sync` converges a cluster to that: it creates what is missing for live keys and removes
the ACLs of revoked and expired keys. It runs after a key is issued or revoked, when a cluster
becomes RUNNING, and periodically (`acls.reconcile`). ACLs anyone adds for other principals
(e.g. `User:*`) are the tenant's own and left alone.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import SYSTEM, Actor, audit_record
from clusters.models import INTERNAL_USERNAME, Cluster, ClusterStatus
from controlplane.errors import Conflict, ServiceError, ValidationFailed
from iam.models import ApiKey, ServiceAccount
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error, result

from .bindings import (
    CLUSTER_NAME,
    OPERATIONS,
    PATTERN_TYPES,
    PERMISSIONS,
    RESOURCE_TYPES,
    VALID_OPERATIONS,
    Binding,
    compile_scope,
    from_kafka,
    make_filter,
)
from .models import ServiceAccountBinding

logger = logging.getLogger(__name__)
TIMEOUT = kafka_admin.REQUEST_TIMEOUT_S
#: A key's create/revoke converges its cluster inline for at most this long, then in a task.
INLINE_TIMEOUT = 3.0
INVALID = "The ACL is invalid."
FILTER_INVALID = "The ACL filter is invalid."
KEY_RE = re.compile(r"^[A-Z0-9]{16}$")
SA_RE = re.compile(r"^sa-[a-z0-9]{1,13}$")
TOPIC_NAME_RE = re.compile(r"^[a-zA-Z0-9._-]+$")


class AuthorizerDisabled(Conflict):
    code = "authorizer_disabled"


# --- input --------------------------------------------------------------------------------------
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
        account = ServiceAccount.objects.filter(
            organization_id=cluster.organization_id, public_id=value
        ).first()
        if account is None:
            raise ValidationFailed(message, details={"principal": [f"No service account {value} here."]})
        return "service_account", account
    key = value.removeprefix("User:")
    if KEY_RE.match(key):
        api_key = (
            ApiKey.objects.filter(cluster=cluster, key=key, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .first()
        )
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
            principals = {k.principal for k in _account_keys(cluster, obj)}
    return fields, principals


# --- the broker -----------------------------------------------------------------------------------
def _raise_for(cluster: Cluster, exc: KafkaException) -> None:
    err = kafka_error(exc)
    if err is None:
        raise exc
    code = err.code()
    if code == KafkaError.SECURITY_DISABLED:
        raise AuthorizerDisabled(
            f"Cluster {cluster.public_id}'s brokers run without an authorizer; ACLs cannot be managed there.",
            details={"kafka_error": err.name()},
        ) from exc
    if code in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
        raise AuthorizerDisabled(
            f"Cluster {cluster.public_id}'s brokers do not support ACLs yet.",
            details={"kafka_error": err.name()},
        ) from exc
    if code in (KafkaError.INVALID_REQUEST, KafkaError.INVALID_CONFIG):
        raise ValidationFailed(INVALID, details={"acl": [err.str()]}) from exc
    raise kafka_admin.unavailable(cluster, err) from exc


def broker_acls(cluster: Cluster, *, timeout: float | None = None, **filter_kwargs: Any) -> list[Binding]:
    client = admin_client(cluster)
    timeout = timeout or TIMEOUT
    try:
        future = client.describe_acls(make_filter(**filter_kwargs), request_timeout=timeout)
        found = result(cluster, future, timeout=timeout + 2)
    except KafkaException as exc:
        _raise_for(cluster, exc)
    out = {b for b in (from_kafka(acl) for acl in found or []) if b is not None}
    return sorted(out)


def broker_create(cluster: Cluster, bindings: list[Binding], *, timeout: float | None = None) -> None:
    if not bindings:
        return
    client = admin_client(cluster)
    timeout = timeout or TIMEOUT
    futures = client.create_acls([b.to_kafka() for b in bindings], request_timeout=timeout)
    for future in futures.values():
        try:
            result(cluster, future, timeout=timeout + 2)
        except KafkaException as exc:
            _raise_for(cluster, exc)


def broker_delete(cluster: Cluster, filters: list, *, timeout: float | None = None) -> list[Binding]:
    if not filters:
        return []
    client = admin_client(cluster)
    timeout = timeout or TIMEOUT
    futures = client.delete_acls(filters, request_timeout=timeout)
    deleted: set[Binding] = set()
    for future in futures.values():
        try:
            for acl in result(cluster, future, timeout=timeout + 2) or []:
                binding = from_kafka(acl)
                if binding is not None:
                    deleted.add(binding)
        except KafkaException as exc:
            _raise_for(cluster, exc)
    return sorted(deleted)


# --- desired state --------------------------------------------------------------------------------
def _live_keys(cluster: Cluster):
    return (
        ApiKey.objects.filter(cluster=cluster, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .select_related("service_account")
    )


def _account_keys(cluster: Cluster, account: ServiceAccount) -> list[ApiKey]:
    return list(_live_keys(cluster).filter(service_account=account))


def _binding_for(row: ServiceAccountBinding, principal: str) -> Binding:
    return Binding(
        row.resource_type,
        row.resource_name,
        row.pattern_type,
        principal,
        row.host,
        row.operation,
        row.permission,
    )


def desired_for_key(api_key: ApiKey) -> list[Binding]:
    """The ACLs Kastle keeps for a live key: its scope's, plus its service account's bindings."""
    out = compile_scope(api_key.principal, api_key.scope)
    if api_key.service_account_id is not None:
        rows = ServiceAccountBinding.objects.filter(
            service_account_id=api_key.service_account_id, cluster_id=api_key.cluster_id
        )
        out += [_binding_for(row, api_key.principal) for row in rows]
    return out


def desired_acls(cluster: Cluster) -> set[Binding]:
    desired: set[Binding] = set()
    for api_key in _live_keys(cluster):
        desired.update(desired_for_key(api_key))
    return desired


def dead_principals(cluster: Cluster) -> set[str]:
    live = set(_live_keys(cluster).values_list("key", flat=True))
    keys = ApiKey.objects.filter(cluster=cluster).values_list("key", flat=True)
    return {f"User:{k}" for k in keys if k not in live}


def cluster_sync(cluster: Cluster, *, timeout: float | None = None) -> dict[str, int]:
    """Converge the cluster's ACLs to the desired state: create what live keys miss, delete the
    ACLs of revoked and expired keys. Idempotent; raises 409/503 errors like the REST calls."""
    present = set(broker_acls(cluster, timeout=timeout))
    missing = sorted(desired_acls(cluster) - present)
    broker_create(cluster, missing, timeout=timeout)
    dead = sorted({b.principal for b in present} & dead_principals(cluster))
    removed = broker_delete(cluster, [make_filter(principal=p) for p in dead], timeout=timeout)
    if missing or removed:
        logger.info(
            "acls %s: created %d, removed %d (of %d revoked/expired keys)",
            cluster.public_id,
            len(missing),
            len(removed),
            len(dead),
        )
    return {"created": len(missing), "removed": len(removed)}


def sync_now_or_later(cluster_id: int) -> None:
    """Converge the cluster's ACLs right away (a few round trips), or in a task if its brokers do
    not answer quickly; reconciliation catches anything both miss."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.RUNNING:
        return  # becoming RUNNING syncs
    try:
        cluster_sync(cluster, timeout=INLINE_TIMEOUT)
        return
    except (Conflict, ServiceError) as exc:
        logger.info("acls %s: inline sync failed (%s); queued", cluster.public_id, exc.message)
    from .tasks import cluster_sync as task

    try:
        task.delay(cluster_id)
    except Exception:  # the task broker is down: the periodic reconcile repairs it
        logger.exception("could not queue the ACL sync of cluster %s", cluster_id)


def sync_on_commit(cluster_id: int) -> None:
    """After commit, converge the cluster's ACLs (before the credentials change is sent, so that a
    new key's ACLs are on the brokers by the time the key logs in)."""
    transaction.on_commit(lambda: sync_now_or_later(cluster_id))


# --- REST -----------------------------------------------------------------------------------------
def _owners(cluster: Cluster) -> dict[str, ApiKey]:
    return {k.principal: k for k in ApiKey.objects.filter(cluster=cluster).select_related("service_account")}


def _describe(cluster: Cluster, bindings: list[Binding]) -> list[dict[str, Any]]:
    owners = _owners(cluster)
    managed = desired_acls(cluster)
    rows = []
    for b in bindings:
        key = owners.get(b.principal)
        rows.append(
            b.as_dict()
            | {
                "api_key": key.key if key else None,
                "service_account": key.service_account.public_id if key and key.service_account else None,
                "managed": b in managed,
            }
        )
    return rows


def acl_list(*, cluster: Cluster, filters: dict[str, Any]) -> list[dict[str, Any]]:
    fields, principals = validate_filter(cluster, filters)
    found = broker_acls(cluster, **fields)
    if principals is not None:
        found = [b for b in found if b.principal in principals]
    return _describe(cluster, found)


def _audit(cluster: Cluster, actor: Actor, action: str, details: dict[str, Any]) -> None:
    audit_record(
        organization_id=cluster.organization_id,
        actor=actor,
        action=action,
        target_type="acl",
        target_id=cluster.public_id,
        target_label=cluster.name,
        details={"cluster": cluster.public_id, **details},
    )


def acl_create(*, cluster: Cluster, data: dict[str, Any], actor: Actor = SYSTEM) -> list[dict[str, Any]]:
    """Create an ACL on the brokers; for a service account, store it and apply it to its keys.

    Returns the bindings now on the brokers (one per principal; none for an account without keys
    on this cluster yet — its next key gets them)."""
    admin_client(cluster)  # 409 unless RUNNING, before anything is stored
    kind, principal, fields = validate_acl(cluster, data)
    if kind == "service_account":
        keys = _account_keys(cluster, principal)
        bindings = [Binding(principal=k.principal, **fields) for k in keys]
        with transaction.atomic():
            ServiceAccountBinding.objects.get_or_create(service_account=principal, cluster=cluster, **fields)
            broker_create(cluster, bindings)  # inside: a broker refusal rolls the row back
            _audit(cluster, actor, "acl.create", {**fields, "principal": principal.public_id})
        return _describe(cluster, bindings)
    name = principal.principal if kind == "key" else principal
    binding = Binding(principal=name, **fields)
    broker_create(cluster, [binding])
    _audit(cluster, actor, "acl.create", {**fields, "principal": name})
    return _describe(cluster, [binding])


def acl_delete(*, cluster: Cluster, filters: dict[str, Any], actor: Actor = SYSTEM) -> list[dict[str, Any]]:
    """Delete the ACLs matching a filter (at least one field) or an `id`; returns what was deleted.

    A service account as principal also drops its stored bindings that match. The ACLs a key's
    scope compiles to come back with the next sync: narrow a key by issuing a scoped one."""
    admin_client(cluster)
    if filters.get("id"):
        wanted = str(filters["id"])
        match = [b for b in broker_acls(cluster) if b.id == wanted]
        if not match:
            from django.http import Http404

            raise Http404
        deleted = broker_delete(cluster, [match[0].to_filter()])
        _audit(cluster, actor, "acl.delete", {"acls": [b.as_dict() for b in deleted]})
        return _describe(cluster, deleted)
    if not any(v not in (None, "") for v in filters.values()):
        raise ValidationFailed(
            FILTER_INVALID,
            details={
                "filter": [
                    "Give an id or at least one of resource_type, resource_name, pattern_type, principal."
                ]
            },
        )
    fields, principals = validate_filter(cluster, filters)
    account = None
    if filters.get("principal"):
        kind, obj = resolve_principal(cluster, filters["principal"], message=FILTER_INVALID)
        account = obj if kind == "service_account" else None
    with transaction.atomic():
        if account is not None:
            rows = ServiceAccountBinding.objects.filter(service_account=account, cluster=cluster)
            for attr in ("resource_type", "resource_name", "operation", "permission", "host"):
                if fields.get(attr):
                    rows = rows.filter(**{attr: fields[attr]})
            if fields.get("pattern_type") in ("LITERAL", "PREFIXED"):
                rows = rows.filter(pattern_type=fields["pattern_type"])
            rows.delete()
        if principals is None:
            deleted = broker_delete(cluster, [make_filter(**fields)])
        else:
            deleted = broker_delete(cluster, [make_filter(**fields, principal=p) for p in sorted(principals)])
        _audit(
            cluster,
            actor,
            "acl.delete",
            {"filter": {k: v for k, v in filters.items() if v}, "count": len(deleted)},
        )
    return _describe(cluster, deleted)


def internal_principal() -> str:
    return f"User:{INTERNAL_USERNAME}"
