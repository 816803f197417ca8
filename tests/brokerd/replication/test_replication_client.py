"""The broker-to-broker client against a real brokerd: versioned requests and responses
(flexible and not), a connection that breaks mid-life and is opened again, and a clear error
when the other broker is gone."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from brokerd.protocol import kio_adapter
from brokerd.replication.client import BrokerConnection, BrokerUnavailable
from tests.brokerd.brokerd_wire import make_batch
from tests.brokerd.conftest import Broker
from tests.brokerd.test_brokerd_wire import fetch_request, produce

MS = datetime.timedelta(milliseconds=1)


def _create(name: str, version: int = 7):
    mod = kio_adapter.request_module(19, version)
    topic = mod.CreatableTopic(name=name, num_partitions=1, replication_factor=1, assignments=(), configs=())
    return kio_adapter.build(
        kio_adapter.request_class(19, version), topics=(topic,), timeout=5000 * MS, validate_only=False
    )


def test_requests_and_responses_over_a_broker_connection(broker: Broker) -> None:
    async def body() -> None:
        conn = BrokerConnection("127.0.0.1", broker.port, client_id="brokerd-test")
        try:
            hello = kio_adapter.request_class(18, 3)(client_software_name="t", client_software_version="1")
            versions = await conn.request(hello)
            assert versions.error_code == 0 and any(k.api_key == 1 for k in versions.api_keys)
            created = await conn.request(_create("replicated"))
            assert created.topics[0].error_code == 0
            produced = await conn.request(produce(None, "replicated", 0, make_batch([(b"k", b"v")])))
            assert produced.responses[0].partition_responses[0].error_code == 0
            old = await conn.request(_create("replicated", version=2))  # a non-flexible version
            assert old.topics[0].error_code == 36  # TOPIC_ALREADY_EXISTS
            fetched = await conn.request(fetch_request("replicated", 0))
            partition = fetched.responses[0].partitions[0]
            assert partition.error_code == 0 and partition.high_watermark == 1 and b"v" in partition.records
            # The broker restarts: the next request fails, the one after reconnects.
            broker.restart()
            conn.port = broker.port
            with pytest.raises(BrokerUnavailable):
                await conn.request(fetch_request("replicated", 0))
            fetched = await conn.request(fetch_request("replicated", 0))
            assert fetched.responses[0].partitions[0].high_watermark == 1
            broker.kill()
            with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{broker.port}"):
                for _ in range(2):  # the first may still see the dying connection
                    await conn.request(fetch_request("replicated", 0))
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_a_request_cancelled_as_its_answer_arrives_ends_cancelled(broker: Broker) -> None:
    # A follower's fetcher is cancelled when the broker stops. Cancelled at any moment of a
    # request, the answer's arrival included, the request must end cancelled: one that returned
    # the answer instead let the fetcher fetch on for ever, and the stopped broker never exited.
    hello = kio_adapter.request_class(18, 3)(client_software_name="t", client_software_version="1")

    async def body() -> list[int]:
        swallowed = []
        for attempt in range(240):
            conn = BrokerConnection("127.0.0.1", broker.port, client_id="brokerd-test")
            try:
                await conn.request(hello)  # connected: the next request only waits for its answer
                task = asyncio.ensure_future(conn.request(hello))
                for _ in range(attempt % 24):  # cancelled at every step of the exchange in turn
                    await asyncio.sleep(0)
                if task.cancel():
                    await asyncio.wait({task})
                    if not task.cancelled():
                        swallowed.append(attempt)
            finally:
                await conn.close()
        return swallowed

    assert asyncio.run(asyncio.wait_for(body(), 120)) == []
