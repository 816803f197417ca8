"""Metering's side of other apps' signals (connected in `MeteringConfig.ready`).

- provisioning.signals.broker_final_state: a deleted broker's final usage;
- accounts.signals.organization_created: the trial credit (KASTLE_TRIAL_CREDIT, default $400),
  drawn down by costs, granted in the sign-up's transaction.
"""

from __future__ import annotations

import logging

from . import services

logger = logging.getLogger(__name__)


def collect_final_usage(sender, broker, metrics=None, data_dir=None, **kwargs) -> None:
    try:
        services.usage_record_final(broker=broker, metrics=metrics, data_dir=data_dir)
    except Exception:  # never block the deletion; the operators have the traceback
        logger.exception("metering: final usage of broker %s could not be recorded", broker.pk)


def grant_trial_credit(sender, organization, **kwargs) -> None:
    services.credit_grant_trial(organization=organization)
