"""Client telemetry: client-metrics subscriptions and the metrics confluent-kafka pushes.

Subscriptions are Kafka's ``client-metrics`` config resources (IncrementalAlterConfigs,
AlterConfigs, DescribeConfigs, ListConfigResources), kept across restarts. librdkafka asks
for its subscription (GetTelemetrySubscriptions) and pushes OTLP metrics (PushTelemetry); the
broker keeps recent series per client, bounded, and serves them on the admin listener.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from brokerd_wire import Wire, request_class
from confluent_kafka import Consumer, Producer
from kio.index import load_payload_module
from kio.static.constants import EntityType
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from brokerd.telemetry import ClientTelemetry, SubscriptionError, SubscriptionStore
from tests.brokerd.conftest import Broker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")
IAC = load_payload_module(44, 1, EntityType.request)
DC = load_payload_module(32, 4, EntityType.request)


def alter(w: Wire, name: str, *changes: tuple[str, int, str | None]) -> tuple[int, str | None]:
    configs = tuple(IAC.AlterableConfig(name=k, config_operation=op, value=v) for k, op, v in changes)
    resource = IAC.AlterConfigsResource(resource_type=16, resource_name=name, configs=configs)
    resp = w.request(request_class(44, 1)(resources=(resource,), validate_only=False)).responses[0]
    return int(resp.error_code), resp.error_message


def described(w: Wire, name: str) -> dict[str, tuple[str, int]]:
    resource = DC.DescribeConfigsResource(resource_type=16, resource_name=name, configuration_keys=None)
    resp = w.request(
        request_class(32, 4)(resources=(resource,), include_synonyms=False, include_documentation=True)
    )
    (result,) = resp.results
    assert result.error_code == 0
    return {c.name: (c.value, c.config_source) for c in result.configs}


def telemetry(b: Broker) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{b.ports['admin']}/telemetry", timeout=10) as resp:
        return json.loads(resp.read())["clients"]


# --- without a broker --------------------------------------------------------------------------


def metrics_data(name: str, value: float, **attrs: str) -> bytes:
    data = metrics_pb2.MetricsData()
    metric = data.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = name
    point = metric.gauge.data_points.add()
    point.as_double = value
    point.time_unix_nano = time.time_ns()
    for k, v in attrs.items():
        point.attributes.append(common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)))
    return data.SerializeToString()


def test_subscriptions_validate_and_match(tmp_path) -> None:
    store = SubscriptionStore(tmp_path)
    store.alter("prod", [("metrics", 0, "org.apache.kafka.producer."), ("interval.ms", 0, "1000"),
                         ("match", 0, "client_id=pay-.*")], validate_only=False)  # fmt: skip
    store.alter("prod", [("metrics", 2, "org.apache.kafka.consumer.")], validate_only=False)  # APPEND
    sub = store.subscriptions["prod"]
    assert sub.metrics == ("org.apache.kafka.producer.", "org.apache.kafka.consumer.")
    assert sub.matches({"client_id": "pay-eu"}) and not sub.matches({"client_id": "x-pay-eu"})
    for bad in (
        [("interval.ms", 0, "50")],
        [("match", 0, "client_colour=red")],
        [("match", 0, "client_id=(")],
    ):
        with pytest.raises(SubscriptionError):
            store.alter("bad", bad, validate_only=False)
    with pytest.raises(SubscriptionError) as unknown:
        store.alter("bad", [("colour", 0, "red")], validate_only=False)
    assert unknown.value.unknown_name
    assert SubscriptionStore(tmp_path).configs("prod") == store.configs("prod")  # durable
    store.alter(
        "prod", [("metrics", 1, None), ("interval.ms", 1, None), ("match", 1, None)], validate_only=False
    )
    assert store.names() == []  # no config left: the subscription is gone


def test_pushed_series_are_bounded(tmp_path) -> None:
    store = SubscriptionStore(tmp_path)
    store.alter("all", [("metrics", 0, "*"), ("interval.ms", 0, "100")], validate_only=False)
    now = [1_000_000]
    tele = ClientTelemetry(store, max_clients=2, max_series=3, points=4, clock=lambda: now[0])
    ids = []
    for i in range(3):
        answer = tele.get_subscriptions(
            None, client_id=f"c{i}", software_name="s", software_version="1", source_address="127.0.0.1"
        )
        assert answer.requested_metrics == [""]  # "*": every metric
        ids.append(answer)
    assert [c.client_id for c in tele.clients.values()] == ["c1", "c2"]  # the oldest client went
    a = ids[2]
    for step in range(6):
        now[0] += 100
        payload = b"".join(metrics_data(f"m{k}", float(step)) for k in range(5))
        outcome = tele.push(
            a.client_instance_id, a.subscription_id, terminating=False, compression=0, payload=payload
        )
        assert outcome.error == 0
    info = tele.clients[str(a.client_instance_id)]
    assert len(info.series) == 3 and all(len(points) == 4 for points in info.series.values())
    too_soon = tele.push(
        a.client_instance_id, a.subscription_id, terminating=False, compression=0, payload=b""
    )
    assert too_soon.error == 89  # THROTTLING_QUOTA_EXCEEDED
    big = tele.push(
        a.client_instance_id, a.subscription_id, terminating=True, compression=0, payload=b"x" * (2 << 20)
    )
    assert big.error == 118  # TELEMETRY_TOO_LARGE


# --- a broker and confluent-kafka --------------------------------------------------------------


@pytest.fixture(scope="module")
def tbroker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("telemetry"), settings={"group.initial.rebalance.delay.ms": 0})
    b.start()
    yield b
    b.stop()


def test_subscriptions_as_config_resources(tbroker) -> None:
    with Wire(tbroker.port) as w:
        assert alter(w, "ops", ("metrics", 0, "org.apache.kafka."), ("interval.ms", 0, "2000")) == (0, None)
        assert described(w, "ops") == {
            "metrics": ("org.apache.kafka.", 7),  # CLIENT_METRICS_CONFIG
            "interval.ms": ("2000", 7),
            "match": ("", 7),
        }
        assert alter(w, "ops", ("interval.ms", 0, "10"))[0] == 40  # INVALID_CONFIG
        assert alter(w, "ops", ("colour", 0, "red"))[0] == 42  # INVALID_REQUEST
        listed = w.request(request_class(74, 1)(resource_types=(16,)))
        assert [(r.resource_type, r.resource_name) for r in listed.config_resources] == [(16, "ops")]
        assert alter(w, "ops", ("metrics", 1, None), ("interval.ms", 1, None), ("match", 1, None))[0] == 0
    tbroker.stop()
    tbroker.start()
    with Wire(tbroker.port) as w:
        assert described(w, "ops") == {}


def test_confluent_kafka_clients_push_their_metrics(tbroker) -> None:
    with Wire(tbroker.port) as w:
        assert alter(w, "apps", ("metrics", 0, "*"), ("interval.ms", 0, "500"),
                     ("match", 0, "client_id=app-.*"))[0] == 0  # fmt: skip
    producer = Producer({"bootstrap.servers": tbroker.bootstrap, "client.id": "app-producer"})
    consumer = Consumer({
        "bootstrap.servers": tbroker.bootstrap, "client.id": "app-consumer", "group.id": "tele",
        "group.protocol": "consumer", "auto.offset.reset": "earliest",
    })  # fmt: skip
    silent = Producer({"bootstrap.servers": tbroker.bootstrap, "client.id": "unmatched"})
    consumer.subscribe(["tele"])
    try:
        seen: dict[str, dict] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for p in (producer, silent):
                p.produce("tele", b"v")
                p.poll(0)
            consumer.poll(0.2)
            seen = {c["client_id"]: c for c in telemetry(tbroker)}
            names = {c: {m["name"] for m in seen[c]["metrics"]} for c in seen}
            if "org.apache.kafka.producer.node.request.latency.avg" in names.get("app-producer", ()) and any(
                n.startswith("org.apache.kafka.consumer.") for n in names.get("app-consumer", ())
            ):
                break
        else:
            raise AssertionError(f"no metrics pushed: {seen}")
        prod = seen["app-producer"]
        assert prod["software_name"] == "confluent-kafka-python" and "rdkafka" in prod["software_version"]
        assert prod["active"] and prod["push_interval_ms"] == 500
        uuid.UUID(prod["client_instance_id"])
        latency = [
            m for m in prod["metrics"] if m["name"] == "org.apache.kafka.producer.node.request.latency.avg"
        ]
        assert latency[0]["attributes"].get("node.id") == "1" and latency[0]["points"]
        assert "unmatched" not in seen  # no subscription matches it: asked for nothing, pushes nothing
    finally:
        consumer.close()
        producer.flush(5)
        silent.flush(5)


def test_compressed_pushes_are_decoded_within_a_bound(tbroker) -> None:
    import gzip

    import zstandard

    with Wire(tbroker.port) as w:
        assert (
            alter(
                w, "raw", ("metrics", 0, "*"), ("interval.ms", 0, "100"), ("match", 0, "client_id=wire-test")
            )[0]
            == 0
        )
        got = w.request(request_class(71, 0)(client_instance_id=uuid.UUID(int=0)))
        assert tuple(got.requested_metrics) == ("",)

        def push(codec: int, payload: bytes, terminating: bool = False) -> int:
            request = request_class(72, 0)(
                client_instance_id=got.client_instance_id, subscription_id=got.subscription_id,
                terminating=terminating, compression_type=codec, metrics=payload,
            )  # fmt: skip
            return int(w.request(request).error_code)

        assert push(1, gzip.compress(metrics_data("org.apache.kafka.raw.gauge", 4.5, node="1"))) == 0
        # 1 KiB that would decompress to 64 MiB: refused as not decodable, the broker unharmed
        bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
        assert len(bomb) < 1 << 20
        assert push(4, bomb, terminating=True) == 87  # INVALID_RECORD
    raw = [c for c in telemetry(tbroker) if c["client_id"] == "wire-test"]
    (gauge,) = [m for c in raw for m in c["metrics"] if m["name"] == "org.apache.kafka.raw.gauge"]
    assert (gauge["latest"], gauge["attributes"]) == (4.5, {"node": "1"})
