"""Admin request types against a real brokerd, with confluent-kafka and kafka-python admin clients."""

from __future__ import annotations

import pytest
from admintest import fetch, make_batch, produce, req
from brokerd_wire import Wire
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

# kafka-python 3 loads its schemas with importlib.resources' deprecated helpers (attributed to
# importlib, not kafka): import it inside the tests, under this filter.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


def _kp():
    import kafka.admin
    import kafka.errors

    return kafka.admin, kafka.errors


def _wait(futures: dict) -> dict:
    return {k: f.result(timeout=10) for k, f in futures.items()}


def _err(fut) -> KafkaException:
    with pytest.raises(KafkaException) as exc:
        fut.result(timeout=10)
    return exc.value.args[0]


@pytest.fixture
def broker(broker_factory):
    # PLAINTEXT clients are ANONYMOUS; altering broker configs and quotas needs a super user.
    return broker_factory(settings={"super.users": "User:ANONYMOUS"})


@pytest.fixture
def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


@pytest.fixture
def kp_admin(broker):
    client = _kp()[0].KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    yield client
    client.close()


def test_topic_configs_confluent(broker, admin) -> None:
    _wait(admin.create_topics([NewTopic("cfg", 1, 1, config={"retention.ms": "3600000"})]))
    [cfg] = _wait(admin.describe_configs([ConfigResource("topic", "cfg")])).values()
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert [(s.name, s.value) for s in cfg["retention.ms"].synonyms.values()] == [
        ("retention.ms", "3600000"), ("log.retention.hours", "168")]
    assert cfg["segment.bytes"].value == "1073741824"
    assert cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["max.message.bytes"].value == "1048588"

    # incremental: SET and DELETE
    res = ConfigResource("topic", "cfg", incremental_configs=[
        ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    _wait(admin.incremental_alter_configs([res]))
    [cfg] = _wait(admin.describe_configs([ConfigResource("topic", "cfg")])).values()
    assert cfg["retention.bytes"].value == "1048576"
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # legacy AlterConfigs replaces the whole set
    with pytest.warns(DeprecationWarning):  # confluent-kafka deprecates (but still sends) AlterConfigs
        _wait(admin.alter_configs([ConfigResource("topic", "cfg", set_config={
            "message.timestamp.type": "LogAppendTime"})]))
    [cfg] = _wait(admin.describe_configs([ConfigResource("topic", "cfg")])).values()
    assert cfg["message.timestamp.type"].value == "LogAppendTime"
    assert cfg["retention.bytes"].value == "-1"

    # errors name the key
    for key, value, needle in [("retention.ms", "soon", "retention.ms"),
                               ("cleanup.policy", "shred", "cleanup.policy"),
                               ("min.cleanable.dirty.ratio", "1.5", "min.cleanable.dirty.ratio"),
                               ("segment.bytes", "100", "segment.bytes"),
                               ("bogus.key", "1", "bogus.key")]:
        res = ConfigResource("topic", "cfg", incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
        [fut] = admin.incremental_alter_configs([res]).values()
        err = _err(fut)
        assert err.name() == "INVALID_CONFIG" and needle in err.str(), err
    lags = {"cleanup.policy": "compact", "min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "1000"}
    [fut] = admin.create_topics([NewTopic("bad", 1, 1, config=lags)]).values()
    err = _err(fut)
    assert err.name() == "INVALID_CONFIG" and "min.compaction.lag.ms" in err.str()
    # validate_only changes nothing
    res = ConfigResource("topic", "cfg", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    _wait(admin.incremental_alter_configs([res], validate_only=True))
    [cfg] = _wait(admin.describe_configs([ConfigResource("topic", "cfg")])).values()
    assert cfg["retention.ms"].value == "604800000"
    [fut] = admin.describe_configs([ConfigResource("topic", "nope")]).values()
    assert _err(fut).name() == "UNKNOWN_TOPIC_OR_PART"


def test_broker_configs_confluent(broker, admin) -> None:
    [cfg] = _wait(admin.describe_configs([ConfigResource("broker", "1")])).values()
    assert cfg["num.partitions"].value == "1"
    assert cfg["auto.create.topics.enable"].value == "true"
    assert cfg["log.retention.hours"].value == "168"
    # a dynamic cluster-wide default flows into topics without an override
    _wait(admin.create_topics([NewTopic("inherit", 1, 1)]))
    res = ConfigResource("broker", "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    _wait(admin.incremental_alter_configs([res]))
    [cfg] = _wait(admin.describe_configs([ConfigResource("topic", "inherit")])).values()
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # persisted: survives a restart
    broker.restart()
    [cfg] = _wait(admin.describe_configs([ConfigResource("topic", "inherit")])).values()
    assert cfg["retention.ms"].value == "7200000"
    res = ConfigResource("broker", "1", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    [fut] = admin.incremental_alter_configs([res]).values()
    assert _err(fut).name() == "INVALID_CONFIG"


def test_configs_and_partitions_kafka_python(broker, kp_admin) -> None:
    ka, _ke = _kp()
    topic = ka.ConfigResource(ka.ConfigResourceType.TOPIC, "kp")
    kp_admin.create_topics([ka.NewTopic("kp", 1, 1, topic_configs={"retention.bytes": "5000000"})])
    described = kp_admin.describe_configs([topic], config_filter="all")["topic"]["kp"]
    assert described["retention.bytes"]["value"] == "5000000"
    assert described["retention.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert described["segment.ms"]["config_source"] == "DEFAULT_CONFIG"
    for incremental in (True, False):
        out = kp_admin.alter_configs([ka.ConfigResource(ka.ConfigResourceType.TOPIC, "kp",
                                                        configs={"retention.ms": "1000"})],
                                     incremental=incremental)
        assert out == {"topic": {"kp": "OK"}}
    described = kp_admin.describe_configs([topic], config_filter="all")["topic"]["kp"]
    assert described["retention.ms"]["value"] == "1000"
    out = kp_admin.alter_configs([ka.ConfigResource(ka.ConfigResourceType.TOPIC, "kp",
                                                    configs={"message.timestamp.type": "Whenever"})])
    assert "InvalidConfigurationError" in str(out["topic"]["kp"]) and "message.timestamp.type" in str(out)
    kp_admin.create_partitions({"kp": ka.NewPartitions(3)})
    assert len(kp_admin.describe_topics(["kp"])[0]["partitions"]) == 3
    with pytest.raises(Exception, match="InvalidPartitions"):
        kp_admin.create_partitions({"kp": ka.NewPartitions(2)})
    [dirs] = kp_admin.describe_log_dirs()
    sizes = {t["name"]: [p["partition_size"] for p in t["partitions"]] for t in dirs["log_dirs"][0]["topics"]}
    assert sizes["kp"] == [0, 0, 0]
    cluster = kp_admin.describe_cluster()
    assert cluster["controller_id"] == 1 and cluster["brokers"][0]["broker_id"] == 1


def test_create_partitions_confluent(broker, admin) -> None:
    _wait(admin.create_topics([NewTopic("grow", 1, 1)]))
    _wait(admin.create_partitions([NewPartitions("grow", 4)], validate_only=True))
    assert len(admin.list_topics("grow", timeout=10).topics["grow"].partitions) == 1
    _wait(admin.create_partitions([NewPartitions("grow", 4)]))
    assert len(admin.list_topics("grow", timeout=10).topics["grow"].partitions) == 4
    [fut] = admin.create_partitions([NewPartitions("grow", 2)]).values()
    assert _err(fut).name() == "INVALID_PARTITIONS"
    [fut] = admin.create_partitions([NewPartitions("missing", 2)]).values()
    assert _err(fut).name() == "UNKNOWN_TOPIC_OR_PART"
    # the new partitions take data
    with Wire(broker.port) as w:
        p, _ = produce(w, "grow", 3, make_batch([(None, b"v")] * 3))
        assert p.error_code == 0 and p.base_offset == 0


def test_delete_records(broker, admin, kp_admin) -> None:
    _wait(admin.create_topics([NewTopic("dr", 2, 1)]))
    with Wire(broker.port) as w:
        for _ in range(5):
            produce(w, "dr", 0, make_batch([(None, b"v")] * 2))
            produce(w, "dr", 1, make_batch([(None, b"v")] * 2))
    [res] = _wait(admin.delete_records([TopicPartition("dr", 0, 4)])).values()
    assert res.low_watermark == 4
    lo = admin.list_offsets({TopicPartition("dr", 0): OffsetSpec.earliest()})
    assert next(iter(lo.values())).result(timeout=10).offset == 4
    from kafka import TopicPartition as KPTopicPartition

    out = kp_admin.delete_records({KPTopicPartition("dr", 1): 10})
    assert next(iter(out.values()))["low_watermark"] == 10
    [fut] = admin.delete_records([TopicPartition("dr", 0, 99)]).values()
    with pytest.raises(KafkaException):
        fut.result(timeout=10)
    with Wire(broker.port) as w:
        p, _ = fetch(w, "dr", 0, 0)
        assert p.error_code == 1  # OFFSET_OUT_OF_RANGE below the log start
        p, _ = fetch(w, "dr", 0, 4)
        assert p.error_code == 0 and p.log_start_offset == 4
    # the log start offset survives a restart
    kp_admin.close()  # before the restart: kafka-python leaks a socket reconnecting otherwise
    broker.restart()
    with Wire(broker.port) as w:
        p, _ = fetch(w, "dr", 0, 4)
        assert p.error_code == 0 and p.log_start_offset == 4


def test_describe_cluster_confluent(broker, admin) -> None:
    desc = admin.describe_cluster(include_authorized_operations=True).result(timeout=10)
    assert desc.controller.id == 1
    assert [n.id for n in desc.nodes] == [1]
    assert desc.cluster_id


def test_offset_for_leader_epoch(broker, admin) -> None:
    _wait(admin.create_topics([NewTopic("ep", 1, 1)]))
    with Wire(broker.port) as w:
        produce(w, "ep", 0, make_batch([(None, b"v")] * 7))
        for version in (2, 3, 4):
            m = req(23, version)
            kw = {"replica_id": -1} if version >= 3 else {}
            r = m.OffsetForLeaderEpochRequest(**kw, topics=(
                m.OffsetForLeaderTopic(topic="ep", partitions=(
                    m.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0),
                    m.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=5),
                    m.OffsetForLeaderPartition(partition=0, current_leader_epoch=3, leader_epoch=0))),
                m.OffsetForLeaderTopic(topic="nope", partitions=(
                    m.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0),))))
            resp = w.request(r)
            a, b, c = resp.topics[0].partitions
            assert (a.error_code, a.leader_epoch, a.end_offset) == (0, 0, 7)
            assert (b.error_code, b.leader_epoch, b.end_offset) == (0, -1, -1)
            assert c.error_code == 75  # UNKNOWN_LEADER_EPOCH
            assert resp.topics[1].partitions[0].error_code == 3


def test_describe_log_dirs_reports_size(broker, admin) -> None:
    _wait(admin.create_topics([NewTopic("ld", 2, 1)]))
    batch = make_batch([(None, b"x" * 100)] * 4)
    with Wire(broker.port) as w:
        produce(w, "ld", 1, batch)
        for version in (1, 4):
            m = req(35, version)
            topics = (m.DescribableLogDirTopic(topic="ld", partitions=(0, 1)),)
            resp = w.request(m.DescribeLogDirsRequest(topics=topics))
            [result] = resp.results
            assert result.error_code == 0
            sizes = {p.partition_index: p.partition_size for p in result.topics[0].partitions}
            assert sizes == {0: 0, 1: len(batch)}
            if version >= 4:
                assert result.total_bytes > 0


def test_plan_limits(broker_factory) -> None:
    b = broker_factory(settings={"kastle.plan.max.retention.ms": 86_400_000, "log.retention.ms": 3_600_000,
                                 "kastle.plan.max.partitions": 4})
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    _wait(admin.create_topics([NewTopic("capped", 2, 1)]))
    res = ConfigResource("topic", "capped", incremental_configs=[
        ConfigEntry("retention.ms", "-1", incremental_operation=AlterConfigOpType.SET)])
    [fut] = admin.incremental_alter_configs([res]).values()
    err = _err(fut)
    assert err.name() == "POLICY_VIOLATION" and "retention.ms" in err.str()
    [cfg] = _wait(admin.describe_configs([ConfigResource("broker", "1")])).values()
    assert cfg["kastle.plan.max.retention.ms"].value == "86400000"
    assert cfg["kastle.plan.max.retention.ms"].is_read_only
    [fut] = admin.create_partitions([NewPartitions("capped", 5)]).values()
    assert _err(fut).name() == "POLICY_VIOLATION"
    _wait(admin.create_partitions([NewPartitions("capped", 4)]))
    ka, _ke = _kp()
    kp = ka.KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        out = kp.alter_configs([ka.ConfigResource(ka.ConfigResourceType.TOPIC, "capped",
                                                  configs={"retention.ms": "90000000"})])
        assert "PolicyViolation" in str(out["topic"]["capped"]), out
    finally:
        kp.close()
