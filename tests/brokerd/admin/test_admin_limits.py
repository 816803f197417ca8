"""Plan caps on CreateTopics / CreatePartitions / auto-create, super users, quota details (fetch
capped at the quota window, request-time throttle in throttle_time_ms) and error-code labels."""

from __future__ import annotations

import time

import pytest
from admintest import fetch, make_batch, metrics, ms, produce, req, sasl_wire
from brokerd_wire import Wire
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

CLUSTER_AUTHORIZATION_FAILED = 31
POLICY_VIOLATION = 44


def _err(fut) -> object:
    with pytest.raises(KafkaException) as exc:
        fut.result(timeout=10)
    return exc.value.args[0]


def _create(admin: AdminClient, *topics: NewTopic, validate_only: bool = False) -> dict:
    return admin.create_topics(list(topics), validate_only=validate_only)


def _alter_quotas(w: Wire, entries):
    m = req(49, 1)
    r = m.AlterClientQuotasRequest(entries=tuple(
        m.EntryData(entity=tuple(m.EntityData(entity_type=t, entity_name=n) for t, n in entity),
                    ops=tuple(m.OpData(key=k, value=float(v), remove=False) for k, v in ops))
        for entity, ops in entries), validate_only=False)
    return w.request(r)


def _topic(broker, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=10)


def _metadata(w: Wire, *names: str, auto: bool = True):
    m = req(3, 12)
    return w.request(m.MetadataRequest(
        topics=tuple(m.MetadataRequestTopic(topic_id=None, name=n) for n in names),
        allow_auto_topic_creation=auto, include_topic_authorized_operations=False))


def test_create_topics_validates_configs_and_plan_caps(broker_factory) -> None:
    b = broker_factory(settings={"kastle.plan.max.partitions": 4, "kastle.plan.max.retention.ms": 86_400_000,
                                 "log.retention.ms": 3_600_000})
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for validate_only in (True, False):
        futs = _create(admin, NewTopic("unknown", 1, 1, config={"no.such.config": "1"}),
                       NewTopic("bad", 1, 1, config={"retention.ms": "soon"}),
                       NewTopic("long", 1, 1, config={"retention.ms": str(2 * 86_400_000)}),
                       NewTopic("forever", 1, 1, config={"retention.ms": "-1"}),
                       validate_only=validate_only)
        got = {name: _err(f) for name, f in futs.items()}
        assert got["unknown"].name() == "INVALID_CONFIG" and "no.such.config" in got["unknown"].str()
        assert got["bad"].name() == "INVALID_CONFIG" and "retention.ms" in got["bad"].str()
        assert got["long"].name() == "POLICY_VIOLATION" and "retention.ms" in got["long"].str()
        assert got["forever"].name() == "POLICY_VIOLATION"
    assert admin.list_topics(timeout=10).topics.keys().isdisjoint({"unknown", "bad", "long", "forever"})
    # within the caps: created with the override
    _create(admin, NewTopic("a", 3, 1, config={"retention.ms": "60000"}))["a"].result(timeout=10)
    # the partition cap counts earlier topics of the same request
    futs = _create(admin, NewTopic("b", 1, 1), NewTopic("c", 1, 1))
    futs["b"].result(timeout=10)
    err = _err(futs["c"])
    assert err.name() == "POLICY_VIOLATION" and "kastle.plan.max.partitions" in err.str()
    assert _err(_create(admin, NewTopic("d", 1, 1), validate_only=True)["d"]).name() == "POLICY_VIOLATION"
    [fut] = admin.create_partitions([NewPartitions("a", 4)]).values()
    assert _err(fut).name() == "POLICY_VIOLATION"
    # auto-creation (Metadata) is capped too, and works again once there is room
    with Wire(b.port) as w:
        [t] = _metadata(w, "auto1").topics
        assert t.error_code == POLICY_VIOLATION
    assert "auto1" not in admin.list_topics(timeout=10).topics
    admin.delete_topics(["b"])["b"].result(timeout=10)
    with Wire(b.port) as w:
        [t] = _metadata(w, "auto1").topics
        assert t.error_code == 0 and len(t.partitions) == 1
    assert sum(len(t.partitions) for t in admin.list_topics(timeout=10).topics.values()) == 4


