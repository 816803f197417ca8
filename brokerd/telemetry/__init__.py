"""Client telemetry (KIP-714): client-metrics subscriptions, pushed OTLP metrics, recent series.

Wire-independent: brokerd/handlers/telemetry.py answers GetTelemetrySubscriptions and
PushTelemetry with :class:`ClientTelemetry`; brokerd/handlers/configs.py alters and describes the
``client-metrics`` config resources it keeps; the admin listener serves what clients reported
at ``/telemetry`` (JSON) for the control plane.
"""

from brokerd.telemetry.service import ClientInfo, ClientTelemetry, PushOutcome, SubscriptionAnswer
from brokerd.telemetry.subscriptions import SubscriptionError, SubscriptionStore

__all__ = [
    "ClientInfo",
    "ClientTelemetry",
    "PushOutcome",
    "SubscriptionAnswer",
    "SubscriptionError",
    "SubscriptionStore",
]
