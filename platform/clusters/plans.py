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
    brokers: int  # the default broker count (Dedicated: chosen at creation within brokers_min..brokers_max)
    brokers_min: int
    brokers_max: int
    replication_factor: int  # topics created without one get this
    min_insync_replicas: int
    max_partitions: int
    ingress_mbps: int
    egress_mbps: int
    max_retention_ms: int
    max_api_keys: int
    max_connections: int
    max_message_bytes: int
    max_schemas: int  # live schema versions in the cluster's Schema Registry, all subjects together

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def replicated(self) -> bool:
        """Brokers of this plan form one cluster through etcd (coordination) and replicate."""
        return self.brokers_max > 1

    @property
    def brokers_chosen(self) -> bool:
        """The tenant chooses the broker count at creation (Dedicated)."""
        return self.brokers_min != self.brokers_max

    def broker_count(self, requested: int | None) -> int:
        """The cluster's broker count; raises ValueError with words for the tenant."""
        if requested is None:
            return self.brokers
        if not self.brokers_min <= requested <= self.brokers_max:
            if self.brokers_chosen:
                raise ValueError(
                    f"The {self.display_name} plan runs {self.brokers_min} to {self.brokers_max} brokers."
                )
            raise ValueError(
                f"The {self.display_name} plan always runs {self.brokers} broker"
                f"{'s' if self.brokers > 1 else ''}; leave brokers out or choose the Dedicated plan."
            )
        return requested


PLANS: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan(
            name="basic",
            display_name="Basic",
            description="For development and small workloads: one broker, no replication.",
            brokers=1,
            brokers_min=1,
            brokers_max=1,
            replication_factor=1,
            min_insync_replicas=1,
            max_partitions=100,
            ingress_mbps=10,
            egress_mbps=30,
            max_retention_ms=7 * DAY_MS,
            max_api_keys=10,
            max_connections=100,
            max_message_bytes=1024 * 1024,
            max_schemas=100,
        ),
        Plan(
            name="standard",
            display_name="Standard",
            description="For production workloads: 3 brokers, every partition on 3 of them.",
            brokers=3,
            brokers_min=3,
            brokers_max=3,
            replication_factor=3,
            min_insync_replicas=2,
            max_partitions=1000,
            ingress_mbps=50,
            egress_mbps=150,
            max_retention_ms=30 * DAY_MS,
            max_api_keys=50,
            max_connections=1000,
            max_message_bytes=8 * 1024 * 1024,
            max_schemas=1000,
        ),
        Plan(
            name="dedicated",
            display_name="Dedicated",
            description="For high-throughput workloads and unlimited retention: 3 to 12 brokers, "
            "each on a host of its own.",
            brokers=3,
            brokers_min=3,
            brokers_max=12,
            replication_factor=3,
            min_insync_replicas=2,
            max_partitions=4000,
            ingress_mbps=200,
            egress_mbps=600,
            max_retention_ms=-1,
            max_api_keys=500,
            max_connections=10000,
            max_message_bytes=20 * 1024 * 1024,
            max_schemas=10000,
        ),
    )
}

PLAN_CHOICES = [(plan.name, plan.display_name) for plan in PLANS.values()]


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise KeyError(f"unknown plan {name!r}; choose one of {', '.join(PLANS)}") from None