def test_only_super_users_alter_broker_configs_and_quotas(broker_factory) -> None:
    users = {"alice": "a-secret", "kastle-internal": "i-secret"}
    quota = [([("user", None)], [("producer_byte_rate", 1_000_000_000)])]
    broker_res = ConfigResource("broker", "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    cap_res = ConfigResource("broker", "1", incremental_configs=[
        ConfigEntry("kastle.plan.max.partitions", "100000", incremental_operation=AlterConfigOpType.SET)])
    for super_users in ("", "User:kastle-internal"):
        b = broker_factory(sasl=True, users=users, settings={"super.users": super_users})
        port = b.ports["SASL_PLAINTEXT"]
        tenant = AdminClient(b.sasl_config(user="alice", password="a-secret"))
        [fut] = tenant.incremental_alter_configs([broker_res]).values()
        assert _err(fut).name() == "CLUSTER_AUTHORIZATION_FAILED"
        [fut] = tenant.incremental_alter_configs([cap_res]).values()
        assert _err(fut).name() == "CLUSTER_AUTHORIZATION_FAILED"
        with sasl_wire(port, "alice", "a-secret") as w:
            [entry] = _alter_quotas(w, quota).entries
            assert entry.error_code == CLUSTER_AUTHORIZATION_FAILED
        # topic configs stay the tenant's own
        _create(tenant, NewTopic("mine", 1, 1))["mine"].result(timeout=10)
        [fut] = tenant.incremental_alter_configs([ConfigResource("topic", "mine", incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])]).values()
        fut.result(timeout=10)
        with sasl_wire(port, "kastle-internal", "i-secret") as w:
            [entry] = _alter_quotas(w, quota).entries
            assert entry.error_code == (0 if super_users else CLUSTER_AUTHORIZATION_FAILED)
        internal = AdminClient(b.sasl_config(user="kastle-internal", password="i-secret"))
        [fut] = internal.incremental_alter_configs([broker_res]).values()
        if super_users:
            fut.result(timeout=10)
            # a plan cap is read-only even for a super user
            [fut] = internal.incremental_alter_configs([cap_res]).values()
            assert _err(fut).name() == "INVALID_CONFIG"
        else:
            assert _err(fut).name() == "CLUSTER_AUTHORIZATION_FAILED"
        b.stop()


@pytest.fixture
def broker(broker_factory):
    return broker_factory(settings={"super.users": "User:ANONYMOUS"})


def test_fetch_is_capped_at_the_quota_window(broker) -> None:
    _topic(broker, "fq")
    batch = make_batch([(None, b"x" * 1000)] * 40)  # ~41 KB
    with Wire(broker.port) as w:
        for _ in range(3):
            assert produce(w, "fq", 0, batch)[0].error_code == 0
        # 10 KB/s over Kafka's 10 s window: at most 100 KB in one response
        [entry] = _alter_quotas(w, [([("user", None)], [("consumer_byte_rate", 10_000)])]).entries
        assert entry.error_code == 0
    with Wire(broker.port) as w:
        part, throttle = fetch(w, "fq", 0, 0)
        # two whole batches fit in 100 KB: answered, and within the quota (not throttled)
        assert throttle == 0 and part.records is not None and len(part.records) == 2 * len(batch)
        part, throttle = fetch(w, "fq", 0, 80)
        assert throttle > 0 and not part.records  # the third puts it over: throttled, empty


class _SlowClient(Wire):
    def header(self, api_key: int, version: int, flexible: bool, client_id: str = "slow") -> bytes:
        return super().header(api_key, version, flexible, client_id)


