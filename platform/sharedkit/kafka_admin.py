"""The control plane's Kafka admin client for a cluster: confluent-kafka with the internal credential.

The broker is the source of truth for topics, configs, groups and offsets; the REST API reads
and writes them through the Kafka protocol, exactly as a tenant's AdminClient would. Clients
are cached per cluster and bootstrap address (librdkafka handles are thread-safe and keep
their connections), so a REST call does not pay a SASL handshake each time.

A cluster here is anything with a cluster's connection attributes (`KafkaCluster`:
`clusters.models.Cluster` is one), so this module knows no app.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from controlplane.errors import Conflict, ServiceError

RUNNING = "RUNNING"

REQUEST_TIMEOUT_S = 10.0
_CACHE_SIZE = 64
#: An idle client is dropped after this long: a deleted cluster's port may serve another cluster
#: later, and a forgotten client would keep reconnecting to it.
_CACHE_IDLE_S = 60.0
#: (cluster public id, bootstrap servers, kind) -> (client, last used). Every Kafka client the
#: control plane keeps (the AdminClient, the portal's producer) lives here under one rule: closed
#: when its cluster stops running (`forget`, on every save of a cluster that is not RUNNING), and
#: swept when idle.
_cache: OrderedDict[tuple[str, str, str], tuple[Any, float]] = OrderedDict()
_lock = threading.Lock()


class KafkaCluster(Protocol):
    """What the control plane needs to reach a cluster's brokers as its internal user."""

    public_id: str
    status: str
    bootstrap_servers: str
    security_protocol: str

    @property
    def internal_username(self) -> str: ...

    def internal_password(self) -> str: ...

    def ca_bundle(self) -> str | None:
        """The PEM bundle its brokers' certificates chain to (SASL_SSL), None before it is issued."""
        ...


class ClusterNotRunning(Conflict):
    code = "cluster_not_running"

    def __init__(self, cluster: KafkaCluster) -> None:
        super().__init__(
            f"Cluster {cluster.public_id} is {cluster.status}; "
            "its topics can be managed only while it is RUNNING.",
            details={"status": cluster.status},
        )


class ClusterUnavailable(ServiceError):
    """The cluster's brokers did not answer (503: try again shortly)."""

    status_code = 503
    code = "cluster_unavailable"


def client_config(cluster: KafkaCluster) -> dict[str, Any]:
    conf = {
        "bootstrap.servers": cluster.bootstrap_servers,
        "security.protocol": cluster.security_protocol or "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": cluster.internal_username,
        "sasl.password": cluster.internal_password(),
        "client.id": "kastle-control-plane",
        "socket.timeout.ms": int(REQUEST_TIMEOUT_S * 1000),
        "socket.connection.setup.timeout.ms": int(REQUEST_TIMEOUT_S * 1000),
        "reconnect.backoff.max.ms": 5000,
    }
    if conf["security.protocol"] == "SASL_SSL":  # verify the platform CA and the host name
        conf["ssl.ca.pem"] = cluster.ca_bundle() or ""
    return conf


def admin_client(cluster: KafkaCluster) -> AdminClient:
    """A cached AdminClient for a RUNNING cluster (409 otherwise)."""
    return cached_client(cluster, "admin", lambda: AdminClient(client_config(cluster)))


def cached_client(cluster: KafkaCluster, kind: str, make: Callable[[], Any]) -> Any:
    """The cluster's cached client of `kind`, made by `make()` on first use (409 unless RUNNING)."""
    if cluster.status != RUNNING or not cluster.bootstrap_servers:
        forget(cluster)
        raise ClusterNotRunning(cluster)
    key = (cluster.public_id, cluster.bootstrap_servers, kind)
    now = time.monotonic()
    dropped = []
    with _lock:
        for other, (_, used) in list(_cache.items()):
            moved = other[0] == key[0] and other[1] != key[1]  # the cluster moved to other ports
            if other != key and (moved or now - used > _CACHE_IDLE_S):
                dropped.append(_cache.pop(other)[0])
        entry = _cache.get(key)
        client = entry[0] if entry is not None else make()
        _start_sweeper()
        _cache[key] = (client, now)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            dropped.append(_cache.popitem(last=False)[1][0])
    _close_all(dropped)
    return client


