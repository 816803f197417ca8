"""Cluster lifecycle tasks.

The control plane enqueues these after commit (clusters.services). Their bodies are the
provisioning issue's work: for now they look the cluster up and log, so they are safe to run
(and re-run) anywhere.
"""

from __future__ import annotations

import logging

from celery import shared_task

from clusters.models import Cluster

logger = logging.getLogger(__name__)

# Queues come from CELERY_TASK_ROUTES (settings): lifecycle tasks run on the control queue.


@shared_task(name="provisioning.cluster_provision", acks_late=True)
def cluster_provision(cluster_id: int) -> None:
    cluster = Cluster.objects.filter(pk=cluster_id).only("public_id", "status").first()
    if cluster is None:
        logger.info("cluster_provision: cluster %s no longer exists", cluster_id)
        return
    logger.info(
        "cluster_provision: %s is %s (placement not implemented yet)", cluster.public_id, cluster.status
    )


@shared_task(name="provisioning.cluster_deprovision", acks_late=True)
def cluster_deprovision(cluster_id: int) -> None:
    cluster = Cluster.objects.filter(pk=cluster_id).only("public_id", "status").first()
    if cluster is None:
        logger.info("cluster_deprovision: cluster %s no longer exists", cluster_id)
        return
    logger.info(
        "cluster_deprovision: %s is %s (teardown not implemented yet)", cluster.public_id, cluster.status
    )
