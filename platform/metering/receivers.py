"""Signal receivers: a deleted broker's final usage (provisioning.signals.broker_final_state)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def collect_final_usage(sender, broker, metrics=None, data_dir=None, **kwargs) -> None:
    from . import services

    try:
        services.record_final(broker, metrics, data_dir)
    except Exception:  # never block the deletion; the operators have the traceback
        logger.exception("metering: final usage of broker %s could not be recorded", broker.pk)