def test_request_quota_throttle_is_in_the_response(broker) -> None:
    _topic(broker, "rq")
    with Wire(broker.port) as w:
        # so small that any request is throttled for the whole window (11 samples x 1 s)
        [entry] = _alter_quotas(w, [([("client-id", "slow")], [("request_percentage", 1e-7)])]).entries
        assert entry.error_code == 0
    throttles = []
    batch = make_batch([(None, b"v")])

    def one(call) -> None:
        with _SlowClient(broker.port) as w:  # a fresh connection: each is muted after its answer
            throttles.append(call(w))

    one(lambda w: int(_metadata(w, "rq", auto=False).throttle_time.total_seconds() * 1000))  # cached bytes
    m = req(19, 7)
    one(lambda w: int(w.request(m.CreateTopicsRequest(topics=(m.CreatableTopic(
        name="rq2", num_partitions=1, replication_factor=1, assignments=(), configs=()),),
        timeout=ms(5000), validate_only=True)).throttle_time.total_seconds() * 1000))  # kio entity
    one(lambda w: produce(w, "rq", 0, batch, acks=1)[1])  # fast path
    one(lambda w: produce(w, "rq", 0, batch, acks=-1)[1])  # answered after the group fsync
    one(lambda w: fetch(w, "rq", 0, 0)[1])
    assert throttles == [11_000] * 5
    labels = (("principal", "ANONYMOUS"), ("quota", "request_percentage"))
    got = metrics(broker.admin_url)
    assert got[("kastle_throttled_responses_total", labels)] == 5
    assert got[("kastle_throttle_time_seconds_total", labels)] == 55.0


def test_produce_and_fetch_error_code_labels(broker) -> None:
    _topic(broker, "el")

    def counts() -> dict[tuple[str, str], float]:
        return {(dict(k[1])["api"], dict(k[1])["error"]): v for k, v in metrics(broker.admin_url).items()
                if k[0] == "kastle_requests_total" and dict(k[1])["api"] in ("Produce", "Fetch")}

    batch = make_batch([(None, b"v")] * 2)
    corrupt = bytearray(batch)
    corrupt[-1] ^= 0xFF
    before = counts()
    with Wire(broker.port) as w:
        m = req(0, 9)
        resp = w.request(m.ProduceRequest(transactional_id=None, acks=1, timeout=ms(5000), topic_data=(
            m.TopicProduceData(name="el", partition_data=(
                m.PartitionProduceData(index=0, records=batch),
                m.PartitionProduceData(index=5, records=batch))),)))
        assert [p.error_code for p in resp.responses[0].partition_responses] == [0, 3]
        assert produce(w, "el", 0, bytes(corrupt), acks=-1)[0].error_code == 2
        assert produce(w, "el", 0, batch, acks=-1)[0].error_code == 0
        assert fetch(w, "el", 0, 0)[0].error_code == 0  # v12: top-level + partition
        assert fetch(w, "el", 0, 99)[0].error_code == 1
        m = req(1, 4)
        resp = w.request(m.FetchRequest(replica_id=-1, max_wait=ms(0), min_bytes=0, max_bytes=1024,
                                        isolation_level=0, topics=(m.FetchTopic(topic="nope", partitions=(
                                            m.FetchPartition(partition=0, fetch_offset=0,
                                                             partition_max_bytes=1024),)),)))
        assert resp.responses[0].partitions[0].error_code == 3
    after = counts()
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert delta == {
        ("Produce", "NONE"): 2, ("Produce", "UNKNOWN_TOPIC_OR_PARTITION"): 1,
        ("Produce", "CORRUPT_MESSAGE"): 1, ("Fetch", "NONE"): 3, ("Fetch", "OFFSET_OUT_OF_RANGE"): 1,
        ("Fetch", "UNKNOWN_TOPIC_OR_PARTITION"): 1,
    }


def test_closed_connections_give_back_their_connection_limit(broker_factory) -> None:
    """A connection that sent requests and closed no longer counts against max.connections.per.ip."""
    b = broker_factory(settings={"max.connections.per.ip": 2})
    open_now = ("kastle_connections", (("listener", "PLAINTEXT"),))
    for _ in range(5):  # more than the limit, one after another
        with Wire(b.port) as w:
            assert _metadata(w, auto=False).throttle_time is not None
        deadline = time.monotonic() + 30
        while metrics(b.admin_url).get(open_now) != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metrics(b.admin_url).get(open_now) == 0
    with Wire(b.port) as w, Wire(b.port) as w2:  # the limit itself still holds
        assert _metadata(w).throttle_time is not None and _metadata(w2).throttle_time is not None
        with Wire(b.port) as w3:
            try:
                answered = _metadata(w3) is not None
            except OSError:  # closed before or while the request was sent
                answered = False
            assert not answered
    assert metrics(b.admin_url)[("kastle_connections_rejected_total", (("reason", "limit"),))] == 1
