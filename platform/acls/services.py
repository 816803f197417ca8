"""ACLs on a cluster's brokers, through the Kafka protocol (CreateAcls/DescribeAcls/DeleteAcls).

The brokers hold every ACL, durably, as Kafka does: what the REST API lists is what a tenant's
AdminClient `describe_acls` returns. PostgreSQL holds only the *desired* part Kastle owns:

- a key's scope (`ApiKey.scope_*`, compiled by `bindings.compile_scope`; no scope = full access);
- a service account's bindings (`ServiceAccountBinding`), applied to `User:<key>` of each of the
  account's live keys on the cluster.

Reads are `selectors.py`, input checks `validation.py`. `cluster_sync` converges a cluster to
that: it creates what is missing for live keys and removes
the ACLs of revoked and expired keys. It runs after a key is issued or revoked, when a cluster
becomes RUNNING, and periodically (`acls.reconcile`). ACLs anyone adds for other principals
(e.g. `User:*`) are the tenant's own and left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from confluent_kafka import KafkaException
from django.db import transaction
from django.http import Http404

from accounts.audit import SYSTEM, Actor, audit_record
from clusters.models import INTERNAL_USERNAME, Cluster, ClusterStatus
from controlplane.errors import Conflict, ServiceError, ValidationFailed
from iam import selectors as iam_selectors
from sharedkit.kafka_admin import ClusterUnavailable, admin_client, result

from . import selectors, wire
from .bindings import Binding, from_kafka, make_filter
from .models import ServiceAccountBinding
from .selectors import (
    broker_acls,
    dead_principals,
    describe,
    desired_acls,
    raise_for,
)
from .validation import FILTER_INVALID, resolve_principal, validate_acl, validate_filter

logger = logging.getLogger(__name__)
#: A key's create/revoke converges its cluster inline for at most this long, then in a task.
INLINE_TIMEOUT = 3.0


# --- the broker -----------------------------------------------------------------------------------
def acls_create_on_brokers(
    *, cluster: Cluster, bindings: list[Binding], timeout: float | None = None
) -> None:
    if not bindings:
        return
    if cluster.broker_count > 1:  # each broker keeps its own ACLs: write them to every one
        try:
            wire.create_on_each_broker(cluster, bindings)
        except wire.BrokerRefused as exc:
            raise _brokers_unavailable(cluster, exc) from exc
        return
    client = admin_client(cluster)
    timeout = timeout or selectors.TIMEOUT
    futures = client.create_acls([b.to_kafka() for b in bindings], request_timeout=timeout)
    for future in futures.values():
        try:
            result(cluster, future, timeout=timeout + 2)
        except KafkaException as exc:
            raise_for(cluster, exc)


def acls_delete_on_brokers(*, cluster: Cluster, filters: list, timeout: float | None = None) -> list[Binding]:
    if not filters:
        return []
    if cluster.broker_count > 1:
        try:
            return sorted(wire.delete_on_each_broker(cluster, filters))
        except wire.BrokerRefused as exc:
            raise _brokers_unavailable(cluster, exc) from exc
    client = admin_client(cluster)
    timeout = timeout or selectors.TIMEOUT
    futures = client.delete_acls(filters, request_timeout=timeout)
    deleted: set[Binding] = set()
    for future in futures.values():
        try:
            for acl in result(cluster, future, timeout=timeout + 2) or []:
                binding = from_kafka(acl)
                if binding is not None:
                    deleted.add(binding)
        except KafkaException as exc:
            raise_for(cluster, exc)
    return sorted(deleted)


def _brokers_unavailable(cluster: Cluster, exc: Exception) -> ServiceError:
    return ClusterUnavailable(
        f"Cluster {cluster.public_id}'s brokers did not all take the ACL change ({exc}); "
        "try again in a few seconds.",
        details={"kafka_error": "broker_unavailable"},
    )


def cluster_sync(*, cluster: Cluster, timeout: float | None = None) -> dict[str, int]:
    """Converge the cluster's ACLs to the desired state: create what live keys miss, delete the
    ACLs of revoked and expired keys. Idempotent; raises 409/503 errors like the REST calls."""
    present = set(broker_acls(cluster, timeout=timeout))
    desired = desired_acls(cluster)
    # Several brokers: the ACLs read come from one of them; another (new, or restored) may lack
    # some, and creating what a broker holds keeps one copy, so every desired ACL is written.
    new = sorted(desired - present)
    missing = sorted(desired) if cluster.broker_count > 1 else new
    acls_create_on_brokers(cluster=cluster, bindings=missing, timeout=timeout)
    dead = sorted({b.principal for b in present} & dead_principals(cluster))
    removed = acls_delete_on_brokers(
        cluster=cluster, filters=[make_filter(principal=p) for p in dead], timeout=timeout
    )
    if new or removed:
        logger.info(
            "acls %s: created %d, removed %d (of %d revoked/expired keys)",
            cluster.public_id,
            len(new),
            len(removed),
            len(dead),
        )
    return {"created": len(new), "removed": len(removed)}


def cluster_sync_now_or_later(*, cluster_id: int) -> None:
    """Converge the cluster's ACLs right away (a few round trips), or in a task if its brokers do
    not answer quickly; reconciliation catches anything both miss."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.RUNNING:
        return  # becoming RUNNING syncs
    try:
        cluster_sync(cluster=cluster, timeout=INLINE_TIMEOUT)
        return
    except (Conflict, ServiceError) as exc:
        logger.info("acls %s: inline sync failed (%s); queued", cluster.public_id, exc.message)
    try:  # by name: tasks.py imports this module
        current_app.send_task("acls.cluster_sync", args=(cluster_id,))
    except Exception:  # the task broker is down: the periodic reconcile repairs it
        logger.exception("could not queue the ACL sync of cluster %s", cluster_id)


