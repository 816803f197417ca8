"""Provisioning's side of other apps' signals (connected in `ProvisioningConfig.ready`).

- clusters asks for a cluster's brokers to be started or removed: the lifecycle tasks;
- iam issued or revoked an API key: after the commit the cluster's brokers get the ACLs of its
  live keys first (acls), then its hosts rewrite the credentials file, so a new key's ACLs are
  in place before it can log in.
"""

from __future__ import annotations

from django.db import transaction

from acls import services as acl_services

from . import services, tasks


def start_provisioning(sender, cluster_id: int, **kwargs) -> None:
    tasks.cluster_provision.delay(cluster_id)


def start_deprovisioning(sender, cluster_id: int, **kwargs) -> None:
    tasks.cluster_deprovision.delay(cluster_id)


def push_credentials(sender, cluster_id: int, **kwargs) -> None:
    acl_services.cluster_sync_on_commit(cluster_id=cluster_id)
    transaction.on_commit(lambda: services.cluster_credentials_push(cluster_id=cluster_id))
