from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering and billing"

    def ready(self) -> None:
        from accounts.signals import organization_created
        from provisioning.signals import broker_final_state

        from . import receivers

        broker_final_state.connect(receivers.collect_final_usage, dispatch_uid="metering.final_usage")
        organization_created.connect(receivers.grant_trial_credit, dispatch_uid="metering.trial_credit")
