"""Client-metrics subscriptions a broker kept alone (``client-metrics.json``) are brought into the
cluster metadata (etcd) when the broker first runs in a cluster: once per cluster, idempotent
across restarts, and served by every broker from there."""

from __future__ import annotations

import asyncio
import json

from kio.index import load_payload_module
from kio.static.constants import EntityType

from tests.brokerd.brokerd_wire import Wire
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, wait_for
from tests.etcd_server import EtcdServer

CLIENT_METRICS = 16  # Kafka's config resource type of client-metrics subscriptions
KEPT = {
    1: {"producers": {"metrics": "org.apache.kafka.producer.", "interval.ms": "2000"}},
    2: {"late": {"metrics": "*"}},
}


def etcd_subscriptions(etcd: EtcdServer, prefix: str) -> dict[str, dict]:
    async def read():
        client = etcd.client()
        try:
            return (await client.get_prefix(f"{prefix}client-metrics/".encode()))[1]
        finally:
            await client.close()

    entries = asyncio.run(read())
    # stored as the brokers store what AlterConfigs sets: every key, empty ones included
    return {
        e.key.decode().rsplit("/", 1)[1]: {k: v for k, v in json.loads(e.value).items() if v} for e in entries
    }


def described(broker: ClusterBroker, name: str) -> dict[str, str]:
    mod = load_payload_module(32, 4, EntityType.request)
    request = mod.DescribeConfigsRequest(
        resources=(
            mod.DescribeConfigsResource(
                resource_type=CLIENT_METRICS, resource_name=name, configuration_keys=None
            ),
        ),
        include_synonyms=False,
        include_documentation=False,
    )
    with Wire(broker.port, host=broker.host) as wire:
        [result] = wire.request(request).results
    assert result.error_code == 0, result.error_message
    return {c.name: c.value for c in result.configs if c.value}


def test_a_brokers_own_client_metrics_file_is_adopted_once(
    tmp_path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, count=2)
    for broker in brokers:
        broker.data_dir.mkdir(parents=True)
        (broker.data_dir / "client-metrics.json").write_text(json.dumps(KEPT[broker.node_id]))
    try:
        for broker in brokers:  # one after the other: broker 1 is the first
            broker.start(timeout=30)
        expected = {"metrics": "org.apache.kafka.producer.", "interval.ms": "2000"}
        assert etcd_subscriptions(etcd_server, etcd_prefix) == {"producers": expected}
        for broker in brokers:
            # every broker serves the adopted subscription; broker 2's file was set aside
            wait_for(lambda b=broker: described(b, "producers") == expected, what="the adopted subscription")
            assert described(broker, "late") == {}
            assert not (broker.data_dir / "client-metrics.json").exists()
            assert (broker.data_dir / "client-metrics.json.adopted").exists()
        # a later start with a file again (an older copy restored) adopts nothing more
        first = brokers[0]
        first.kill()
        (first.data_dir / "client-metrics.json").write_text(json.dumps({"restored": {"metrics": "*"}}))
        first.start(timeout=30)
        assert etcd_subscriptions(etcd_server, etcd_prefix) == {"producers": expected}
        assert not (first.data_dir / "client-metrics.json").exists()
    finally:
        for broker in brokers:
            broker.kill()
