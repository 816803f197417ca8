"""Provisioning tasks. Each takes ids, refetches, calls one service, and is safe to run twice.

Control queue (`settings.CELERY_DEFAULT_QUEUE`):
  provisioning.cluster_provision(cluster_id)     place, then start on the host (see services)
  provisioning.cluster_deprovision(cluster_id)   stop, collect, remove, free ports, DELETED
  provisioning.reconcile()                       beat, every KASTLE_RECONCILE_INTERVAL seconds;
                                                 also replaces the brokers of lost hosts (replacement)
  provisioning.cluster_restart_step(cluster_id)  the next broker of a rolling restart
  provisioning.cluster_scale_step(cluster_id)    one step of a growing cluster (queues the next)
Host queue `host.<name>` (first argument: the host's name):
  provisioning.host_provision(host, cluster_id, owner)
  provisioning.host_deprovision(host, cluster_id, owner)
  provisioning.credentials_sync(host, cluster_id)
  provisioning.host_broker_restart(host, cluster_id, node_id)
  provisioning.host_reconcile(host)

Transient errors are retried with exponential backoff; when retries are exhausted the cluster
becomes FAILED with a reason for the tenant. A worker killed mid-task is covered by the
operation lease and `provisioning.reconcile`, not by Celery redelivery.
"""

from __future__ import annotations

import logging
import threading

from celery import current_app, shared_task
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from clusters.models import Cluster
from sharedkit.retry import backoff

from . import conf, placement, replacement, scaling, services, supervisor
from .errors import PermanentError, TransientError
from .queues import host_queue, host_reconcile_send

logger = logging.getLogger(__name__)

#: Lifecycle tasks run on the control queue (settings.CELERY_TASK_ROUTES); host-specific work goes to
#: `host.<name>` queues, chosen per call by `send_to_host`.
LIFECYCLE_QUEUE = settings.CELERY_DEFAULT_QUEUE
MAX_RETRIES = 5
TRANSIENT = (TransientError, DatabaseError, TimeoutError, OSError)
# Retries wait `sharedkit.retry.backoff`: 1, 2, 4, 8, 16 s, about half a minute in all before a
# cluster is FAILED.


def _log_start(what: str, cluster_id: int) -> None:
    row = Cluster.objects.filter(pk=cluster_id).values_list("public_id", "status").first()
    if row is None:
        logger.info("%s: cluster %s no longer exists", what, cluster_id)
    else:
        logger.info("%s: %s is %s", what, *row)


def _run(task, cluster_id: int, owner: str, fn, *, what: str, retry_options: dict | None = None):
    try:
        return fn()
    except PermanentError as exc:
        services.cluster_fail(cluster_id=cluster_id, reason=str(exc))
        return "failed"
    except TRANSIENT as exc:
        reason = str(exc) or exc.__class__.__name__
        services.operation_note(cluster_id=cluster_id, error=reason)
        attempts = task.request.retries + 1
        if task.request.called_directly or task.request.retries >= task.max_retries:
            services.cluster_fail(
                cluster_id=cluster_id, reason=f"{reason} (gave up {what} after {attempts} attempts)"
            )
            return "failed"
        countdown = backoff(task.request.retries)
        services.operation_renew(
            cluster_id=cluster_id, owner=owner, seconds=countdown + conf.operation_lease()
        )
        logger.warning("%s of cluster %s: %s; retrying in %.0fs", what, cluster_id, reason, countdown)
        raise task.retry(exc=exc, countdown=countdown, **(retry_options or {})) from exc
    except Exception:
        logger.exception("%s of cluster %s failed unexpectedly", what, cluster_id)
        services.cluster_fail(
            cluster_id=cluster_id,
            reason=f"An internal error stopped the {what}; the operators have the details in the logs.",
        )
        return "failed"


def _run_lifecycle(task, name: str, cluster_id: int, service, *, what: str) -> str:
    """A control-queue lifecycle task: `service(cluster_id=, owner=)` under the task's id as owner."""
    _log_start(name, cluster_id)
    owner = task.request.id or services.new_owner()
    return _run(task, cluster_id, owner, lambda: service(cluster_id=cluster_id, owner=owner), what=what)


def _run_on_host(task, name: str, host_name: str, cluster_id: int, owner: str, service, *, what: str) -> str:
    """A host-queue task: `service(cluster_id=, owner=, host_name=)` here, retried on the same host."""
    if not _is_local(host_name, name):
        return "misrouted"
    return _run(
        task,
        cluster_id,
        owner,
        lambda: service(cluster_id=cluster_id, owner=owner, host_name=host_name),
        what=what,
        retry_options={"queue": host_queue(host_name)},
    )


@shared_task(
    bind=True,
    name="provisioning.cluster_provision",
    acks_late=True,
    max_retries=MAX_RETRIES,
)
def cluster_provision(self, cluster_id: int) -> str:
    return _run_lifecycle(
        self, "cluster_provision", cluster_id, services.cluster_provision, what="provisioning"
    )


@shared_task(
    bind=True,
    name="provisioning.cluster_deprovision",
    acks_late=True,
    max_retries=MAX_RETRIES,
)
def cluster_deprovision(self, cluster_id: int) -> str:
    return _run_lifecycle(
        self, "cluster_deprovision", cluster_id, services.cluster_deprovision, what="deletion"
    )


