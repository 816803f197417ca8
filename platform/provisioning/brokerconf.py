"""Render a broker's TOML config from its cluster's plan, and its cluster's credentials file.

Pure functions plus atomic writes (`sharedkit.files`); no process control. Plan limits become broker settings
(Kafka names, brokerd/settings.py and brokerd/kafka_configs.py) and per-user default client quotas.
Settings this brokerd does not know are left out (and logged), so the control plane and a
broker of another version never disagree into a broker that refuses to start.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokerd import credentials as brokerd_credentials
from clusters.models import INTERNAL_USERNAME
from clusters.plans import DAY_MS, Plan

logger = logging.getLogger(__name__)

MB = 1024 * 1024
#: Retention for topics that do not set one: Kafka's 7 days, capped by the plan.
DEFAULT_RETENTION_MS = 7 * DAY_MS


def plan_settings(plan: Plan) -> dict[str, Any]:
    """The broker settings a plan implies."""
    retention = DEFAULT_RETENTION_MS
    if plan.max_retention_ms >= 0:
        retention = min(retention, plan.max_retention_ms)
    return {
        # Hosted Kafka: topics are created deliberately (REST, portal, AdminClient), never by a typo.
        "auto.create.topics.enable": False,
        "log.retention.ms": retention,
        "message.max.bytes": plan.max_message_bytes,
        "max.connections": plan.max_connections,
        # One leaked or runaway key cannot take every connection of the cluster.
        "kastle.max.connections.per.principal": max(1, plan.max_connections // 2),
        "kastle.plan.max.partitions": plan.max_partitions,
        "kastle.plan.max.retention.ms": plan.max_retention_ms,
        "kastle.plan.max.message.bytes": plan.max_message_bytes,
        # Per API key (Kafka's <default> user) byte rates: the plan's ingress/egress.
        "kastle.quota.user.default.producer_byte_rate": plan.ingress_mbps * MB,
        "kastle.quota.user.default.consumer_byte_rate": plan.egress_mbps * MB,
        # Only the control plane's credential may alter broker configs and client quotas.
        "super.users": f"User:{INTERNAL_USERNAME}",
        # ACLs are enforced; every key gets its ACLs from the control plane (acls app:
        # full access unless scoped), so nothing is allowed where no ACL matches.
        "authorizer.enable": True,
        "allow.everyone.if.no.acl.found": False,
    }


@dataclass(frozen=True)
class Coordination:
    """How a broker of a replicated cluster reaches etcd, and where it stands (rack = host)."""

    url: str
    rack: str
    inter_broker_password_file: Path  # the control plane's credential, which followers log in with
    user: str | None = None
    password_file: Path | None = None

    def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "coordination": self.url,
            "broker.rack": self.rack,
            # Followers fetch through the leader's SASL listener as the cluster's internal user
            # (a super user, so CLUSTER_ACTION on Fetch with a replica id is allowed).
            "inter.broker.user": INTERNAL_USERNAME,
            "inter.broker.password.file": str(self.inter_broker_password_file),
        }
        if self.user is not None and self.password_file is not None:
            found["coordination.user"] = self.user
            found["coordination.password.file"] = str(self.password_file)
        return found


def broker_settings(
    *,
    public_id: str,
    plan: Plan,
    node_id: int,
    address: str,
    port: int,
    admin_port: int,
    data_dir: Path,
    credentials_file: Path,
    security_protocol: str = "SASL_PLAINTEXT",
    tls_files: dict[str, Path] | None = None,
    coordination: Coordination | None = None,
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "node.id": node_id,
        "cluster.id": public_id,
        "data.dir": str(data_dir),
        "listeners": [f"{security_protocol}://{address}:{port}"],
        "advertised.host": address,
        "admin.listener": f"{address}:{admin_port}",
        "credentials.file": str(credentials_file),
        "sasl.enabled.mechanisms": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
    }
    if security_protocol == "SASL_SSL":  # pki.services writes these files
        assert tls_files is not None, "a SASL_SSL broker needs its certificate files"
        settings["tls.cert.file"] = str(tls_files["cert"])
        settings["tls.key.file"] = str(tls_files["key"])
    settings.update(plan_settings(plan))
    if coordination is not None:  # a replicated cluster: its brokers meet in etcd
        settings.update(coordination.settings())
        if security_protocol == "SASL_SSL":  # followers verify the leader's certificate too
            assert tls_files is not None
            settings["inter.broker.tls.ca.file"] = str(tls_files["ca"])
        # Topics created without a replication factor get the plan's (3): brokerd's cluster default
        # once 3 brokers are registered, so default.replication.factor is not rendered (brokerd
        # still holds it read-only at 1 for a broker alone).
        settings["min.insync.replicas"] = plan.min_insync_replicas
    return known_settings(settings)


def known_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Drop the settings this brokerd does not know (logged: the broker would refuse them)."""
    try:
        from brokerd.settings import SETTINGS
    except ImportError:  # pragma: no cover - brokerd ships with the control plane
        return settings
    try:
        from brokerd.kafka_configs import BROKER_CONFIG_DEFS
    except ImportError:  # pragma: no cover
        BROKER_CONFIG_DEFS = {}
    kept = {k: v for k, v in settings.items() if k in SETTINGS or k in BROKER_CONFIG_DEFS}
    dropped = sorted(set(settings) - set(kept))
    if dropped:
        logger.warning("brokerd does not know these settings yet; not rendering them: %s", ", ".join(dropped))
    return kept


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are valid TOML


def render_toml(settings: dict[str, Any]) -> str:
    """Dotted Kafka names as quoted keys (one key each, not nested tables)."""
    lines = ["# Written by Kastle provisioning; changes are overwritten.", ""]
    for key in sorted(settings):
        lines.append(f"{json.dumps(key)} = {_toml_value(settings[key])}")
    return "\n".join(lines) + "\n"


def validate(text: str) -> None:
    """Parse the rendered config as brokerd will (raises brokerd.settings.SettingsError)."""
    import tomllib

    from brokerd.settings import Settings, flatten

    Settings.resolve(toml=flatten(tomllib.loads(text)))


def write_credentials(path: Path, users: dict[str, dict[str, Any]]) -> bool:
    """brokerd.credentials.write_atomic, skipped when the file already holds these users."""
    try:
        if brokerd_credentials.load(path) == users:
            return False
    except (OSError, ValueError):
        pass
    brokerd_credentials.write_atomic(path, users)
    return True
