"""Provisioning writes: drive clusters through PROVISIONING and DELETING, converge hosts.

Two kinds of functions:
- *control* steps (`cluster_provision`, `cluster_deprovision`, `control_reconcile`) run on any
  worker of the control queue: they place brokers, hand the host work to the host, and watch
  for stuck clusters;
- *host* steps (`host_provision`, `host_deprovision`, `host_credentials_sync`,
  `host_reconcile`) run on the host's own worker (queue `host.<name>`), because they touch
  its processes and files.

A control step runs the host step inline when this worker is that host's worker (one queue
hop less, and no polling delay on the embedded filesystem transport); otherwise it sends the
host task to `host.<name>`. The host step finishes the operation (RUNNING or DELETED).
Every step is idempotent and serialised per cluster (row locks in the database, an flock on
the host), so running one twice — a retry, a reconciliation re-drive — is harmless.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from celery import current_app
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from accounts.audit import SYSTEM
from acls import services as acl_services
from clusters import selectors as cluster_selectors
from clusters import services as cluster_services
from clusters.models import Broker, BrokerStatus, Cluster, ClusterStatus, Host
from iam import selectors as iam_selectors
from iam import services as iam_services
from pki import services as pki_services
from sharedkit import coordination
from sharedkit.files import file_lock, write_if_changed

from . import brokerconf, conf, faults, placement, queues, supervisor
from .errors import PermanentError, TransientError
from .models import ClusterOperation, OperationKind, PortLease, PortPurpose
from .signals import broker_final_state
from .supervisor import BrokerPaths, BrokerStartError

logger = logging.getLogger(__name__)


# --- where am I -------------------------------------------------------------------------------
def local_host_name() -> str | None:
    """This process's host, if it is a worker consuming `host.<KASTLE_HOST_NAME>`."""
    try:
        consume = current_app.amqp.queues.consume_from or {}
    except Exception:  # not a worker
        return None
    name = conf.host_name()
    return name if f"host.{name}" in consume else None


def host_root(host: Host | str) -> Path:
    return conf.host_root(host if isinstance(host, str) else host.name)


def broker_paths(broker: Broker) -> BrokerPaths:
    return BrokerPaths.of(host_root(broker.host), broker.cluster.public_id, broker.node_id)


# --- operation leases -----------------------------------------------------------------------
def new_owner() -> str:
    return uuid.uuid4().hex


def operation_claim(*, cluster: Cluster, kind: str, owner: str) -> bool:
    """Take (or keep) the cluster's operation lease. False if another live task holds it."""
    now = timezone.now()
    with transaction.atomic():
        Cluster.objects.select_for_update().get(pk=cluster.pk)
        op, created = ClusterOperation.objects.get_or_create(
            cluster=cluster, defaults={"kind": kind, "owner": owner}
        )
        if not created:
            if op.kind != kind:
                op.kind, op.redrives, op.last_error = kind, 0, ""
            elif op.owner and op.owner != owner and op.lease_until and op.lease_until > now:
                return False
        op.owner = owner
        op.lease_until = now + timedelta(seconds=conf.operation_lease())
        op.save()
    return True


def operation_renew(*, cluster_id: int, owner: str, seconds: float | None = None) -> None:
    seconds = conf.operation_lease() if seconds is None else seconds
    ClusterOperation.objects.filter(cluster_id=cluster_id, owner=owner).update(
        lease_until=timezone.now() + timedelta(seconds=seconds), updated_at=timezone.now()
    )


def operation_note(*, cluster_id: int, error: str) -> None:
    ClusterOperation.objects.filter(cluster_id=cluster_id).update(last_error=error[:2000])


def _operation_done(cluster: Cluster) -> None:
    ClusterOperation.objects.filter(cluster=cluster).delete()


def cluster_fail(*, cluster_id: int, reason: str) -> Cluster | None:
    """PROVISIONING/DELETING -> FAILED with a reason for the tenant (no-op in other states)."""
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().filter(pk=cluster_id).first()
        if cluster is None or cluster.status not in (ClusterStatus.PROVISIONING, ClusterStatus.DELETING):
            return cluster
        cluster = cluster_services.cluster_transition(
            cluster=cluster, to=ClusterStatus.FAILED, reason=reason, actor=SYSTEM
        )
        _operation_done(cluster)
    logger.warning("cluster %s FAILED: %s", cluster.public_id, reason)
    return cluster


