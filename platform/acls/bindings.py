"""ACL bindings as plain values, scope compilation, and the confluent-kafka conversions.

Names follow Kafka's (and Confluent Cloud REST v3's) upper-case enums: resource types TOPIC, GROUP,
CLUSTER, TRANSACTIONAL_ID; pattern types LITERAL, PREFIXED; operations READ, WRITE, …; ALLOW/DENY.
No Django here: the REST layer, the reconciler and the tests share these functions.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

CLUSTER_NAME = "kafka-cluster"
RESOURCE_TYPES = {
    "TOPIC": ResourceType.TOPIC,
    "GROUP": ResourceType.GROUP,
    "CLUSTER": ResourceType.BROKER,  # confluent-kafka calls Kafka's CLUSTER resource BROKER
    "TRANSACTIONAL_ID": ResourceType.TRANSACTIONAL_ID,
}
PATTERN_TYPES = {"LITERAL": ResourcePatternType.LITERAL, "PREFIXED": ResourcePatternType.PREFIXED}
OPERATIONS = {
    name: getattr(AclOperation, name)
    for name in (
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
    )
}
PERMISSIONS = {"ALLOW": AclPermissionType.ALLOW, "DENY": AclPermissionType.DENY}
_BY_VALUE = {
    "resource_type": {v: k for k, v in RESOURCE_TYPES.items()},
    "pattern_type": {v: k for k, v in PATTERN_TYPES.items()},
    "operation": {v: k for k, v in OPERATIONS.items()},
    "permission": {v: k for k, v in PERMISSIONS.items()},
}
#: Operations Kafka allows per resource type (kafka-acls.sh's ResourceTypeToValidOperations).
VALID_OPERATIONS = {
    "TOPIC": {
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
    },
    "GROUP": {"ALL", "READ", "DELETE", "DESCRIBE"},
    "CLUSTER": {
        "ALL",
        "CREATE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
    },
    "TRANSACTIONAL_ID": {"ALL", "WRITE", "DESCRIBE"},
}


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    resource_type: str
    resource_name: str
    pattern_type: str
    principal: str
    host: str
    operation: str
    permission: str

    @property
    def id(self) -> str:
        """A stable id (brokers do not number ACLs): a digest of the binding's seven fields."""
        raw = "\x1f".join(asdict(self).values()).encode()
        return "acl-" + base64.b32encode(hashlib.sha256(raw).digest()).decode()[:16].lower()

    def to_kafka(self) -> AclBinding:
        return AclBinding(
            RESOURCE_TYPES[self.resource_type],
            self.resource_name,
            PATTERN_TYPES[self.pattern_type],
            self.principal,
            self.host,
            OPERATIONS[self.operation],
            PERMISSIONS[self.permission],
        )

    def to_filter(self) -> AclBindingFilter:
        """A filter matching exactly this binding (DeleteAcls)."""
        return AclBindingFilter(
            RESOURCE_TYPES[self.resource_type],
            self.resource_name,
            PATTERN_TYPES[self.pattern_type],
            self.principal,
            self.host,
            OPERATIONS[self.operation],
            PERMISSIONS[self.permission],
        )

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, **asdict(self)}


def from_kafka(acl: AclBinding) -> Binding | None:
    """A broker's binding as a Binding (None for types this API does not speak)."""
    try:
        return Binding(
            resource_type=_BY_VALUE["resource_type"][acl.restype],
            resource_name=acl.name,
            pattern_type=_BY_VALUE["pattern_type"][acl.resource_pattern_type],
            principal=acl.principal,
            host=acl.host,
            operation=_BY_VALUE["operation"][acl.operation],
            permission=_BY_VALUE["permission"][acl.permission_type],
        )
    except KeyError:
        return None


