"""Reads of ACLs: the bindings on a cluster's brokers (DescribeAcls, through the Kafka protocol) and
the desired part Kastle owns in PostgreSQL (see `services.py`)."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from clusters.models import Cluster
from controlplane.errors import Conflict, ValidationFailed
from iam import selectors as iam_selectors
from iam.models import ApiKey
from sharedkit import kafka_admin
from sharedkit.kafka_admin import admin_client, kafka_error, result

from .bindings import Binding, compile_scope, from_kafka, make_filter, platform_topic_guards
from .models import ServiceAccountBinding
from .validation import INVALID, validate_filter

logger = logging.getLogger(__name__)
TIMEOUT = kafka_admin.REQUEST_TIMEOUT_S


class AuthorizerDisabled(Conflict):
    code = "authorizer_disabled"


# --- the brokers ----------------------------------------------------------------------------------
def raise_for(cluster: Cluster, exc: KafkaException) -> None:
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
        raise_for(cluster, exc)
    out = {b for b in (from_kafka(acl) for acl in found or []) if b is not None}
    return sorted(out)


# --- desired state (PostgreSQL) ---------------------------------------------------------------
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
    desired: set[Binding] = set(platform_topic_guards())
    for api_key in iam_selectors.api_key_list_live(cluster=cluster):
        desired.update(desired_for_key(api_key))
    return desired


def dead_principals(cluster: Cluster) -> set[str]:
    live = set(iam_selectors.api_key_list_live(cluster=cluster).values_list("key", flat=True))
    keys = ApiKey.objects.filter(cluster=cluster).values_list("key", flat=True)
    return {f"User:{k}" for k in keys if k not in live}


def _owners(cluster: Cluster) -> dict[str, ApiKey]:
    return {k.principal: k for k in ApiKey.objects.filter(cluster=cluster).select_related("service_account")}


def describe(cluster: Cluster, bindings: list[Binding]) -> list[dict[str, Any]]:
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
    return describe(cluster, found)