# --- provision --------------------------------------------------------------------------------
def cluster_provision(*, cluster_id: int, owner: str, send=None) -> str:
    """Control step: place the brokers, then start them on their hosts (inline if this is one)."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.PROVISIONING:
        return "skipped"
    if not operation_claim(cluster=cluster, kind=OperationKind.PROVISION, owner=owner):
        return "busy"
    try:
        brokers = placement.place_cluster(cluster)
    except placement.NoHostAvailable as exc:
        raise TransientError(str(exc)) from exc
    except placement.NoPortAvailable as exc:
        raise TransientError(f"No free port for the broker: {exc}.") from exc
    except placement.PlacementRefused as exc:
        raise PermanentError(str(exc)) from exc
    if cluster.plan_limits.replicated:
        coordination_ensure(cluster=cluster)
    try:
        pki_services.certificate_ensure(cluster=cluster)  # SASL_SSL clusters' certificate
    except pki_services.CaUnavailable as exc:
        raise TransientError(f"The cluster's TLS certificate cannot be issued here: {exc}.") from exc
    local = local_host_name()
    placed = Broker.objects.filter(pk__in=[b.pk for b in brokers]).select_related("host")
    hosts = {b.host.name for b in placed}
    result = "sent"
    for name in sorted(hosts):
        if name == local:
            result = host_provision(cluster_id=cluster_id, owner=owner, host_name=name)
        else:
            (send or queues.send_to_host)("provisioning.host_provision", name, cluster_id, owner)
    return result


def host_provision(*, cluster_id: int, owner: str, host_name: str) -> str:
    """Host step: render config and credentials, start brokerd, wait for health; RUNNING when all are."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.PROVISIONING:
        return "skipped"
    operation_claim(cluster=cluster, kind=OperationKind.PROVISION, owner=owner)
    brokers = list(
        Broker.objects.filter(cluster=cluster, host__name=host_name).select_related("host", "cluster")
    )
    root = host_root(host_name)
    with supervisor.cluster_lock(root, cluster.public_id):
        cluster.refresh_from_db()
        if cluster.status != ClusterStatus.PROVISIONING:
            return "skipped"
        credentials_write_locked(cluster=cluster, root=root)
        brokers_ensure_running(
            brokers=brokers, tick=lambda: operation_renew(cluster_id=cluster_id, owner=owner)
        )
    return "running" if cluster_mark_running_if_ready(cluster_id=cluster_id) else "started"


def brokers_ensure_running(*, brokers: list[Broker], tick=None) -> None:
    """`broker_ensure_running` for each broker, all at once: a replicated cluster's brokers on one
    host start side by side rather than each waiting for the previous one's health."""
    if len(brokers) <= 1:
        for broker in brokers:
            broker_ensure_running(broker=broker, tick=tick)
        return

    def one(broker: Broker) -> int:
        try:
            return broker_ensure_running(broker=broker, tick=tick)
        finally:
            db_connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=len(brokers), thread_name_prefix="broker-start") as pool:
        for future in [pool.submit(one, broker) for broker in brokers]:
            future.result()  # the first failure propagates (the task retries)


def cluster_mark_running_if_ready(*, cluster_id: int) -> bool:
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster_id)
        if cluster.status != ClusterStatus.PROVISIONING:
            return cluster.status == ClusterStatus.RUNNING
        brokers = list(cluster.brokers.select_related("host").order_by("node_id"))
        if not brokers or any(b.status != BrokerStatus.RUNNING or not b.port for b in brokers):
            return False
        cluster_services.cluster_transition(
            cluster=cluster,
            to=ClusterStatus.RUNNING,
            actor=SYSTEM,
            bootstrap_servers=_bootstrap(brokers),
        )
        _operation_done(cluster)
    logger.info("cluster %s RUNNING", cluster.public_id)
    acl_services.cluster_sync_now_or_later(cluster_id=cluster_id)  # keys issued while provisioning
    return True


def _bootstrap(brokers: list[Broker]) -> str:
    return ",".join(f"{b.host.address}:{b.port}" for b in brokers if b.host and b.port)


def bootstrap_rewrite(*, cluster_id: int) -> None:
    """The cluster's bootstrap list names each broker where it runs now (call in a transaction
    holding the cluster's row lock): a broker moved to another host, or brokers were added."""
    brokers = list(Broker.objects.filter(cluster_id=cluster_id).select_related("host").order_by("node_id"))
    Cluster.objects.filter(pk=cluster_id).update(bootstrap_servers=_bootstrap(brokers))


