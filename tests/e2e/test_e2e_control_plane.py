"""The control plane end to end: REST -> PostgreSQL -> commit -> Redis -> a real Celery worker."""

from __future__ import annotations

import os
import signal

from clusters.models import Cluster
from tests.platform.api import Tenant


def test_cluster_lifecycle_tasks_run_on_a_real_worker(celery_worker):
    tenant = Tenant("owner")
    created = tenant.client.post("/api/v1/clusters", {"name": "e2e", "plan": "basic"})
    assert created.status_code == 202
    cluster_id = created.json()["id"]
    celery_worker.wait_for_log("worker", f"cluster_provision: {cluster_id} is PROVISIONING", timeout=30)
    assert "provisioning.cluster_provision" in celery_worker.log("worker")
    assert "beat: Starting..." in celery_worker.log("beat")

    assert tenant.client.delete(f"/api/v1/clusters/{cluster_id}").status_code == 202
    celery_worker.wait_for_log("worker", f"cluster_deprovision: {cluster_id} is DELETING", timeout=30)
    # The worker may already have finished the teardown: DELETING or DELETED, never back.
    assert Cluster.objects.get(public_id=cluster_id).status in {"DELETING", "DELETED"}


def test_worker_restarts_cleanly_and_leaves_no_process_behind(celery_worker):
    old = celery_worker.processes["worker"]
    pgid = old.pid
    assert celery_worker.stop("worker") is not None
    try:
        os.killpg(pgid, 0)
        leftover = True
    except ProcessLookupError:
        leftover = False
    assert not leftover, "a worker pool process outlived its worker"
    assert "Warm shutdown" in old.log() or "warm shutdown" in old.log().lower()
    celery_worker.start_worker()
    tenant = Tenant("owner")
    cluster_id = tenant.client.post("/api/v1/clusters", {"name": "again", "plan": "basic"}).json()["id"]
    celery_worker.wait_for_log("worker", f"cluster_provision: {cluster_id}", timeout=30)


def test_a_killed_worker_is_replaced(celery_worker):
    celery_worker.kill("worker", signal.SIGKILL)
    celery_worker.wait_until(lambda: not celery_worker.processes["worker"].alive, timeout=10)
    celery_worker.restart("worker")
    assert celery_worker.processes["worker"].alive
