"""Spend-cap throttling through the broker's client quotas, over the Kafka protocol.

confluent-kafka's AdminClient has no AlterClientQuotas, so this sends one AlterClientQuotas v0
request (kio-encoded) on a connection authenticated with the cluster's internal credential
(a super user: tenants' keys may not alter quotas). The quota is set on Kafka's `<default>`
user entity, i.e. for every API key, including keys created later; brokerd persists it in
`<data-dir>/quotas.json` and applies it to the next produce request, with no restart. Removing
it restores the plan's static per-key rate from the broker config.
"""

from __future__ import annotations

from kio.schema.alter_client_quotas.v0 import request as acq_req
from kio.schema.alter_client_quotas.v0 import response as acq_resp
from kio.schema.describe_client_quotas.v0 import request as dcq_req
from kio.schema.describe_client_quotas.v0 import response as dcq_resp
from kio.static.primitive import f64, i8

from clusters.models import Broker
from sharedkit.kafka_wire import BrokerConnection, internal_connection

PRODUCE = "producer_byte_rate"


class QuotaError(Exception):
    pass


def _connect(broker: Broker) -> BrokerConnection:
    try:  # TLS on SASL_SSL clusters; the internal user is a super user, as quotas need
        return internal_connection(broker.cluster, broker.host.address, broker.port)
    except ConnectionError as exc:
        raise QuotaError(str(exc)) from exc


def set_default_produce_quota(broker: Broker, rate: int | None) -> None:
    """Set (rate) or remove (None) the `<default>` user's producer_byte_rate on one broker."""
    op = acq_req.OpData(key=PRODUCE, value=f64(float(rate or 0)), remove=rate is None)
    entry = acq_req.EntryData(entity=(acq_req.EntityData(entity_type="user", entity_name=None),), ops=(op,))
    conn = _connect(broker)
    try:
        response = conn.call(
            acq_req.AlterClientQuotasRequest(entries=(entry,), validate_only=False),
            acq_resp.AlterClientQuotasResponse,
        )
    finally:
        conn.close()
    for result in response.entries:
        if int(result.error_code) != 0:
            raise QuotaError(f"AlterClientQuotas refused: {result.error_code} {result.error_message}")


def default_user_quotas(broker: Broker) -> dict[str, float]:
    """The `<default>` user's quotas on one broker (static plan values merged with dynamic ones)."""
    component = dcq_req.ComponentData(entity_type="user", match_type=i8(1), match=None)
    conn = _connect(broker)
    try:
        response = conn.call(
            dcq_req.DescribeClientQuotasRequest(components=(component,), strict=True),
            dcq_resp.DescribeClientQuotasResponse,
        )
    finally:
        conn.close()
    if int(response.error_code) != 0:
        raise QuotaError(f"DescribeClientQuotas refused: {response.error_code} {response.error_message}")
    out: dict[str, float] = {}
    for entry in response.entries or ():
        for value in entry.values:
            out[value.key] = float(value.value)
    return out
