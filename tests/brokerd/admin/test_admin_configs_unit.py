"""Topic and broker config definitions, validation, resolution and synonyms."""

import pytest

from brokerd.kafka_configs import (
    AlterOp,
    BrokerConfigs,
    ConfigSource,
    ConfigType,
    InvalidConfig,
    PolicyViolation,
    TopicConfig,
    incremental_alter,
    validate_topic_configs,
)


def test_kafka_defaults() -> None:
    t = TopicConfig(BrokerConfigs())
    assert t.retention_ms == 604_800_000
    assert t.retention_bytes == -1
    assert t.segment_bytes == 1_073_741_824
    assert t.segment_ms == 604_800_000
    assert t.max_message_bytes == 1_048_588
    assert t.get("cleanup.policy") == ["delete"]
    assert t.get("message.timestamp.type") == "CreateTime"
    assert t.get("min.insync.replicas") == 1
    b = BrokerConfigs()
    assert b.get("num.partitions") == 1
    assert b.get("auto.create.topics.enable") is True
    assert b.get("quota.window.num") == 11


def test_describe_topic_default_reports_hours_synonym() -> None:
    t = TopicConfig(BrokerConfigs())
    [entry] = t.describe(["retention.ms"], include_synonyms=True, include_documentation=True)
    assert entry.value == "604800000"
    assert entry.source is ConfigSource.DEFAULT_CONFIG
    assert entry.config_type is ConfigType.LONG
    assert "retain a log" in entry.documentation
    assert [(s.name, s.value, s.source) for s in entry.synonyms] == [
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG)]


def test_override_and_static_broker_precedence() -> None:
    b = BrokerConfigs({"log.retention.ms": 3_600_000, "log.segment.bytes": "2097152"})
    t = TopicConfig(b, {"retention.ms": "60000"})
    [entry] = t.describe(["retention.ms"], include_synonyms=True)
    assert entry.value == "60000" and entry.source is ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert [(s.name, s.source) for s in entry.synonyms] == [
        ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.retention.ms", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", ConfigSource.DEFAULT_CONFIG)]
    assert TopicConfig(b).retention_ms == 3_600_000
    [seg] = TopicConfig(b).describe(["segment.bytes"])
    assert (seg.value, seg.source) == ("2097152", ConfigSource.STATIC_BROKER_CONFIG)
    # hours converted to ms for the topic value
    assert TopicConfig(BrokerConfigs({"log.retention.hours": 2})).retention_ms == 7_200_000


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("retention.ms", "abc", "retention.ms"),
    ("retention.ms", "-2", "at least -1"),
    ("segment.bytes", "1000", "at least 1048576"),
    ("cleanup.policy", "shred", "String must be one of: delete, compact"),
    ("cleanup.policy", "", "must not be empty"),
    ("min.cleanable.dirty.ratio", "1.5", "Value must be in [0,...,1]"),
    ("min.cleanable.dirty.ratio", "half", "Expected value to be a double"),
    ("delete.retention.ms", "-1", "at least 0"),
    ("max.compaction.lag.ms", "0", "at least 1"),
    ("message.timestamp.type", "Now", "CreateTime, LogAppendTime"),
    ("no.such.config", "1", "Unknown topic config name: no.such.config"),
    ("min.insync.replicas", "0", "min.insync.replicas"),
    ("max.message.bytes", "99999999999", "max.message.bytes"),
])
def test_invalid_topic_configs_name_the_key(key: str, value: str, needle: str) -> None:
    with pytest.raises(InvalidConfig) as exc:
        validate_topic_configs({key: value}, BrokerConfigs())
    assert needle in str(exc.value)
    assert exc.value.key == key
    assert exc.value.error_code == 40


def test_plan_limits_cap_topic_configs() -> None:
    b = BrokerConfigs({"kastle.plan.max.retention.ms": 86_400_000, "log.retention.ms": 3_600_000,
                       "kastle.plan.max.partitions": 10})
    assert validate_topic_configs({"retention.ms": "86400000"}, b) == {"retention.ms": "86400000"}
    with pytest.raises(PolicyViolation, match=r"retention.ms=86400001 exceeds the plan limit"):
        validate_topic_configs({"retention.ms": "86400001"}, b)
    with pytest.raises(PolicyViolation, match="unlimited"):
        validate_topic_configs({"retention.ms": "-1"}, b)
    b.check_partition_count(8, 2)
    with pytest.raises(PolicyViolation, match="at most 10"):
        b.check_partition_count(8, 3)
    # broker defaults beyond the plan fail at startup
    with pytest.raises(PolicyViolation):
        BrokerConfigs({"kastle.plan.max.retention.ms": 1000})


