"""The Kafka clients connected to a cluster, as they report themselves (KIP-714 client telemetry).

Reads: each running broker serves what its clients pushed at `/telemetry` on its admin listener
(client ids, software names and versions, recent metric series); the rows of all brokers are
merged by client instance. Writes: the cluster's client-metrics subscriptions (which clients
push which metrics, how often) are Kafka config resources of type 16, set on every broker (each
keeps its own) over `sharedkit.kafka_wire` as the cluster's internal user.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from kio.schema.describe_configs.v4 import request as dc_req
from kio.schema.describe_configs.v4 import response as dc_resp
from kio.schema.incremental_alter_configs.v1 import request as iac_req
from kio.schema.incremental_alter_configs.v1 import response as iac_resp
from kio.schema.list_config_resources.v1 import request as lcr_req
from kio.schema.list_config_resources.v1 import response as lcr_resp
from kio.static.primitive import i8

from acls.wire import broker_addresses
from clusters.models import Broker, BrokerStatus, Cluster
from controlplane.errors import ValidationFailed
from sharedkit import kafka_admin
from sharedkit.kafka_wire import internal_connection

logger = logging.getLogger(__name__)
CLIENT_METRICS = 16
SET, DELETE = 0, 1
KEYS = ("metrics", "interval.ms", "match")

#: Headline figures of the Clients view: (label, metric name suffixes, unit), first match wins.
HEADLINES = (
    ("request_latency_ms", ("producer.node.request.latency.avg", "consumer.node.request.latency.avg"), "ms"),
    ("produce_throttle_ms", ("producer.produce.throttle.time.avg",), "ms"),
    ("record_queue_ms", ("producer.record.queue.time.avg",), "ms"),
    ("fetch_latency_ms", ("consumer.fetch.manager.fetch.latency.avg",), "ms"),
    ("assigned_partitions", ("consumer.coordinator.assigned.partitions",), ""),
    ("commit_latency_ms", ("consumer.coordinator.commit.latency.avg",), "ms"),
)


def _fetch_telemetry(address: str, admin_port: int) -> list[dict[str, Any]] | None:
    host = f"[{address}]" if ":" in address else address
    try:
        with urllib.request.urlopen(f"http://{host}:{admin_port}/telemetry", timeout=2.0) as resp:
            return json.loads(resp.read())["clients"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def _headlines(metrics: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for label, suffixes, _unit in HEADLINES:
        values = [m["latest"] for m in metrics if m["name"].endswith(suffixes)]
        out[label] = round(sum(values) / len(values), 3) if values else None
    return out


def clients(cluster: Cluster) -> list[dict[str, Any]]:
    """Every client instance that asked a broker of the cluster for its telemetry subscription."""
    merged: dict[str, dict[str, Any]] = {}
    brokers = Broker.objects.filter(cluster=cluster, status=BrokerStatus.RUNNING, admin_port__isnull=False)
    for broker in brokers.select_related("host"):
        rows = _fetch_telemetry(broker.host.address, broker.admin_port)
        for row in rows or []:
            known = merged.get(row["client_instance_id"])
            if known is None or row["last_push_ms"] > known["last_push_ms"]:
                merged[row["client_instance_id"]] = row
    out = []
    for row in merged.values():
        metrics = sorted(row["metrics"], key=lambda m: (m["name"], sorted(m["attributes"].items())))
        out.append(
            {
                "client_instance_id": row["client_instance_id"],
                "client_id": row["client_id"],
                "software_name": row["software_name"],
                "software_version": row["software_version"],
                "source_address": row["source_address"],
                "principal": row["principal"],
                "active": row["active"],
                "push_interval_ms": row["push_interval_ms"],
                "last_push_ms": row["last_push_ms"] or None,
                "pushes": row["pushes"],
                **_headlines(metrics),
                "metrics": [
                    {
                        "name": m["name"],
                        "attributes": m["attributes"],
                        "value": m["latest"],
                        "points": m["points"],
                    }
                    for m in metrics
                ],
            }
        )
    return sorted(out, key=lambda c: (not c["active"], c["client_id"], c["client_instance_id"]))


# --- subscriptions ------------------------------------------------------------------------------


def _call_each(cluster: Cluster, request, response_cls) -> list:
    answers = []
    for host, port in broker_addresses(cluster):
        try:
            conn = internal_connection(cluster, host, port)
            try:
                answers.append(conn.call(request, response_cls))
            finally:
                conn.close()
        except OSError as exc:
            logger.warning("client-metrics request to %s:%s failed: %s", host, port, exc)
            raise kafka_admin.unavailable(cluster) from exc
    return answers


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def subscriptions(cluster: Cluster) -> list[dict[str, Any]]:
    """The client-metrics subscriptions, as the first broker holds them."""
    first = broker_addresses(cluster)[:1]
    if not first:
        return []
    try:
        conn = internal_connection(cluster, *first[0])
        try:
            listed = conn.call(
                lcr_req.ListConfigResourcesRequest(resource_types=(i8(CLIENT_METRICS),)),
                lcr_resp.ListConfigResourcesResponse,
            )
            names = sorted(r.resource_name for r in listed.config_resources)
            if not names:
                return []
            described = conn.call(
                dc_req.DescribeConfigsRequest(
                    resources=tuple(
                        dc_req.DescribeConfigsResource(
                            resource_type=i8(CLIENT_METRICS), resource_name=n, configuration_keys=None
                        )
                        for n in names
                    ),
                    include_synonyms=False,
                    include_documentation=False,
                ),
                dc_resp.DescribeConfigsResponse,
            )
        finally:
            conn.close()
    except OSError as exc:
        raise kafka_admin.unavailable(cluster) from exc
    out = []
    for result in described.results:
        configs = {c.name: c.value for c in result.configs}
        out.append(
            {
                "name": result.resource_name,
                "metrics": _split(configs.get("metrics")),
                "interval_ms": int(configs.get("interval.ms") or 300000),
                "match": _split(configs.get("match")),
            }
        )
    return out


def _alter(cluster: Cluster, name: str, changes: list[tuple[str, int, str | None]]) -> None:
    resource = iac_req.AlterConfigsResource(
        resource_type=i8(CLIENT_METRICS),
        resource_name=name,
        configs=tuple(
            iac_req.AlterableConfig(name=k, config_operation=i8(op), value=v) for k, op, v in changes
        ),
    )
    request = iac_req.IncrementalAlterConfigsRequest(resources=(resource,), validate_only=False)
    for answer in _call_each(cluster, request, iac_resp.IncrementalAlterConfigsResponse):
        (result,) = answer.responses
        if int(result.error_code) != 0:
            raise ValidationFailed(
                result.error_message or "The cluster refused the subscription.",
                code="invalid_subscription",
                details={"kafka_error": int(result.error_code)},
            )


def subscription_set(
    cluster: Cluster, name: str, metrics: list[str], interval_ms: int, match: list[str]
) -> None:
    _alter(
        cluster,
        name,
        [
            ("metrics", SET, ",".join(metrics)),
            ("interval.ms", SET, str(interval_ms)),
            ("match", SET, ",".join(match)),
        ],
    )


def subscription_delete(cluster: Cluster, name: str) -> None:
    _alter(cluster, name, [(key, DELETE, None) for key in KEYS])