@shared_task(bind=True, name="provisioning.host_provision", acks_late=True, max_retries=MAX_RETRIES)
def host_provision(self, host_name: str, cluster_id: int, owner: str) -> str:
    return _run_on_host(
        self, "host_provision", host_name, cluster_id, owner, services.host_provision, what="provisioning"
    )


@shared_task(bind=True, name="provisioning.host_deprovision", acks_late=True, max_retries=MAX_RETRIES)
def host_deprovision(self, host_name: str, cluster_id: int, owner: str) -> str:
    return _run_on_host(
        self, "host_deprovision", host_name, cluster_id, owner, services.host_deprovision, what="deletion"
    )


@shared_task(name="provisioning.cluster_restart_step", acks_late=True, ignore_result=True)
def cluster_restart_step(cluster_id: int) -> str:
    return services.cluster_restart_step(cluster_id=cluster_id)


@shared_task(name="provisioning.cluster_scale_step", acks_late=True, ignore_result=True)
def cluster_scale_step(cluster_id: int) -> str:
    return scaling.cluster_scale_step(cluster_id=cluster_id)


@shared_task(name="provisioning.host_broker_restart", acks_late=True, ignore_result=True)
def host_broker_restart(host_name: str, cluster_id: int, node_id: int) -> str:
    if not _is_local(host_name, "host_broker_restart"):
        return "misrouted"
    return services.host_broker_restart(cluster_id=cluster_id, host_name=host_name, node_id=node_id)


@shared_task(bind=True, name="provisioning.credentials_sync", acks_late=True, max_retries=MAX_RETRIES)
def credentials_sync(self, host_name: str, cluster_id: int) -> bool:
    """Rewrite a cluster's credentials file on this host (reconciliation also repairs it)."""
    if not _is_local(host_name, "credentials_sync"):
        return False
    try:
        return services.host_credentials_sync(cluster_id=cluster_id, host_name=host_name)
    except TRANSIENT as exc:
        countdown = backoff(self.request.retries) / 4
        raise self.retry(exc=exc, countdown=countdown, queue=host_queue(host_name)) from exc


@shared_task(name="provisioning.host_reconcile", acks_late=True, ignore_result=True)
def host_reconcile(host_name: str) -> dict:
    if not _is_local(host_name, "host_reconcile"):
        return {}
    return services.host_reconcile(host_name=host_name)


@shared_task(name="provisioning.reconcile", acks_late=True, ignore_result=True)
def reconcile() -> dict:
    report = services.control_reconcile()
    report["replacement"] = replacement.brokers_replace_lost()
    report["scales_redriven"] = scaling.scales_redrive()
    return report


def _is_local(host_name: str, what: str) -> bool:
    if host_name == conf.host_name():
        return True
    logger.error(
        "%s for host %s reached a worker of host %s; check the worker's -Q and KASTLE_HOST_NAME",
        what,
        host_name,
        conf.host_name(),
    )
    return False


# --- host registration and heartbeat (the host's worker) ----------------------------------------
class Heartbeat(threading.Thread):
    """Registers this host, then keeps its heartbeat fresh (re-registering if its row vanished)."""

    def __init__(self, name: str) -> None:
        super().__init__(name=f"kastle-heartbeat-{name}", daemon=True)
        self.host_name = name
        self.stopping = threading.Event()
        self.registered = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                close_old_connections()
                if not self.registered.is_set() or not placement.host_heartbeat(self.host_name):
                    host = placement.host_register_local()
                    if not self.registered.is_set():
                        logger.info("host %s registered: %s", host.name, host)
                        self.registered.set()
                        # Adopt or restart this host's brokers now, not at the next beat.
                        host_reconcile_send(host.name)
            except Exception:
                logger.exception("host %s heartbeat failed", self.host_name)
            self.stopping.wait(conf.heartbeat_interval())
        close_old_connections()


_heartbeat: Heartbeat | None = None


@worker_ready.connect
def _register_host(sender=None, **kwargs) -> None:
    global _heartbeat
    app = getattr(sender, "app", None) or current_app
    consume = set(app.amqp.queues.consume_from or {})
    name = conf.host_name()
    if host_queue(name) not in consume:
        return  # a control-plane-only worker
    _heartbeat = Heartbeat(name)
    _heartbeat.start()
    supervisor.forkserver_start(conf.host_root(name))  # for a pool that runs tasks in this process


@worker_process_init.connect
def _warm_forkserver(**kwargs) -> None:
    """Each pool process of a host's worker starts its brokerd fork server now, so that the first
    broker it starts is forked rather than paying for an interpreter and brokerd's imports."""
    if services.local_host_name() is not None:
        supervisor.forkserver_start(conf.host_root())


@worker_process_shutdown.connect
def _stop_pool_forkservers(**kwargs) -> None:
    supervisor.forkserver_stop_all()


@worker_shutdown.connect
def _stop_heartbeat(**kwargs) -> None:
    supervisor.forkserver_stop_all()
    if _heartbeat is not None:
        _heartbeat.stopping.set()