# --- etcd (replicated clusters) --------------------------------------------------------------
def coordination_ensure(*, cluster: Cluster) -> None:
    """The cluster's etcd user, role and prefix exist (created at its first provisioning)."""
    try:
        if coordination.cluster_access_grant(cluster.public_id):
            logger.info("cluster %s: etcd user and prefix created", cluster.public_id)
    except coordination.NotConfigured as exc:
        raise PermanentError(str(exc)) from exc
    except coordination.CoordinationError as exc:
        raise TransientError(f"The cluster's metadata store (etcd) is not answering: {exc}.") from exc


def coordination_remove(*, cluster: Cluster) -> None:
    """The cluster's etcd keys, user and role are gone (deletion)."""
    if not cluster.plan_limits.replicated or not coordination.configured():
        return
    try:
        coordination.cluster_remove(cluster.public_id)
    except coordination.CoordinationError as exc:
        raise TransientError(f"The cluster's metadata in etcd cannot be removed yet: {exc}.") from exc
    logger.info("cluster %s: etcd keys, user and role removed", cluster.public_id)


def etcd_password_path(cluster_dir: Path) -> Path:
    return cluster_dir / "etcd-password"


def inter_broker_password_path(cluster_dir: Path) -> Path:
    return cluster_dir / "inter-broker-password"


def broker_coordination(broker: Broker, paths: BrokerPaths) -> brokerconf.Coordination | None:
    cluster = broker.cluster
    if not cluster.plan_limits.replicated:
        return None
    try:
        url = coordination.cluster_url(cluster.public_id)
    except coordination.NotConfigured as exc:
        raise PermanentError(str(exc)) from exc
    inter_broker = inter_broker_password_path(paths.cluster_dir)
    if not coordination.auth_enabled():
        return brokerconf.Coordination(
            url=url, rack=broker.host.name, inter_broker_password_file=inter_broker
        )
    return brokerconf.Coordination(
        url=url,
        rack=broker.host.name,
        inter_broker_password_file=inter_broker,
        user=coordination.cluster_user(cluster.public_id),
        password_file=etcd_password_path(paths.cluster_dir),
    )


def render_config(broker: Broker, paths: BrokerPaths) -> str:
    text = brokerconf.render_toml(
        brokerconf.broker_settings(
            public_id=broker.cluster.public_id,
            plan=broker.cluster.plan_limits,
            node_id=broker.node_id,
            address=broker.host.address,
            port=broker.port,
            admin_port=broker.admin_port,
            data_dir=paths.data,
            credentials_file=paths.credentials,
            security_protocol=broker.cluster.security_protocol,
            tls_files=pki_services.tls_files(paths.cluster_dir),
            coordination=broker_coordination(broker, paths),
        )
    )
    try:
        brokerconf.validate(text)
    except ValueError as exc:  # brokerd.settings.SettingsError: our rendering is wrong
        raise PermanentError(
            f"The broker configuration is invalid ({exc}); the operators must fix it."
        ) from exc
    return text


def broker_ensure_running(*, broker: Broker, tick=None, attempts: int = 3) -> int:
    """Make this host's brokerd for `broker` run and answer /healthz; adopt it if it already does.

    Call with the cluster lock held. Returns the pid.
    """
    paths = broker_paths(broker)
    paths.root.mkdir(parents=True, exist_ok=True)
    timeout = conf.broker_start_timeout()
    pid = supervisor.running_pid(paths, hint=broker.pid)
    if pid is not None:
        write_if_changed(paths.config, render_config(broker, paths))  # applies at next start
        deadline = time.monotonic() + min(timeout, 10.0)
        while time.monotonic() < deadline:  # it may still be starting up
            if supervisor.healthz(broker.host.address, broker.admin_port):
                _broker_running(broker, pid)
                return pid
            if not supervisor.is_brokerd_for(pid, paths.config):
                break
            time.sleep(0.05)
        if supervisor.is_brokerd_for(pid, paths.config):
            logger.warning("brokerd %s of %s is unhealthy; restarting it", pid, broker)
            supervisor.stop_pid(pid, paths, timeout=5)
    last: BrokerStartError | None = None
    for _ in range(attempts):
        busy = _ports_still_held(broker)
        if busy:
            _move_ports(broker, busy)
        write_if_changed(paths.config, render_config(broker, paths))
        proc = supervisor.spawn(paths)
        Broker.objects.filter(pk=broker.pk).update(
            pid=proc.pid, status=BrokerStatus.STARTING, updated_at=timezone.now()
        )
        faults.point("provision.broker_spawned", broker.cluster.public_id)  # tests only
        try:
            pid = supervisor.wait_healthy(
                paths, proc, broker.host.address, broker.admin_port, timeout, tick=tick
            )
        except BrokerStartError as exc:
            last = exc
            logger.warning("brokerd for %s did not start: %s", broker, exc.message)
            if exc.port_in_use:
                continue  # the next attempt waits for the ports, then moves off those still held
            break
        _broker_running(broker, pid)
        logger.info("brokerd for %s started (pid %s, port %s)", broker, pid, broker.port)
        return pid
    Broker.objects.filter(pk=broker.pk).update(status=BrokerStatus.FAILED, pid=None)
    assert last is not None
    raise TransientError(f"The broker process did not start: {last.message}")


