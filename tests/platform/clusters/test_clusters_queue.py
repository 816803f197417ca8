"""Lifecycle tasks reach the real Redis queue after commit, and never after a rollback."""

from __future__ import annotations

import pytest
from django.db import transaction

from clusters import services
from clusters.models import Cluster, ClusterStatus
from provisioning.tasks import cluster_deprovision, cluster_provision
from tests.platform.api import Tenant
from tests.platform.factories import ClusterFactory, OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_tasks_have_explicit_names_and_queue(settings):
    assert cluster_provision.name == "provisioning.cluster_provision"
    assert cluster_deprovision.name == "provisioning.cluster_deprovision"
    from controlplane.celery import app

    for name in (cluster_provision.name, cluster_deprovision.name):
        assert app.amqp.router.route({}, name)["queue"].name == settings.CELERY_DEFAULT_QUEUE
    assert cluster_provision.acks_late and cluster_deprovision.acks_late


def test_create_over_rest_enqueues_provision_after_commit(celery_queue):
    tenant = Tenant("owner")
    response = tenant.client.post("/api/v1/clusters", {"name": "orders", "plan": "basic"})
    assert response.status_code == 202
    cluster = Cluster.objects.get(public_id=response.json()["id"])
    assert celery_queue() == [
        {
            "task": "provisioning.cluster_provision",
            "id": celery_queue()[0]["id"],
            "args": [cluster.pk],
            "kwargs": {},
        }
    ]


def test_nothing_is_enqueued_before_commit_or_after_rollback(celery_queue):
    org = OrganizationFactory()
    with transaction.atomic():
        cluster = services.cluster_create(organization=org, name="a", plan="basic")
        assert celery_queue() == []  # still inside the transaction
    assert [m["args"] for m in celery_queue()] == [[cluster.pk]]

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        services.cluster_create(organization=org, name="b", plan="basic")
        raise Boom
    assert not Cluster.objects.filter(name="b").exists()
    assert [m["args"] for m in celery_queue()] == [[cluster.pk]]  # still only the first


def test_a_refused_write_enqueues_nothing(celery_queue):
    cluster = ClusterFactory(status=ClusterStatus.DELETING)
    with pytest.raises(services.InvalidTransition):
        services.cluster_delete(cluster=cluster)
    assert celery_queue() == []


def test_delete_and_retry_enqueue_after_commit(celery_queue):
    tenant = Tenant("owner")
    running = ClusterFactory(organization=tenant.organization)
    failed = ClusterFactory(organization=tenant.organization, status=ClusterStatus.FAILED, status_reason="x")
    assert tenant.client.delete(f"/api/v1/clusters/{running.public_id}").status_code == 202
    assert tenant.client.post(f"/api/v1/clusters/{failed.public_id}/retry").status_code == 202
    assert [(m["task"], m["args"]) for m in celery_queue()] == [
        ("provisioning.cluster_deprovision", [running.pk]),
        ("provisioning.cluster_provision", [failed.pk]),
    ]