def make_filter(
    *,
    resource_type: str | None = None,
    resource_name: str | None = None,
    pattern_type: str | None = None,
    principal: str | None = None,
    host: str | None = None,
    operation: str | None = None,
    permission: str | None = None,
) -> AclBindingFilter:
    """A DescribeAcls/DeleteAcls filter; None means any. A pattern type of MATCH finds every binding
    (literal, wildcard and prefixed) that applies to `resource_name`, as Kafka's does."""
    if pattern_type == "MATCH":
        pattern = ResourcePatternType.MATCH
    else:
        pattern = PATTERN_TYPES[pattern_type] if pattern_type else ResourcePatternType.ANY
    return AclBindingFilter(
        RESOURCE_TYPES[resource_type] if resource_type else ResourceType.ANY,
        resource_name,
        pattern,
        principal,
        host,
        OPERATIONS[operation] if operation else AclOperation.ANY,
        PERMISSIONS[permission] if permission else AclPermissionType.ANY,
    )


#: The schema registry keeps each cluster's schemas in this topic (schemaregistry.storage). Only the
#: platform's internal user (a super user on every broker) may touch it: every other principal is
#: denied it, whatever its other ACLs allow.
SCHEMAS_TOPIC = "_schemas"
PLATFORM_TOPICS = frozenset({SCHEMAS_TOPIC})


def platform_topic_guards() -> list[Binding]:
    """The DENY bindings that keep tenants' keys off the platform's own topics."""
    return [Binding("TOPIC", SCHEMAS_TOPIC, "LITERAL", "User:*", "*", "ALL", "DENY")]


# --- scopes ---------------------------------------------------------------------------------------
def _allow(principal: str, resource_type: str, name: str, pattern: str, *operations: str) -> list[Binding]:
    return [Binding(resource_type, name, pattern, principal, "*", op, "ALLOW") for op in operations]


def compile_scope(principal: str, scope: dict[str, str] | None) -> list[Binding]:
    """The ACLs a key's scope means, for its principal (`User:<key>`).

    - no scope (the default, and every key before scopes existed): full access to the cluster —
      ALL on every topic, group and transactional id, and ALL on the cluster (create topics,
      idempotent writes, describe and manage ACLs with the tenant's own tools), as an
      unrestricted key on the hosted services;
    - produce: WRITE+DESCRIBE on topics starting with the prefix, IDEMPOTENT_WRITE on the cluster
      (librdkafka's idempotent producer is the default), WRITE+DESCRIBE on transactional ids with
      the prefix (what kafka-acls.sh --producer --transactional-id adds);
    - consume: READ+DESCRIBE on the prefixed topics and READ on consumer groups with the same
      prefix (Confluent's --consumer always names the group; one prefix for both keeps a scope one
      field: name groups `<prefix>…`);
    - full: ALL on the prefixed topics (CREATE included: the key creates topics under its prefix and
      nowhere else), groups and transactional ids, plus IDEMPOTENT_WRITE on the cluster.
    """
    if scope is None:
        return (
            _allow(principal, "TOPIC", "*", "LITERAL", "ALL")
            + _allow(principal, "GROUP", "*", "LITERAL", "ALL")
            + _allow(principal, "TRANSACTIONAL_ID", "*", "LITERAL", "ALL")
            + _allow(principal, "CLUSTER", CLUSTER_NAME, "LITERAL", "ALL")
        )
    prefix, access = scope["topic_prefix"], scope["access"]
    if access == "produce":
        return (
            _allow(principal, "TOPIC", prefix, "PREFIXED", "WRITE", "DESCRIBE")
            + _allow(principal, "TRANSACTIONAL_ID", prefix, "PREFIXED", "WRITE", "DESCRIBE")
            + _allow(principal, "CLUSTER", CLUSTER_NAME, "LITERAL", "IDEMPOTENT_WRITE")
        )
    if access == "consume":
        return _allow(principal, "TOPIC", prefix, "PREFIXED", "READ", "DESCRIBE") + _allow(
            principal, "GROUP", prefix, "PREFIXED", "READ"
        )
    if access == "full":
        return (
            _allow(principal, "TOPIC", prefix, "PREFIXED", "ALL")
            + _allow(principal, "GROUP", prefix, "PREFIXED", "ALL")
            + _allow(principal, "TRANSACTIONAL_ID", prefix, "PREFIXED", "ALL")
            + _allow(principal, "CLUSTER", CLUSTER_NAME, "LITERAL", "IDEMPOTENT_WRITE")
        )
    raise ValueError(f"unknown access {access!r}")