def _broker_running(broker: Broker, pid: int) -> None:
    broker.pid, broker.status = pid, BrokerStatus.RUNNING
    Broker.objects.filter(pk=broker.pk).update(
        pid=pid, status=BrokerStatus.RUNNING, updated_at=timezone.now()
    )


def _ports_still_held(broker: Broker) -> set[int]:
    """The broker's ports that stay held by some process beyond the release wait.

    The broker keeps its address whenever it can: a previous brokerd killed a moment ago may
    still be closing its listeners, so its ports are waited for before any is given up. A broker
    not yet advertised (its cluster has no bootstrap list) waits briefly: nobody knows its address."""
    ports = {p for p in (broker.port, broker.admin_port) if p}
    advertised = Cluster.objects.filter(pk=broker.cluster_id).exclude(bootstrap_servers="").exists()
    wait = conf.port_release_wait() if advertised else min(2.0, conf.port_release_wait())
    return supervisor.wait_ports_free(broker.host.address, ports, wait)


def _move_ports(broker: Broker, busy: set[int]) -> None:
    """Another process holds one of the broker's ports: lease others (and re-advertise)."""
    logger.warning("ports %s of %s are in use by another process; leasing others", sorted(busy), broker)
    taken = set(busy)
    for _ in range(20):
        placement.lease_ports(broker, broker.host, exclude=taken)
        now_busy = {
            p for p in (broker.port, broker.admin_port) if not supervisor.port_is_free(broker.host.address, p)
        }
        if not now_busy:
            break
        taken |= now_busy
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=broker.cluster_id)
        if cluster.bootstrap_servers:
            bootstrap_rewrite(cluster_id=cluster.pk)


# --- deprovision -----------------------------------------------------------------------------
def cluster_deprovision(*, cluster_id: int, owner: str, send=None) -> str:
    """Control step: stop and remove the brokers on their hosts; DELETED when none is left."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.DELETING:
        return "skipped"
    if not operation_claim(cluster=cluster, kind=OperationKind.DEPROVISION, owner=owner):
        return "busy"
    hosts = set(
        Broker.objects.filter(cluster=cluster, host__isnull=False).values_list("host__name", flat=True)
    )
    local = local_host_name()
    result = "sent"
    for name in sorted(hosts):
        host = Host.objects.get(name=name)
        if name == local:
            result = host_deprovision(cluster_id=cluster_id, owner=owner, host_name=name)
        elif not placement.host_is_live(host) and not _holds_leases(cluster, host):
            continue  # nothing left there
        elif not placement.host_is_live(host):
            raise TransientError(
                f"Host {name} is not responding, so the cluster's broker there cannot be removed yet."
            )
        else:
            (send or queues.send_to_host)("provisioning.host_deprovision", name, cluster_id, owner)
    if not hosts or all(not _holds_leases(cluster, Host.objects.get(name=n)) for n in hosts):
        result = "deleted" if cluster_mark_deleted_if_done(cluster_id=cluster_id) else result
    return result


def _holds_leases(cluster: Cluster, host: Host) -> bool:
    return PortLease.objects.filter(broker__cluster=cluster, host=host).exists()


def host_deprovision(*, cluster_id: int, owner: str, host_name: str) -> str:
    """Host step: collect final state, stop brokerd, remove data, free ports."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.DELETING:
        return "skipped"
    operation_claim(cluster=cluster, kind=OperationKind.DEPROVISION, owner=owner)
    root = host_root(host_name)
    brokers = list(
        Broker.objects.filter(cluster=cluster, host__name=host_name).select_related("host", "cluster")
    )
    with supervisor.cluster_lock(root, cluster.public_id):
        for broker in brokers:
            broker_teardown(broker=broker)
        supervisor.remove_tree(supervisor.cluster_dir(root, cluster.public_id))
    return "deleted" if cluster_mark_deleted_if_done(cluster_id=cluster_id) else "stopped"