def test_incremental_alter_ops() -> None:
    b = BrokerConfigs()
    new = incremental_alter({"retention.ms": "1000"},
                            [("retention.bytes", AlterOp.SET, "5000"),
                             ("retention.ms", AlterOp.DELETE, None)],
                            b)
    assert new == {"retention.bytes": "5000"}
    assert incremental_alter({}, [("cleanup.policy", AlterOp.APPEND, "delete")], b) == {
        "cleanup.policy": "delete"}
    assert incremental_alter({}, [("cleanup.policy", AlterOp.APPEND, "compact")], b) == {
        "cleanup.policy": "delete,compact"}
    with pytest.raises(InvalidConfig, match="String must be one of"):
        incremental_alter({}, [("cleanup.policy", AlterOp.APPEND, "shred")], b)
    # the compaction lags are checked against each other on the effective values
    with pytest.raises(InvalidConfig, match=r"min.compaction.lag.ms \(5000\) > max.compaction.lag.ms"):
        incremental_alter({"max.compaction.lag.ms": "1000"},
                          [("min.compaction.lag.ms", AlterOp.SET, "5000")], b)
    with pytest.raises(InvalidConfig) as exc:
        validate_topic_configs({"max.compaction.lag.ms": "10"},
                               BrokerConfigs({"log.cleaner.min.compaction.lag.ms": 100}))
    assert exc.value.key == "max.compaction.lag.ms"
    with pytest.raises(InvalidConfig, match="not a list"):
        incremental_alter({}, [("retention.ms", AlterOp.APPEND, "1")], b)


def test_broker_dynamic_alter_persists(tmp_path) -> None:
    path = tmp_path / "broker.json"
    b = BrokerConfigs({"num.partitions": 3}, state_path=path)
    b.alter({"log.retention.ms": "1000"}, default=True, replace=False)
    assert TopicConfig(b).retention_ms == 1000
    with pytest.raises(InvalidConfig, match="read-only"):
        b.alter({"num.partitions": "5"}, default=True, replace=False)
    with pytest.raises(InvalidConfig, match="read-only"):
        b.alter({"kastle.plan.max.retention.ms": "5"}, default=True, replace=False)
    b2 = BrokerConfigs({"num.partitions": 3}, state_path=path)
    [entry] = b2.describe(["log.retention.ms"], include_synonyms=True)
    assert (entry.value, entry.source) == ("1000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    [np] = b2.describe(["num.partitions"])
    assert (np.value, np.source, np.read_only) == ("3", ConfigSource.STATIC_BROKER_CONFIG, True)


def test_unknown_static_broker_key_fails() -> None:
    with pytest.raises(InvalidConfig, match=r"log\.retention\.mss"):
        BrokerConfigs({"log.retention.mss": 1})


def test_cleaner_configs_have_kafkas_names_defaults_and_synonyms() -> None:
    b = BrokerConfigs({"log.cleaner.delete.retention.ms": 1000, "log.cleanup.policy": "compact"})
    tc = TopicConfig(b)
    assert tc.get("delete.retention.ms") == 1000 and tc.cleanup_policy == ["compact"]
    [entry] = tc.describe(["delete.retention.ms"], include_synonyms=True)
    assert entry.source == ConfigSource.STATIC_BROKER_CONFIG
    assert [s.name for s in entry.synonyms] == ["log.cleaner.delete.retention.ms"] * 2
    defaults = {d.name: d.value for d in TopicConfig(BrokerConfigs()).describe()}
    assert defaults["cleanup.policy"] == "delete" and defaults["min.cleanable.dirty.ratio"] == "0.5"
    assert defaults["min.compaction.lag.ms"] == "0" and defaults["delete.retention.ms"] == "86400000"
    assert defaults["max.compaction.lag.ms"] == str(2**63 - 1)
    broker = {d.name: d for d in BrokerConfigs().describe()}
    assert broker["log.cleaner.threads"].value == "1" and not broker["log.cleaner.threads"].read_only
    assert broker["log.cleaner.dedupe.buffer.size"].value == "134217728"
    # The cleaner's broker settings change at runtime (AlterConfigs by a super user).
    b.alter({"log.cleaner.io.max.bytes.per.second": "1048576", "log.cleaner.threads": "2"},
            default=True, replace=False)
    assert b.get("log.cleaner.io.max.bytes.per.second") == 1048576.0 and b.get("log.cleaner.threads") == 2
    with pytest.raises(InvalidConfig, match=r"log\.cleaner\.threads"):
        b.alter({"log.cleaner.threads": "-1"}, default=True, replace=False)
