from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from clusters.models import Cluster
        from clusters.signals import deprovision_requested, provision_requested
        from iam.signals import api_keys_changed
        from sharedkit import kafka_admin

        from . import receivers

        provision_requested.connect(receivers.start_provisioning, dispatch_uid="provisioning.provision")
        deprovision_requested.connect(
            receivers.start_deprovisioning, dispatch_uid="provisioning.deprovision"
        )
        api_keys_changed.connect(receivers.push_credentials, dispatch_uid="provisioning.credentials")
        # Every Kafka client the control plane caches for a cluster is closed once it stops running.
        post_save.connect(
            kafka_admin.forget_unless_running, sender=Cluster, dispatch_uid="provisioning.kafka_clients"
        )
