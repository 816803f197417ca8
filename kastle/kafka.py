"""Kafka client settings for a cluster: its bootstrap servers, SASL with an API key and, on a
SASL_SSL cluster, its CA bundle (fetched from `/api/v1/clusters/{id}/ca.pem`) to verify the
brokers. confluent-kafka is imported only by the commands that talk to brokers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kastle.api import seg
from kastle.config import config_dir, write_private
from kastle.errors import CliError, UsageError
from kastle.session import Session

MECHANISM = "PLAIN"


def ca_file(session: Session, cluster_id: str) -> Path:
    """The cluster's CA bundle, fetched now (a CA rotation is picked up) and kept beside the config."""
    pem = session.api.text(f"clusters/{seg(cluster_id)}/ca.pem", what=f"cluster {cluster_id}")
    path = config_dir() / "ca" / f"{cluster_id}.pem"
    if not path.exists() or path.read_text() != pem:
        write_private(path, pem)  # a temporary file of its own: concurrent runs (CI jobs) never collide
    return path


def credentials(
    session: Session, cluster_id: str, api_key: str | None, api_secret: str | None
) -> tuple[str, str]:
    if bool(api_key) != bool(api_secret):
        raise UsageError("give both --api-key and --api-secret (or KASTLE_API_KEY and KASTLE_API_SECRET)")
    if api_key and api_secret:
        return api_key, api_secret
    stored = session.config.stored_key(cluster_id)
    if stored is None:
        raise UsageError(
            f"no API key stored for cluster {cluster_id}: run `kastle api-key create --cluster {cluster_id}` "
            "or pass --api-key and --api-secret"
        )
    return stored


def client_settings(
    session: Session, cluster: dict[str, Any], key: str, secret: str, *, ca_path: str | None = None
) -> dict[str, Any]:
    """librdkafka properties for the cluster (also what `config client` and --write-config print)."""
    if cluster.get("status") != "RUNNING" or not cluster.get("bootstrap_servers"):
        raise CliError(
            f"cluster {cluster['id']} is {cluster.get('status')}, not RUNNING: its brokers cannot be "
            f"reached yet (`kastle cluster describe {cluster['id']}`)"
        )
    conf: dict[str, Any] = {
        "bootstrap.servers": cluster["bootstrap_servers"],
        "security.protocol": cluster.get("security_protocol") or "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": key,
        "sasl.password": secret,
    }
    if conf["security.protocol"] == "SASL_SSL":
        conf["ssl.ca.location"] = ca_path or str(ca_file(session, cluster["id"]))
        conf["ssl.endpoint.identification.algorithm"] = "https"
    return conf


def key_accepted(conf: dict[str, Any], timeout: float = 3.0) -> bool | None:
    """True: a new connection authenticates with the key; False: refused; None: no answer."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[Any] = []
    client = AdminClient({**conf, "error_cb": errors.append, "retry.backoff.ms": 100, "log_level": 0})
    try:
        client.list_topics(timeout=timeout)
        return True
    except KafkaException:
        client.poll(0.1)
    refused = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
    return False if any(e.code() in refused for e in errors) else None


def wait_until_accepted(conf: dict[str, Any], timeout: float) -> None:
    """Return once the brokers accept the key (credentials reach every broker host asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        if key_accepted(conf, timeout=min(3.0, max(0.5, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise CliError(
                f"the brokers did not accept key {conf['sasl.username']} within {timeout:.0f}s; it was "
                "created and stored: try again shortly, or check `kastle cluster describe`"
            )
        time.sleep(0.2)


def properties(conf: dict[str, Any]) -> str:
    """librdkafka / kcat `-F` properties text."""
    return "".join(f"{k}={v}\n" for k, v in conf.items())
