"""Provisioning's side of other apps' signals (connected in `ProvisioningConfig.ready`).

- clusters asks for a cluster's brokers to be started or removed: the lifecycle tasks;
- iam issued or revoked an API key: after the commit the cluster's brokers get the ACLs of its
  live keys first (acls), then its hosts rewrite the credentials file, so a new key's ACLs are
  in place before it can log in.
"""

from __future__ import annotations

from django.db import transaction

from acls import services as acl_services
from sharedkit import kafka_admin

from . import services, tasks


def start_provisioning(sender, cluster_id: int, **kwargs) -> None:
    tasks.cluster_provision.delay(cluster_id)


def start_deprovisioning(sender, cluster_id: int, **kwargs) -> None:
    tasks.cluster_deprovision.delay(cluster_id)


def start_restart(sender, cluster_id: int, **kwargs) -> None:
    tasks.cluster_restart_step.delay(cluster_id)


def start_scale(sender, cluster_id: int, **kwargs) -> None:
    tasks.cluster_scale_step.delay(cluster_id)


def push_credentials(sender, cluster_id: int, **kwargs) -> None:
    acl_services.cluster_sync_on_commit(cluster_id=cluster_id)
    transaction.on_commit(lambda: services.cluster_credentials_push(cluster_id=cluster_id))


def close_kafka_clients(sender=None, task=None, **kwargs) -> None:
    """Celery's task_postrun in a worker: close the Kafka clients the task opened (see
    ProvisioningConfig.ready). A task run eagerly, inside a web process, leaves that process's
    cache to its own rule."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    kafka_admin.clear_cache()