def broker_teardown(*, broker: Broker) -> None:
    paths = broker_paths(broker)
    pid = supervisor.running_pid(paths, hint=broker.pid)
    metrics = None
    if pid and broker.admin_port:
        metrics = supervisor.fetch_metrics(broker.host.address, broker.admin_port)
    if pid:
        supervisor.stop_pid(pid, paths, timeout=10)
    faults.point("deprovision.broker_stopped", broker.cluster.public_id)  # tests only
    # Final state: the last /metrics scrape and the data dir (usage journal) before removal.
    broker_final_state.send(sender=Broker, broker=broker, metrics=metrics, data_dir=paths.data)
    supervisor.remove_tree(paths.root)
    placement.release_ports(broker)
    Broker.objects.filter(pk=broker.pk).update(status=BrokerStatus.STOPPED, pid=None)


def cluster_mark_deleted_if_done(*, cluster_id: int) -> bool:
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster_id)
        if cluster.status != ClusterStatus.DELETING:
            return cluster.status == ClusterStatus.DELETED
        if PortLease.objects.filter(broker__cluster=cluster).exists():
            return False
    coordination_remove(cluster=cluster)  # every broker is stopped: nothing re-registers
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster_id)
        if cluster.status != ClusterStatus.DELETING:
            return cluster.status == ClusterStatus.DELETED
        iam_services.api_keys_revoke_all(cluster=cluster)
        cluster_services.cluster_transition(cluster=cluster, to=ClusterStatus.DELETED, actor=SYSTEM)
        _operation_done(cluster)
    logger.info("cluster %s DELETED", cluster.public_id)
    return True


