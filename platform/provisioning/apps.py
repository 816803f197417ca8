from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from clusters.signals import deprovision_requested, provision_requested
        from iam.signals import api_keys_changed

        from . import receivers

        provision_requested.connect(receivers.start_provisioning, dispatch_uid="provisioning.provision")
        deprovision_requested.connect(
            receivers.start_deprovisioning, dispatch_uid="provisioning.deprovision"
        )
        api_keys_changed.connect(receivers.push_credentials, dispatch_uid="provisioning.credentials")
