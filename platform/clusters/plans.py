"""Cluster plans and their limits: the one place they are defined.

Metering adds prices (a price book per plan) on top of these names; the limits stay here.
Retention of -1 means unlimited, as in Kafka's retention.ms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    display_name: str
    description: str
    brokers: int
    max_partitions: int
    ingress_mbps: int
    egress_mbps: int
    max_retention_ms: int
    max_api_keys: int
    max_connections: int
    max_message_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan(
            name="basic",
            display_name="Basic",
            description="For development and small workloads.",
            brokers=1,
            max_partitions=100,
            ingress_mbps=10,
            egress_mbps=30,
            max_retention_ms=7 * DAY_MS,
            max_api_keys=10,
            max_connections=100,
            max_message_bytes=1024 * 1024,
        ),
        Plan(
            name="standard",
            display_name="Standard",
            description="For production workloads.",
            brokers=1,
            max_partitions=1000,
            ingress_mbps=50,
            egress_mbps=150,
            max_retention_ms=30 * DAY_MS,
            max_api_keys=50,
            max_connections=1000,
            max_message_bytes=8 * 1024 * 1024,
        ),
        Plan(
            name="dedicated",
            display_name="Dedicated",
            description="For high-throughput workloads and unlimited retention.",
            brokers=1,
            max_partitions=4000,
            ingress_mbps=200,
            egress_mbps=600,
            max_retention_ms=-1,
            max_api_keys=500,
            max_connections=10000,
            max_message_bytes=20 * 1024 * 1024,
        ),
    )
}

PLAN_CHOICES = [(plan.name, plan.display_name) for plan in PLANS.values()]


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise KeyError(f"unknown plan {name!r}; choose one of {', '.join(PLANS)}") from None