# --- rolling restart ---------------------------------------------------------------------------
def cluster_restart_step(*, cluster_id: int, send=None) -> str:
    """Control step of a rolling restart: restart the next broker on its host (inline if local).

    The host step queues the next control step once its broker is back in sync, so the brokers
    restart strictly one after another; the last step marks the restart done."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or (cluster.restart or {}).get("state") != "running":
        return "skipped"
    if cluster.status != ClusterStatus.RUNNING:
        cluster_services.cluster_restart_progress(
            cluster_id=cluster_id, state="failed", error=f"The cluster became {cluster.status}."
        )
        return "failed"
    restart = cluster.restart
    pending = [n for n in restart.get("brokers", []) if n not in restart.get("restarted", [])]
    if not pending:
        cluster_services.cluster_restart_progress(cluster_id=cluster_id, state="done")
        logger.info("cluster %s: rolling restart done", cluster.public_id)
        return "done"
    broker = Broker.objects.select_related("host").filter(cluster=cluster, node_id=pending[0]).first()
    if broker is None or broker.host is None:
        cluster_services.cluster_restart_progress(
            cluster_id=cluster_id, state="failed", error=f"Broker {pending[0]} has no host."
        )
        return "failed"
    cluster_services.cluster_restart_progress(cluster_id=cluster_id, current=broker.node_id)
    host, node_id = broker.host.name, broker.node_id
    if host == local_host_name():
        return host_broker_restart(cluster_id=cluster_id, host_name=host, node_id=node_id)
    (send or queues.send_to_host)("provisioning.host_broker_restart", host, cluster_id, node_id)
    return "sent"


def host_broker_restart(*, cluster_id: int, host_name: str, node_id: int, send_next=None) -> str:
    """Host step of a rolling restart: stop the broker cleanly (SIGTERM: it hands its leaderships
    over), start it again on its address, wait until every partition is back in full ISR, then
    queue the next control step. Idempotent: a broker already restarted is skipped."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    restart = (cluster.restart or {}) if cluster is not None else {}
    if cluster is None or restart.get("state") != "running" or node_id in restart.get("restarted", []):
        return "skipped"
    broker = Broker.objects.select_related("host", "cluster").get(cluster=cluster, node_id=node_id)
    root = host_root(host_name)
    took: dict[str, float] = {}  # seconds per step, for operators (the progress shows them)
    try:
        with supervisor.cluster_lock(root, cluster.public_id):  # reconciliation keeps off meanwhile
            t0 = time.monotonic()
            supervisor.stop_broker(broker_paths(broker), timeout=30)
            t1 = time.monotonic()
            broker.refresh_from_db()
            broker_ensure_running(broker=broker)
            t2 = time.monotonic()
        _wait_in_sync(cluster, node_id)
        took = {"stop": t1 - t0, "start": t2 - t1, "in_sync": time.monotonic() - t2}
    except (TransientError, PermanentError, BrokerStartError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        cluster_services.cluster_restart_progress(
            cluster_id=cluster_id, state="failed", error=f"Broker {node_id}: {message}"
        )
        logger.warning("cluster %s: rolling restart stopped at broker %s: %s", cluster.public_id, node_id,
                       message)  # fmt: skip
        return "failed"
    steps = {**restart.get("steps", {}), str(node_id): {k: round(v, 2) for k, v in took.items()}}
    progress = cluster_services.cluster_restart_progress(
        cluster_id=cluster_id, restarted=[*restart.get("restarted", []), node_id], current=None, steps=steps
    )
    logger.info("cluster %s: broker %s restarted (%s)", cluster.public_id, node_id, progress)
    (send_next or queues.send_lifecycle)("provisioning.cluster_restart_step", cluster_id)
    return "restarted"


def _wait_in_sync(cluster: Cluster, node_id: int) -> None:
    """Until every broker is up and no partition is under-replicated (replicated clusters)."""
    if not cluster.plan_limits.replicated:
        return
    deadline = time.monotonic() + conf.restart_in_sync_timeout()
    while True:
        cluster.refresh_from_db()
        health = cluster_selectors.cluster_health(cluster=cluster)
        if (
            health is not None
            and health.brokers_online == health.brokers
            and not (health.under_replicated_partitions or health.offline_partitions)
        ):
            return
        if time.monotonic() >= deadline:
            summary = health.summary if health is not None else "the cluster is not running"
            raise TransientError(
                f"its partitions were not back in full ISR within {conf.restart_in_sync_timeout():.0f} s "
                f"({summary})"
            )
        time.sleep(0.2)


# --- credentials ------------------------------------------------------------------------------
def cluster_credentials_push(*, cluster_id: int) -> None:
    """After a key is created or revoked (on commit): rewrite the file on each of the cluster's hosts."""
    names = (
        PortLease.objects.filter(broker__cluster_id=cluster_id, purpose=PortPurpose.CLIENT)
        .values_list("host__name", flat=True)
        .distinct()
    )
    for name in names:
        queues.send_to_host("provisioning.credentials_sync", name, cluster_id)


def credentials_write_locked(*, cluster: Cluster, root: Path) -> bool:
    """Write the cluster's credentials file on this host (caller holds the cluster lock)."""
    users = iam_selectors.cluster_credential_entries(cluster=cluster)
    path = supervisor.cluster_dir(root, cluster.public_id) / "credentials.json"
    faults.point("credentials.before_write", cluster.public_id)  # tests only
    changed = brokerconf.write_credentials(path, users)
    # the SASL_SSL certificate (issued or renewed by the control step) beside it
    changed |= pki_services.broker_tls_write(cluster=cluster, cluster_dir=path.parent)
    if cluster.plan_limits.replicated:
        # the password followers log in to their leaders with (this cluster's own, mode 0600)
        changed |= write_if_changed(inter_broker_password_path(path.parent), cluster.internal_password())
    if cluster.plan_limits.replicated and coordination.configured() and coordination.auth_enabled():
        # this cluster's own etcd password only (mode 0600), never the platform's root password
        changed |= write_if_changed(
            etcd_password_path(path.parent), coordination.cluster_password(cluster.public_id)
        )
    return changed


def host_credentials_sync(*, cluster_id: int, host_name: str) -> bool:
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status not in (
        ClusterStatus.PROVISIONING,
        ClusterStatus.RUNNING,
        ClusterStatus.FAILED,
    ):
        return False
    root = host_root(host_name)
    if not supervisor.cluster_dir(root, cluster.public_id).is_dir():
        return False  # not started here yet: provisioning writes the file
    with supervisor.cluster_lock(root, cluster.public_id):
        cluster.refresh_from_db()
        if cluster.status == ClusterStatus.DELETED:
            return False
        return credentials_write_locked(cluster=cluster, root=root)


# --- reconciliation: control -------------------------------------------------------------------
def control_reconcile(*, send_lifecycle=None, send_host=None) -> dict[str, list[str]]:
    """Drive clusters nobody is driving; fan host reconciliation out to live hosts.

    `send_lifecycle(task name, cluster id)` queues a lifecycle task (by name: tasks.py imports
    this module); `send_host(host name)` a host's reconciliation."""
    now = timezone.now()
    report: dict[str, list[str]] = {"redriven": [], "failed": [], "hosts": []}
    stuck = Cluster.objects.filter(status__in=[ClusterStatus.PROVISIONING, ClusterStatus.DELETING])
    for cluster in stuck:
        provisioning = cluster.status == ClusterStatus.PROVISIONING
        kind = OperationKind.PROVISION if provisioning else OperationKind.DEPROVISION
        op = ClusterOperation.objects.filter(cluster=cluster).first()
        if op is not None and op.kind == kind:
            if op.lease_until and op.lease_until > now:
                continue  # someone is on it
            if op.lease_until is None and op.owner == "" and op.updated_at > now - _grace():
                continue  # just re-driven; its task is queued
        elif cluster.status_changed_at > now - _grace():
            continue  # its task is probably still queued
        redrives = op.redrives if (op is not None and op.kind == kind) else 0
        if redrives >= conf.MAX_REDRIVES:
            verb = "Provisioning" if kind == OperationKind.PROVISION else "Deletion"
            detail = f" Last error: {op.last_error}" if op is not None and op.last_error else ""
            cluster_fail(
                cluster_id=cluster.pk,
                reason=f"{verb} did not finish: it was interrupted {redrives} times (the worker handling it "
                f"stopped).{detail}",
            )
            report["failed"].append(cluster.public_id)
            continue
        with transaction.atomic():
            locked, _ = ClusterOperation.objects.select_for_update().get_or_create(
                cluster=cluster, defaults={"kind": kind}
            )
            if locked.kind != kind:
                locked.kind, locked.redrives = kind, 0
            locked.redrives += 1
            locked.owner, locked.lease_until = "", None
            locked.save()
        task = "provisioning.cluster_provision" if provisioning else "provisioning.cluster_deprovision"
        logger.warning("reconcile: %s of %s was left unfinished; driving it again", kind, cluster.public_id)
        (send_lifecycle or queues.send_lifecycle)(task, cluster.pk)
        report["redriven"].append(cluster.public_id)
    report["certificates"] = pki_services.certificates_renew_due()  # TLS renewal
    local = local_host_name()
    for host in cluster_selectors.live_hosts():
        report["hosts"].append(host.name)
        if host.name == local:
            host_reconcile(host_name=host.name)
        else:
            (send_host or _send_reconcile)(host.name)
    return report


def _grace() -> timedelta:
    return timedelta(seconds=conf.unclaimed_grace())


def _send_reconcile(host_name: str) -> None:
    queues.host_reconcile_send(host_name, expires=conf.reconcile_interval() * 3)


# --- reconciliation: host ----------------------------------------------------------------------
def host_reconcile(*, host_name: str) -> dict[str, list[str]]:
    """Converge this host's brokerd processes and directories to the database.

    - RUNNING cluster: its brokerd runs (restarted if it died; adopted if it already runs,
      checked by pidfile and command line) and its credentials file is current;
    - FAILED cluster: its brokerd is stopped (data kept for a retry);
    - PROVISIONING / DELETING: left to the lifecycle task (control_reconcile re-drives it);
    - anything under this host's root with no cluster behind it: stopped and removed.
    """
    report: dict[str, list[str]] = {"started": [], "adopted": [], "stopped": [], "removed": [], "synced": []}
    host = Host.objects.filter(name=host_name).first()
    if host is None:
        return report
    root = host_root(host_name)
    with file_lock(root / ".reconcile.lock", blocking=False) as acquired:
        if not acquired:
            return report
        brokers = list(
            Broker.objects.filter(host=host, port_leases__purpose=PortPurpose.CLIENT)
            .select_related("cluster", "host")
            .distinct()
        )
        for broker in brokers:
            try:
                _reconcile_broker(broker, root, report)
            except Exception:
                logger.exception("reconcile: broker %s", broker)
        _remove_orphans(host, root, report)
    if any(report.values()):
        logger.info("reconcile %s: %s", host_name, {k: v for k, v in report.items() if v})
    return report


def _reconcile_broker(broker: Broker, root: Path, report: dict[str, list[str]]) -> None:
    cluster = broker.cluster
    paths = broker_paths(broker)
    label = f"{cluster.public_id}/{broker.node_id}"
    if cluster.status == ClusterStatus.RUNNING:
        with supervisor.cluster_lock(root, cluster.public_id, blocking=False) as acquired:
            if not acquired:
                return
            if credentials_write_locked(cluster=cluster, root=root):
                report["synced"].append(cluster.public_id)
            pid = supervisor.running_pid(paths, hint=broker.pid)
            if pid is not None and broker.pid == pid and broker.status == BrokerStatus.RUNNING:
                return
            new_pid = broker_ensure_running(broker=broker)
            report["adopted" if new_pid == pid else "started"].append(label)
    elif cluster.status in (ClusterStatus.FAILED, ClusterStatus.DELETED):
        with supervisor.cluster_lock(root, cluster.public_id, blocking=False) as acquired:
            if acquired and supervisor.stop_broker(paths):
                Broker.objects.filter(pk=broker.pk).update(status=BrokerStatus.STOPPED, pid=None)
                report["stopped"].append(label)


def _remove_orphans(host: Host, root: Path, report: dict[str, list[str]]) -> None:
    """Stop and remove what no lease on this host asks for: a deleted cluster's brokers, and a
    broker replaced on another host while this one was gone (its copy here is stale)."""

    def leases(public_id: str):
        return PortLease.objects.filter(broker__cluster__public_id=public_id, host=host).exclude(
            broker__cluster__status=ClusterStatus.DELETED
        )

    def wanted(public_id: str) -> bool:
        return leases(public_id).exists()

    def broker_wanted(public_id: str, broker_dir: str) -> bool:
        node = broker_dir.removeprefix("broker-")
        return node.isdigit() and leases(public_id).filter(broker__node_id=int(node)).exists()

    for config, pid in supervisor.brokerd_processes(root).items():
        public_id = config.parent.parent.name
        if not broker_wanted(public_id, config.parent.name):
            with supervisor.cluster_lock(root, public_id, blocking=False) as acquired:
                paths = BrokerPaths(config.parent)
                if (
                    acquired
                    and not broker_wanted(public_id, config.parent.name)
                    and supervisor.stop_pid(pid, paths)
                ):
                    report["stopped"].append(f"{public_id} (orphan pid {pid})")
    clusters = supervisor.clusters_root(root)
    if not clusters.is_dir():
        return
    for entry in clusters.iterdir():
        if not entry.is_dir():
            continue
        try:
            if time.time() - entry.stat().st_mtime < 2.0:
                continue  # just created: its lease may not be visible to us yet
        except FileNotFoundError:
            continue
        if wanted(entry.name):
            _remove_replaced(entry, report, lambda d, c=entry.name: broker_wanted(c, d), root)
            continue
        with supervisor.cluster_lock(root, entry.name, blocking=False) as acquired:
            if not acquired or wanted(entry.name):
                continue
            for sub in entry.glob("broker-*"):
                supervisor.stop_broker(BrokerPaths(sub))
            supervisor.remove_tree(entry)
            report["removed"].append(entry.name)


def _remove_replaced(cluster_dir: Path, report: dict[str, list[str]], wanted, root: Path) -> None:
    """Broker directories of a cluster still served here whose broker now lives on another host."""
    stale = [sub for sub in cluster_dir.glob("broker-*") if sub.is_dir() and not wanted(sub.name)]
    if not stale:
        return
    with supervisor.cluster_lock(root, cluster_dir.name, blocking=False) as acquired:
        if not acquired:
            return
        for sub in stale:
            if wanted(sub.name):
                continue
            supervisor.stop_broker(BrokerPaths(sub))
            supervisor.remove_tree(sub)
            report["removed"].append(f"{cluster_dir.name}/{sub.name}")


def local_brokers_stop() -> list[int]:
    """`manage.py up` shutdown hook: stop this host's brokers (reconciliation restarts them)."""
    pids = supervisor.stop_all(conf.host_root())
    if pids:
        logger.info("stopped %d local broker(s): %s", len(pids), pids)
    return pids
