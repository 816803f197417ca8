"""ACL tasks (control queue).

acls.cluster_sync(cluster_id)   converge one cluster's ACLs (after a key is issued or revoked,
                                when the cluster becomes RUNNING)
acls.reconcile()                beat: a cluster_sync for every RUNNING cluster
"""

from __future__ import annotations

import logging

from celery import shared_task

from clusters.models import Cluster, ClusterStatus
from controlplane.errors import Conflict
from sharedkit.kafka_admin import ClusterUnavailable
from sharedkit.retry import backoff

from . import services

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="acls.cluster_sync", acks_late=True, max_retries=5)
def cluster_sync(self, cluster_id: int) -> dict | str:
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.status != ClusterStatus.RUNNING:
        return "skipped"  # a cluster becoming RUNNING syncs then
    try:
        return services.cluster_sync(cluster=cluster)
    except ClusterUnavailable as exc:
        if self.request.called_directly:
            raise
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    except Conflict as exc:  # no authorizer on these brokers (yet), or not RUNNING any more
        logger.warning("acls %s: %s", cluster.public_id, exc.message)
        return "skipped"


@shared_task(name="acls.reconcile", acks_late=True, ignore_result=True)
def reconcile() -> list[str]:
    ids = list(Cluster.objects.filter(status=ClusterStatus.RUNNING).values_list("pk", flat=True))
    for cluster_id in ids:
        cluster_sync.apply_async((cluster_id,), expires=60)
    return [str(i) for i in ids]
