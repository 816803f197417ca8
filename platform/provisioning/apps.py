from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from celery.signals import task_postrun
        from django.db.models.signals import post_save

        from clusters.models import Cluster
        from clusters.signals import (
            deprovision_requested,
            provision_requested,
            restart_requested,
            scale_requested,
        )
        from iam.signals import api_keys_changed
        from sharedkit import kafka_admin

        from . import receivers

        provision_requested.connect(receivers.start_provisioning, dispatch_uid="provisioning.provision")
        deprovision_requested.connect(receivers.start_deprovisioning, dispatch_uid="provisioning.deprovision")
        restart_requested.connect(receivers.start_restart, dispatch_uid="provisioning.restart")
        scale_requested.connect(receivers.start_scale, dispatch_uid="provisioning.scale")
        api_keys_changed.connect(receivers.push_credentials, dispatch_uid="provisioning.credentials")
        # Every Kafka client the control plane caches for a cluster is closed once it stops running,
        # in the process that saved it. A Celery worker has several pool processes, and the one that
        # deletes a cluster is rarely the one that last synced its ACLs: a task's clients are closed
        # when it ends, so no worker process keeps one between tasks.
        post_save.connect(
            kafka_admin.forget_unless_running, sender=Cluster, dispatch_uid="provisioning.kafka_clients"
        )
        task_postrun.connect(receivers.close_kafka_clients, dispatch_uid="provisioning.kafka_clients")