def _close_all(clients: list[Any]) -> None:
    """Close dropped clients (outside the lock). A producer is closed explicitly; an AdminClient has
    no close(): its librdkafka handle is destroyed, with its connections, with the last reference."""
    for client in clients:
        close = getattr(client, "close", None)
        if close is None:
            continue
        try:
            client.purge()  # nothing is in flight (the portal flushes each message); never wait
            close()
        except Exception:  # a client of a cluster that is gone: closing must not raise
            continue


_sweeper: threading.Thread | None = None


def _start_sweeper() -> None:
    """Drop idle clients in the background too (call with `_lock` held): a client whose cluster
    was deleted would otherwise reconnect to its old port until the next `admin_client` call."""
    global _sweeper
    if _sweeper is None or not _sweeper.is_alive():
        _sweeper = threading.Thread(target=_sweep_forever, name="kafka-admin-sweeper", daemon=True)
        _sweeper.start()


def _sweep_forever() -> None:
    while True:
        time.sleep(_CACHE_IDLE_S / 4)
        sweep_idle()


def sweep_idle(now: float | None = None) -> int:
    """Drop clients idle longer than `_CACHE_IDLE_S`; return how many were dropped."""
    now = time.monotonic() if now is None else now
    with _lock:
        stale = [k for k, (_, used) in _cache.items() if now - used > _CACHE_IDLE_S]
        dropped = [_cache.pop(key)[0] for key in stale]
    _close_all(dropped)
    return len(stale)


#: Other per-cluster caches of Kafka clients (the schema registry's log readers and writers) follow
#: the same rule: `forget(cluster)` calls each hook with the cluster's public id.
_forget_hooks: list[Callable[[str], None]] = []


def on_forget(hook: Callable[[str], None]) -> None:
    """Call `hook(public_id)` whenever a cluster's clients are closed here (see `forget`)."""
    if hook not in _forget_hooks:
        _forget_hooks.append(hook)


def forget(cluster: KafkaCluster) -> int:
    """Close every cached client of `cluster` (it stopped running, or is being deleted); how many."""
    with _lock:
        dropped = [_cache.pop(key)[0] for key in [k for k in _cache if k[0] == cluster.public_id]]
    _close_all(dropped)
    for hook in list(_forget_hooks):
        hook(cluster.public_id)
    return len(dropped)


def cached_kinds(cluster: KafkaCluster) -> list[str]:
    """The kinds of client the cache holds for `cluster` (e.g. ["admin", "portal-producer/10"])."""
    with _lock:
        return sorted(k[2] for k in _cache if k[0] == cluster.public_id)


def forget_unless_running(sender, instance: KafkaCluster, **kwargs) -> None:
    """post_save of a cluster: one that is not RUNNING (deleting, deleted, failed) keeps no client,
    in whichever process saved it (the web process on delete, the worker when it is DELETED)."""
    if instance.status != RUNNING:
        forget(instance)


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


TRANSPORT_ERRORS = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_CONTROLLER,
}


def unavailable(cluster: KafkaCluster, err: KafkaError | None = None) -> ClusterUnavailable:
    detail = f" ({err.str()})" if err is not None else ""
    return ClusterUnavailable(
        f"Cluster {cluster.public_id} did not answer{detail}; try again in a few seconds.",
        details={"kafka_error": err.name() if err is not None else "timeout"},
    )


def result(cluster: KafkaCluster, future, timeout: float = REQUEST_TIMEOUT_S + 5):
    """Wait for an admin future; connection trouble becomes 503, other Kafka errors propagate."""
    try:
        return future.result(timeout=timeout)
    except KafkaException as exc:
        err = kafka_error(exc)
        if err is not None and err.code() in TRANSPORT_ERRORS:
            raise unavailable(cluster, err) from exc
        raise
    except TimeoutError as exc:  # concurrent.futures.TimeoutError
        raise unavailable(cluster) from exc


def clear_cache() -> None:
    with _lock:
        dropped = [client for client, _ in _cache.values()]
        _cache.clear()
    _close_all(dropped)