def cluster_sync_on_commit(*, cluster_id: int) -> None:
    """After commit, converge the cluster's ACLs (before the credentials change is sent, so that a
    new key's ACLs are on the brokers by the time the key logs in)."""
    transaction.on_commit(lambda: cluster_sync_now_or_later(cluster_id=cluster_id))


# --- REST -----------------------------------------------------------------------------------------
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
        keys = list(iam_selectors.api_key_list_live(cluster=cluster, service_account=principal))
        bindings = [Binding(principal=k.principal, **fields) for k in keys]
        with transaction.atomic():
            ServiceAccountBinding.objects.get_or_create(service_account=principal, cluster=cluster, **fields)
            acls_create_on_brokers(cluster=cluster, bindings=bindings)  # a broker refusal rolls the row back
            _audit(cluster, actor, "acl.create", {**fields, "principal": principal.public_id})
        return describe(cluster, bindings)
    name = principal.principal if kind == "key" else principal
    binding = Binding(principal=name, **fields)
    acls_create_on_brokers(cluster=cluster, bindings=[binding])
    _audit(cluster, actor, "acl.create", {**fields, "principal": name})
    return describe(cluster, [binding])


def acl_delete(*, cluster: Cluster, filters: dict[str, Any], actor: Actor = SYSTEM) -> list[dict[str, Any]]:
    """Delete the ACLs matching a filter (at least one field) or an `id`; returns what was deleted.

    A service account as principal also drops its stored bindings that match. The ACLs a key's
    scope compiles to come back with the next sync: narrow a key by issuing a scoped one."""
    admin_client(cluster)
    if filters.get("id"):
        wanted = str(filters["id"])
        match = [b for b in broker_acls(cluster) if b.id == wanted]
        if not match:
            raise Http404
        deleted = acls_delete_on_brokers(cluster=cluster, filters=[match[0].to_filter()])
        _audit(cluster, actor, "acl.delete", {"acls": [b.as_dict() for b in deleted]})
        return describe(cluster, deleted)
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
            deleted = acls_delete_on_brokers(cluster=cluster, filters=[make_filter(**fields)])
        else:
            per_principal = [make_filter(**fields, principal=p) for p in sorted(principals)]
            deleted = acls_delete_on_brokers(cluster=cluster, filters=per_principal)
        _audit(
            cluster,
            actor,
            "acl.delete",
            {"filter": {k: v for k, v in filters.items() if v}, "count": len(deleted)},
        )
    return describe(cluster, deleted)


def internal_principal() -> str:
    return f"User:{INTERNAL_USERNAME}"
