"""Topic and broker configuration: definitions, validation, resolution and description.

Names, types, defaults, valid ranges and documentation follow Apache Kafka 4.0. Values are
kept as strings, as Kafka keeps them (AlterConfigs and CreateTopics send strings); they are
parsed and validated against their definition on the way in.

Resolution of a topic config, first match wins (what DescribeConfigs reports as synonyms):

1. the topic's own override                       source DYNAMIC_TOPIC_CONFIG (1)
2. for each broker synonym, in Kafka's order (e.g. ``log.retention.ms``,
   ``log.retention.minutes``, ``log.retention.hours``):
   a dynamic per-broker value                     source DYNAMIC_BROKER_CONFIG (2)
   a dynamic cluster-default value                source DYNAMIC_DEFAULT_BROKER_CONFIG (3)
   the broker's config file                       source STATIC_BROKER_CONFIG (4)
   the built-in default                           source DEFAULT_CONFIG (5)

Plan limits. The control plane writes ``kastle.plan.*`` keys in the broker's config file
(they are read-only over the Kafka protocol). They cap what a topic may be set to:
``kastle.plan.max.retention.ms`` (``retention.ms=-1``, i.e. forever, is then refused),
``kastle.plan.max.retention.bytes`` (per partition), ``kastle.plan.max.message.bytes`` and
``kastle.plan.max.partitions`` (all partitions of the cluster). A value over a cap raises
:class:`PolicyViolation` (Kafka's POLICY_VIOLATION, as Confluent Cloud answers); a value that
is not valid at all raises :class:`InvalidConfig` (INVALID_CONFIG). Both name the key and say
what is allowed.

Cross-key rule (Kafka's LogConfig): ``min.compaction.lag.ms`` may not exceed
``max.compaction.lag.ms`` (INVALID_CONFIG naming both).

Deliberately unsupported: any ``compression.type`` other than ``producer`` (batches are stored
as sent).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokerd.durable import atomic_write_json

log = logging.getLogger("brokerd.configs")

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


class ConfigType(enum.IntEnum):
    """DescribeConfigs v3+ ``config_type``."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(enum.IntEnum):
    """DescribeConfigs ``config_source`` / synonym ``source``."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7


class ResourceType(enum.IntEnum):
    """ConfigResource.Type as the Kafka protocol numbers it."""

    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8
    CLIENT_METRICS = 16


class AlterOp(enum.IntEnum):
    """IncrementalAlterConfigs ``config_operation``."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


# Kafka error codes (kept as ints so that this module does not import kio).
INVALID_CONFIG = 40
POLICY_VIOLATION = 44


class ConfigError(ValueError):
    """A config key or value was refused. ``error_code`` is the Kafka error to answer with."""

    error_code: int = INVALID_CONFIG

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class InvalidConfig(ConfigError):
    error_code = INVALID_CONFIG


class PolicyViolation(ConfigError):
    error_code = POLICY_VIOLATION


# ----------------------------------------------------------------------------- validators

Validator = Callable[[str, Any], None]


def at_least(minimum: int) -> Validator:
    def check(key: str, value: Any) -> None:
        if value is not None and value < minimum:
            raise InvalidConfig(key, f"Invalid value {value} for configuration {key}: "
                                     f"Value must be at least {minimum}")
    check.allowed = f"[{minimum},...]"  # type: ignore[attr-defined]
    return check


def between(minimum: int, maximum: int) -> Validator:
    def check(key: str, value: Any) -> None:
        if value is not None and not minimum <= value <= maximum:
            raise InvalidConfig(key, f"Invalid value {value} for configuration {key}: "
                                     f"Value must be in [{minimum},...,{maximum}]")
    check.allowed = f"[{minimum},...,{maximum}]"  # type: ignore[attr-defined]
    return check


def one_of(*choices: str, unsupported: Iterable[str] = ()) -> Validator:
    unsupported = tuple(unsupported)

    def check(key: str, value: Any) -> None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item in unsupported:
                raise InvalidConfig(key, f"{key}={item} is not supported by this broker; "
                                         f"allowed: {', '.join(choices)}")
            if item not in choices:
                raise InvalidConfig(key, f"Invalid value {item} for configuration {key}: "
                                         f"String must be one of: {', '.join(choices)}")
    check.allowed = ", ".join(choices)  # type: ignore[attr-defined]
    return check


def _non_empty_list(key: str, value: Any) -> None:
    if isinstance(value, list) and not value:
        raise InvalidConfig(key, f"Invalid value for configuration {key}: the list must not be empty")


def _throttled_replicas(key: str, value: Any) -> None:
    """Kafka's ThrottledReplicaListValidator: '*' alone, or [PartitionId]:[BrokerId] entries."""
    if value == ["*"]:
        return
    for entry in value:
        partition, sep, node = entry.partition(":")
        if not (sep and partition.strip().isdigit() and node.strip().isdigit()):
            raise InvalidConfig(key, f"Invalid value {','.join(value)} for configuration {key}: "
                                     "must be the literal '*' or a list of replicas in the form "
                                     "[PartitionId]:[BrokerId],[PartitionId]:[BrokerId],...")


def throttled_replicas(value: list[str]) -> frozenset[tuple[int, int]] | None:
    """The (partition, broker) pairs of a parsed *.replication.throttled.replicas; None for '*'."""
    if value == ["*"]:
        return None
    return frozenset((int(p), int(b)) for p, _, b in (e.partition(":") for e in value))


# ----------------------------------------------------------------------------- definitions

@dataclass(frozen=True, slots=True)
class Synonym:
    """A broker key that provides a topic config's default, and how to convert its value."""

    name: str
    scale: int = 1  # broker value * scale = topic value (hours -> ms etc.)


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    type: ConfigType
    default: str | None
    doc: str
    validators: tuple[Validator, ...] = ()
    synonyms: tuple[Synonym, ...] = ()
    read_only: bool = False
    sensitive: bool = False
    dynamic: bool = True  # for broker keys: may be altered with AlterConfigs

    def parse(self, raw: Any, *, validate: bool = True) -> Any:
        """Parse a string (or a native value from a TOML file) and validate it."""
        key = self.name
        value: Any
        if raw is None:
            return None
        try:
            if self.type is ConfigType.BOOLEAN:
                if isinstance(raw, bool):
                    value = raw
                elif str(raw).strip().lower() in ("true", "false"):
                    value = str(raw).strip().lower() == "true"
                else:
                    raise ValueError
            elif self.type in (ConfigType.INT, ConfigType.SHORT, ConfigType.LONG):
                if isinstance(raw, bool):
                    raise ValueError
                value = int(str(raw).strip()) if not isinstance(raw, int) else raw
                limit = LONG_MAX if self.type is ConfigType.LONG else INT_MAX
                if not -limit - 1 <= value <= limit:
                    raise ValueError
            elif self.type is ConfigType.DOUBLE:
                value = float(raw)
            elif self.type is ConfigType.LIST:
                if isinstance(raw, list | tuple):
                    value = [str(v).strip() for v in raw]
                else:
                    value = [v.strip() for v in str(raw).split(",") if v.strip()]
            else:
                value = str(raw).strip()
        except ValueError:
            raise InvalidConfig(key, f"Invalid value {raw} for configuration {key}: "
                                     f"Expected value to be {self._type_phrase()}") from None
        if validate:
            for validator in self.validators:
                validator(key, value)
        return value

    def canonical(self, raw: Any) -> str | None:
        """Validate and return the string form Kafka would store and describe."""
        value = self.parse(raw)
        return format_value(value)

    def _type_phrase(self) -> str:
        return {
            ConfigType.BOOLEAN: "either true or false",
            ConfigType.INT: "a 32-bit integer",
            ConfigType.SHORT: "a 16-bit integer",
            ConfigType.LONG: "a 64-bit integer",
            ConfigType.DOUBLE: "a double",
            ConfigType.LIST: "a comma-separated list",
        }.get(self.type, "a string")


def format_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


#: Confluent's subject name strategies, as its serializers and topic configs name them.
SUBJECT_STRATEGIES = tuple(
    f"io.confluent.kafka.serializers.subject.{name}"
    for name in ("TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy")
)

_H = 3_600_000
_M = 60_000

TOPIC_CONFIG_DEFS: dict[str, ConfigDef] = {d.name: d for d in [
    ConfigDef(
        "cleanup.policy", ConfigType.LIST, "delete",
        "This config designates the retention policy to use on log segments. The \"delete\" policy "
        "(which is the default) will discard old segments when their retention time or size limit "
        "has been reached. The \"compact\" policy will enable log compaction, which retains the "
        "latest value for each key. It is also possible to specify both policies in a "
        "comma-separated list (e.g. \"delete,compact\"). In this case, old segments will be "
        "discarded per the retention time and size configuration, while retained segments will be "
        "compacted.",
        (one_of("delete", "compact"), _non_empty_list),
        (Synonym("log.cleanup.policy"),)),
    *(ConfigDef(
        f"confluent.{part}.schema.validation", ConfigType.BOOLEAN, "false",
        f"When set to true, every record's {part} must carry the Schema Registry wire format (magic "
        f"byte 0 and a 4-byte schema id) with an id registered under the topic's {part} subject "
        f"(see confluent.{part}.subject.name.strategy); other batches are refused with "
        "INVALID_RECORD.") for part in ("key", "value")),
    *(ConfigDef(
        f"confluent.{part}.subject.name.strategy", ConfigType.STRING, SUBJECT_STRATEGIES[0],
        f"How the subject a record's {part} schema id must be registered under is named: "
        f"TopicNameStrategy <topic>-{part}, RecordNameStrategy the record's full name, "
        "TopicRecordNameStrategy <topic>-<record full name>.",
        (one_of(*SUBJECT_STRATEGIES),)) for part in ("key", "value")),
    ConfigDef(
        "delete.retention.ms", ConfigType.LONG, "86400000",
        "The amount of time to retain delete tombstone markers for log compacted topics. This "
        "setting also gives a bound on the time in which a consumer must complete a read if they "
        "begin from offset 0 to ensure that they get a valid snapshot of the final stage (otherwise "
        "delete tombstones may be collected before they complete their scan).",
        (at_least(0),), (Synonym("log.cleaner.delete.retention.ms"),)),
    ConfigDef(
        "follower.replication.throttled.replicas", ConfigType.LIST, "",
        "A list of replicas for which log replication should be throttled on the follower side. The "
        "list should describe a set of replicas in the form [PartitionId]:[BrokerId],[PartitionId]:"
        "[BrokerId]:... or alternatively the wildcard '*' can be used to throttle all replicas for "
        "this topic.", (_throttled_replicas,)),
    ConfigDef(
        "max.compaction.lag.ms", ConfigType.LONG, str(LONG_MAX),
        "The maximum time a message will remain ineligible for compaction in the log. Only "
        "applicable for logs that are being compacted.",
        (at_least(1),), (Synonym("log.cleaner.max.compaction.lag.ms"),)),
    ConfigDef(
        "min.cleanable.dirty.ratio", ConfigType.DOUBLE, "0.5",
        "This configuration controls how frequently the log compactor will attempt to clean the "
        "log (assuming log compaction is enabled). By default we will avoid cleaning a log where "
        "more than 50% of the log has been compacted. This ratio bounds the maximum space wasted "
        "in the log by duplicates. If the max.compaction.lag.ms or the min.compaction.lag.ms "
        "configurations are also specified, then the log compactor considers the log to be "
        "eligible for compaction as soon as either: (i) the dirty ratio threshold has been met "
        "and the log has had dirty (uncompacted) records for at least the min.compaction.lag.ms "
        "duration, or (ii) if the log has had dirty (uncompacted) records for at most the "
        "max.compaction.lag.ms period.",
        (between(0, 1),), (Synonym("log.cleaner.min.cleanable.ratio"),)),
    ConfigDef(
        "min.compaction.lag.ms", ConfigType.LONG, "0",
        "The minimum time a message will remain uncompacted in the log. Only applicable for logs "
        "that are being compacted.",
        (at_least(0),), (Synonym("log.cleaner.min.compaction.lag.ms"),)),
    ConfigDef(
        "compression.type", ConfigType.STRING, "producer",
        "Specify the final compression type for a given topic. Only 'producer' is supported: batches "
        "are retained in the original compression codec set by the producer.",
        (one_of("producer", unsupported=("uncompressed", "gzip", "snappy", "lz4", "zstd")),),
        (Synonym("compression.type"),)),
    ConfigDef(
        "max.message.bytes", ConfigType.INT, "1048588",
        "The largest record batch size allowed by Kafka (after compression if compression is "
        "enabled).",
        (at_least(0),), (Synonym("message.max.bytes"),)),
    ConfigDef(
        "message.timestamp.type", ConfigType.STRING, "CreateTime",
        "Define whether the timestamp in the message is message create time or log append time.",
        (one_of("CreateTime", "LogAppendTime"),), (Synonym("log.message.timestamp.type"),)),
    ConfigDef(
        "min.insync.replicas", ConfigType.INT, "1",
        "When a producer sets acks to \"all\" (or \"-1\"), this configuration specifies the minimum "
        "number of replicas that must acknowledge a write for the write to be considered successful.",
        (at_least(1),), (Synonym("min.insync.replicas"),)),
    ConfigDef(
        "retention.bytes", ConfigType.LONG, "-1",
        "This configuration controls the maximum size a partition (which consists of log segments) "
        "can grow to before we will discard old log segments to free up space if we are using the "
        "\"delete\" retention policy. By default there is no size limit only a time limit.",
        (), (Synonym("log.retention.bytes"),)),
    ConfigDef(
        "retention.ms", ConfigType.LONG, "604800000",
        "This configuration controls the maximum time we will retain a log before we will discard "
        "old log segments to free up space if we are using the \"delete\" retention policy. This "
        "represents an SLA on how soon consumers must read their data. If set to -1, no time limit "
        "is applied.",
        (at_least(-1),),
        (Synonym("log.retention.ms"), Synonym("log.retention.minutes", _M),
         Synonym("log.retention.hours", _H))),
    ConfigDef(
        "segment.bytes", ConfigType.INT, "1073741824",
        "This configuration controls the segment file size for the log. Retention and cleaning is "
        "always done a file at a time so a larger segment size means fewer files but less granular "
        "control over retention.",
        (at_least(1024 * 1024),), (Synonym("log.segment.bytes"),)),
    ConfigDef(
        "segment.ms", ConfigType.LONG, "604800000",
        "This configuration controls the period of time after which Kafka will force the log to roll "
        "even if the segment file isn't full to ensure that retention can delete or compact old data.",
        (at_least(1),), (Synonym("log.roll.ms"), Synonym("log.roll.hours", _H))),
]}

#: The topic configs this broker honours (what CreateTopics/AlterConfigs accept).
SUPPORTED_TOPIC_CONFIGS = frozenset(TOPIC_CONFIG_DEFS)

#: Topic configs storage applies, and the brokerd.storage.LogSettings attribute each sets.
LOG_SETTINGS: dict[str, str] = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "max.message.bytes": "max_message_bytes",
    "message.timestamp.type": "timestamp_type",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "min.cleanable.dirty.ratio": "min_cleanable_ratio",
    "min.compaction.lag.ms": "min_compaction_lag_ms",
    "max.compaction.lag.ms": "max_compaction_lag_ms",
    "delete.retention.ms": "delete_retention_ms",
    "confluent.key.schema.validation": "key_schema_validation",
    "confluent.value.schema.validation": "value_schema_validation",
    "confluent.key.subject.name.strategy": "key_subject_strategy",
    "confluent.value.subject.name.strategy": "value_subject_strategy",
}

PLAN_LIMIT_KEYS = {
    "retention.ms": "kastle.plan.max.retention.ms",
    "retention.bytes": "kastle.plan.max.retention.bytes",
    "max.message.bytes": "kastle.plan.max.message.bytes",
}

BROKER_CONFIG_DEFS: dict[str, ConfigDef] = {d.name: d for d in [
    ConfigDef("follower.replication.throttled.rate", ConfigType.LONG, str(LONG_MAX),
              "A long representing the upper bound (bytes/sec) on replication traffic for followers "
              "enumerated in the property follower.replication.throttled.replicas (for each topic). "
              "This property can be only set dynamically. It is suggested that the limit be kept "
              "above 1MB/s for accurate behaviour.", (at_least(1),)),
    ConfigDef("auto.create.topics.enable", ConfigType.BOOLEAN, "true",
              "Enable auto creation of topic on the server.", dynamic=False),
    ConfigDef("compression.type", ConfigType.STRING, "producer",
              "Specify the final compression type for a given topic. Only 'producer' is supported.",
              (one_of("producer", unsupported=("uncompressed", "gzip", "snappy", "lz4", "zstd")),)),
    ConfigDef("default.replication.factor", ConfigType.INT, "1",
              "The replication factor for automatically created topics, and for topics created "
              "with a replication factor of -1.", (at_least(1),), read_only=True, dynamic=False),
    ConfigDef("delete.topic.enable", ConfigType.BOOLEAN, "true",
              "Enables delete topic. Delete topic through the admin tool will have no effect if this "
              "config is turned off.", dynamic=False),
    # Where the broker listens and what it tells clients: the bound addresses, set at start-up
    # (Broker.start), so an ephemeral port 0 is described as the port in use.
    ConfigDef("listeners", ConfigType.STRING, "PLAINTEXT://:9092",
              "Listener List - Comma-separated list of URIs we will listen on and the listener names.",
              read_only=True, dynamic=False),
    ConfigDef("advertised.listeners", ConfigType.STRING, None,
              "Listeners to publish to ZooKeeper/clients to use, if different than the listeners "
              "config property.", read_only=True, dynamic=False),
    ConfigDef("log.dirs", ConfigType.LIST, None,
              "A comma-separated list of the directories where the log data is stored.",
              read_only=True, dynamic=False),
    ConfigDef("node.id", ConfigType.INT, "-1",
              "The node ID associated with the roles this process is playing.",
              read_only=True, dynamic=False),
    ConfigDef("broker.rack", ConfigType.STRING, None,
              "Rack of the broker. This will be used in rack aware replication assignment for fault "
              "tolerance.", read_only=True, dynamic=False),
    ConfigDef("connections.max.idle.ms", ConfigType.LONG, "600000",
              "Idle connections timeout: the server socket processor threads close the connections "
              "that idle more than this", dynamic=False),
    ConfigDef("fetch.max.bytes", ConfigType.INT, "57671680",
              "The maximum number of bytes we will return for a fetch request. Must be at least 1024.",
              (at_least(1024),), dynamic=False),
    ConfigDef("sasl.enabled.mechanisms", ConfigType.LIST, "GSSAPI",
              "The list of SASL mechanisms enabled in the Kafka server.", dynamic=False),
    ConfigDef("sasl.server.max.receive.size", ConfigType.INT, "524288",
              "The maximum receive size allowed before and during initial SASL authentication.",
              dynamic=False),
    ConfigDef("log.index.interval.bytes", ConfigType.INT, "4096",
              "The interval with which we add an entry to the offset index.", (at_least(0),),
              dynamic=False),
    # The classic group coordinator (brokerd/groups). Static in Kafka too.
    ConfigDef("group.min.session.timeout.ms", ConfigType.INT, "6000",
              "The minimum allowed session timeout for registered consumers.", dynamic=False),
    ConfigDef("group.max.session.timeout.ms", ConfigType.INT, "1800000",
              "The maximum allowed session timeout for registered consumers.", dynamic=False),
    ConfigDef("group.initial.rebalance.delay.ms", ConfigType.INT, "3000",
              "The amount of time the group coordinator will wait for more consumers to join a new "
              "group before performing the first rebalance.", dynamic=False),
    ConfigDef("group.max.size", ConfigType.INT, str(INT_MAX),
              "The maximum number of consumers that a single consumer group can accommodate.",
              (at_least(1),), dynamic=False),
    ConfigDef("group.consumer.session.timeout.ms", ConfigType.INT, "45000",
              "The timeout to detect client failures when using the consumer group protocol.",
              (at_least(1),), dynamic=False),
    ConfigDef("group.consumer.heartbeat.interval.ms", ConfigType.INT, "5000",
              "The heartbeat interval given to the members of a consumer group.", (at_least(1),),
              dynamic=False),
    ConfigDef("group.consumer.max.size", ConfigType.INT, str(INT_MAX),
              "The maximum number of consumers that a single consumer group can accommodate.",
              (at_least(1),), dynamic=False),
    ConfigDef("group.consumer.assignors", ConfigType.LIST, "uniform,range",
              "The server-side assignors; the first one is used by default.", dynamic=False),
    ConfigDef("group.consumer.migration.policy", ConfigType.STRING, "bidirectional",
              "The config that enables converting the non-empty classic group using the consumer "
              "embedded protocol to the non-empty consumer group using the consumer group protocol "
              "and vice versa; conversions of empty groups are always supported.",
              dynamic=False),
    ConfigDef("offsets.retention.minutes", ConfigType.INT, "10080",
              "For subscribed consumers, committed offset of a specific partition will be expired "
              "and discarded when the consumer group is empty for this long.", (at_least(1),),
              dynamic=False),
    ConfigDef("offsets.retention.check.interval.ms", ConfigType.LONG, "600000",
              "Frequency at which to check for stale offsets", (at_least(1),), dynamic=False),
    ConfigDef("offset.metadata.max.bytes", ConfigType.INT, "4096",
              "The maximum size for a metadata entry associated with an offset commit.",
              dynamic=False),
    ConfigDef("producer.id.expiration.ms", ConfigType.INT, "86400000",
              "The time in ms that a topic partition leader will wait before expiring producer IDs.",
              (at_least(1),), dynamic=False),
    ConfigDef("log.cleanup.policy", ConfigType.LIST, "delete",
              "The default cleanup policy for segments beyond the retention window. A comma "
              "separated list of valid policies.", (one_of("delete", "compact"), _non_empty_list)),
    # The log cleaner (brokerd/storage/cleaner.py). Kafka's names and defaults.
    ConfigDef("log.cleaner.backoff.ms", ConfigType.LONG, "15000",
              "The amount of time to sleep when there are no logs to clean", (at_least(0),)),
    ConfigDef("log.cleaner.dedupe.buffer.size", ConfigType.LONG, "134217728",
              "The total memory used for log deduplication across all cleaner threads",
              (at_least(1024),)),
    ConfigDef("log.cleaner.delete.retention.ms", ConfigType.LONG, "86400000",
              "The amount of time to retain tombstone message markers for log compacted topics. "
              "This setting also gives a bound on the time in which a consumer must complete a read "
              "if they begin from offset 0 to ensure that they get a valid snapshot of the final "
              "stage (otherwise tombstones messages may be collected before a consumer completes "
              "their scan).", (at_least(0),)),
    ConfigDef("log.cleaner.enable", ConfigType.BOOLEAN, "true",
              "Enable the log cleaner process to run on the server. Should be enabled if using any "
              "topics with a cleanup.policy=compact including the internal offsets topic.",
              dynamic=False),
    ConfigDef("log.cleaner.io.buffer.load.factor", ConfigType.DOUBLE, "0.9",
              "Log cleaner dedupe buffer load factor. The percentage full the dedupe buffer can "
              "become.", (between(0, 1),)),
    ConfigDef("log.cleaner.io.max.bytes.per.second", ConfigType.DOUBLE, "1.7976931348623157E308",
              "The log cleaner will be throttled so that the sum of its read and write i/o will be "
              "less than this value on average"),
    ConfigDef("log.cleaner.max.compaction.lag.ms", ConfigType.LONG, str(LONG_MAX),
              "The maximum time a message will remain ineligible for compaction in the log. Only "
              "applicable for logs that are being compacted.", (at_least(1),)),
    ConfigDef("log.cleaner.min.cleanable.ratio", ConfigType.DOUBLE, "0.5",
              "The minimum ratio of dirty log to total log for a log to eligible for cleaning.",
              (between(0, 1),)),
    ConfigDef("log.cleaner.min.compaction.lag.ms", ConfigType.LONG, "0",
              "The minimum time a message will remain uncompacted in the log. Only applicable for "
              "logs that are being compacted.", (at_least(0),)),
    ConfigDef("log.cleaner.threads", ConfigType.INT, "1",
              "The number of background threads to use for log cleaning", (at_least(0),)),
    ConfigDef("log.message.timestamp.type", ConfigType.STRING, "CreateTime",
              "Define whether the timestamp in the message is message create time or log append time.",
              (one_of("CreateTime", "LogAppendTime"),)),
    ConfigDef("log.retention.bytes", ConfigType.LONG, "-1",
              "The maximum size of the log before deleting it"),
    ConfigDef("log.retention.check.interval.ms", ConfigType.LONG, "300000",
              "The frequency in milliseconds that the log cleaner checks whether any log is eligible "
              "for deletion", (at_least(1),), dynamic=False),
    ConfigDef("log.retention.hours", ConfigType.INT, "168",
              "The number of hours to keep a log file before deleting it (in hours), tertiary to "
              "log.retention.ms property"),
    ConfigDef("log.retention.minutes", ConfigType.INT, None,
              "The number of minutes to keep a log file before deleting it (in minutes), secondary to "
              "log.retention.ms property. If not set, the value in log.retention.hours is used"),
    ConfigDef("log.retention.ms", ConfigType.LONG, None,
              "The number of milliseconds to keep a log file before deleting it (in milliseconds), If "
              "not set, the value in log.retention.minutes is used. If set to -1, no time limit is "
              "applied.", (at_least(-1),)),
    ConfigDef("log.roll.hours", ConfigType.INT, "168",
              "The maximum time before a new log segment is rolled out (in hours), secondary to "
              "log.roll.ms property", (at_least(1),)),
    ConfigDef("log.roll.ms", ConfigType.LONG, None,
              "The maximum time before a new log segment is rolled out (in milliseconds). If not set, "
              "the value in log.roll.hours is used", (at_least(1),)),
    # Operator-set; smaller than the 1 MiB a tenant may set on a topic (tests use small segments).
    ConfigDef("log.segment.bytes", ConfigType.INT, "1073741824",
              "The maximum size of a single log file", (at_least(1024),)),
    ConfigDef("max.connections", ConfigType.INT, str(INT_MAX),
              "The maximum number of connections we allow in the broker at any time.", (at_least(0),)),
    ConfigDef("max.connections.per.ip", ConfigType.INT, str(INT_MAX),
              "The maximum number of connections we allow from each ip address.", (at_least(0),)),
    ConfigDef("message.max.bytes", ConfigType.INT, "1048588",
              "The largest record batch size allowed by Kafka (after compression if compression is "
              "enabled).", (at_least(0),)),
    ConfigDef("min.insync.replicas", ConfigType.INT, "1",
              "When a producer sets acks to \"all\" (or \"-1\"), min.insync.replicas specifies the "
              "minimum number of replicas that must acknowledge a write for the write to be considered "
              "successful.", (at_least(1),)),
    ConfigDef("num.partitions", ConfigType.INT, "1",
              "The default number of log partitions per topic", (at_least(1),), dynamic=False),
    ConfigDef("quota.window.num", ConfigType.INT, "11",
              "The number of samples to retain in memory for client quotas", (at_least(1),),
              dynamic=False),
    ConfigDef("quota.window.size.seconds", ConfigType.INT, "1",
              "The time span of each sample for client quotas", (at_least(1),), dynamic=False),
    ConfigDef("socket.request.max.bytes", ConfigType.INT, "104857600",
              "The maximum number of bytes in a socket request", (at_least(1),), dynamic=False),
    ConfigDef("super.users", ConfigType.STRING, "",
              "List of super users (User:name;User:other). Only they may alter broker configs "
              "(plan caps included) and client quotas; when empty, nobody may.",
              read_only=True, dynamic=False),
    # Kastle-specific. Connection limit per authenticated principal (Kafka has none).
    ConfigDef("kastle.max.connections.per.principal", ConfigType.INT, str(INT_MAX),
              "The maximum number of connections one principal (API key) may hold on this broker.",
              (at_least(0),)),
    # Plan limits: written by the control plane into the config file; read-only on the wire.
    ConfigDef("kastle.plan.max.retention.ms", ConfigType.LONG, "-1",
              "Plan limit: the largest retention.ms a topic may have (-1: no limit). When set, "
              "retention.ms=-1 (forever) is refused.", (at_least(-1),), read_only=True, dynamic=False),
    ConfigDef("kastle.plan.max.retention.bytes", ConfigType.LONG, "-1",
              "Plan limit: the largest retention.bytes a partition may have (-1: no limit). When set, "
              "retention.bytes=-1 (unlimited) is refused.", (at_least(-1),), read_only=True,
              dynamic=False),
    ConfigDef("kastle.plan.max.message.bytes", ConfigType.INT, "-1",
              "Plan limit: the largest max.message.bytes a topic may have (-1: no limit).",
              (at_least(-1),), read_only=True, dynamic=False),
    ConfigDef("kastle.plan.max.partitions", ConfigType.INT, "-1",
              "Plan limit: the most partitions the cluster may hold over all topics (-1: no limit).",
              (at_least(-1),), read_only=True, dynamic=False),
]}


def _assert_synonyms_defined() -> None:
    for d in TOPIC_CONFIG_DEFS.values():
        for s in d.synonyms:
            assert s.name in BROKER_CONFIG_DEFS, s.name


_assert_synonyms_defined()


# ----------------------------------------------------------------------------- brokerd settings

#: brokerd settings (brokerd/settings.py) that are Kafka broker configs of the same name.
SHARED_KEYS = (
    "auto.create.topics.enable", "num.partitions", "default.replication.factor", "delete.topic.enable",
    "message.max.bytes", "socket.request.max.bytes", "log.segment.bytes", "log.roll.ms",
    "log.retention.ms", "log.retention.bytes", "log.retention.check.interval.ms",
    "log.message.timestamp.type", "broker.rack", "connections.max.idle.ms", "fetch.max.bytes",
    "sasl.enabled.mechanisms", "sasl.server.max.receive.size", "log.index.interval.bytes",
    "group.min.session.timeout.ms", "group.max.session.timeout.ms", "group.initial.rebalance.delay.ms",
    "group.max.size", "offsets.retention.minutes", "offsets.retention.check.interval.ms",
    "offset.metadata.max.bytes", "producer.id.expiration.ms", "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms", "group.consumer.max.size", "group.consumer.assignors",
    "group.consumer.migration.policy",
)
#: Broker configs brokerd derives from its own settings once started (Broker.start): what to set
#: instead, for an operator who names them.
DERIVED_KEYS = {
    "advertised.listeners": "set advertised.host; each listener is advertised with its port",
}
#: Keys only this module knows; registered in brokerd/settings.py by ``register_settings``.
OWN_KEYS = (
    "log.retention.hours", "log.retention.minutes", "log.roll.hours", "log.cleanup.policy",
    "log.cleaner.backoff.ms", "log.cleaner.dedupe.buffer.size", "log.cleaner.delete.retention.ms",
    "log.cleaner.enable", "log.cleaner.io.buffer.load.factor", "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.max.compaction.lag.ms", "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms", "log.cleaner.threads",
    "compression.type", "min.insync.replicas", "max.connections", "max.connections.per.ip",
    "quota.window.num", "quota.window.size.seconds", "super.users",
    "kastle.max.connections.per.principal", "kastle.plan.max.retention.ms",
    "kastle.plan.max.retention.bytes", "kastle.plan.max.message.bytes", "kastle.plan.max.partitions",
)
#: Plan quotas written by provisioning: per-user (API key) defaults, Kafka's quota keys.
QUOTA_SETTINGS = {
    "kastle.quota.user.default.producer_byte_rate": "producer_byte_rate",
    "kastle.quota.user.default.consumer_byte_rate": "consumer_byte_rate",
    "kastle.quota.user.default.request_percentage": "request_percentage",
}


def register_settings(register: Any) -> None:
    """Register the broker-config settings with brokerd.settings (type names as that module uses)."""
    kinds = {1: "bool", 2: "str", 3: "int", 4: "int", 5: "int", 6: "str", 7: "str"}
    for key in OWN_KEYS:
        d = BROKER_CONFIG_DEFS[key]
        register(key, kinds.get(int(d.type), "str"), None, d.doc.split(". ")[0])
    for key in QUOTA_SETTINGS:
        register(key, "int", None, f"plan quota: {QUOTA_SETTINGS[key]} for each user (<default> user)")


# ----------------------------------------------------------------------------- described entries

@dataclass(frozen=True, slots=True)
class DescribedSynonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class DescribedConfig:
    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    is_sensitive: bool
    config_type: ConfigType
    documentation: str | None
    synonyms: tuple[DescribedSynonym, ...] = ()


def _scaled(value: str | None, scale: int) -> str | None:
    if value is None or scale == 1:
        return value
    return str(int(value) * scale)


# ----------------------------------------------------------------------------- broker configs

def static_from_settings(config: Any) -> dict[str, Any]:
    """The Kafka broker configs an operator set (values that differ from Kafka's defaults)."""
    static: dict[str, Any] = {}
    for key in SHARED_KEYS + OWN_KEYS:
        value = config.get(key)
        if value is None or value == "":  # "" = unset (broker.rack)
            continue
        d = BROKER_CONFIG_DEFS[key]
        canon = d.canonical(value) if not isinstance(value, list) else ",".join(value)
        default = d.default
        if key == "log.retention.ms" and canon == "604800000":
            continue  # brokerd's default equals Kafka's 168 hours
        if key == "log.roll.ms" and canon == "604800000":
            continue
        if canon != default:
            static[key] = canon
    return static


def parse_super_users(value: str) -> frozenset[str]:
    out = set()
    for item in value.replace(",", ";").split(";"):
        item = item.strip()
        if item:
            out.add(item.removeprefix("User:"))
    return frozenset(out)


class BrokerConfigs:
    """A broker's configuration: static (config file/flags), dynamic (AlterConfigs), defaults.

    ``static`` holds Kafka-named keys with string or native values (from TOML). Unknown keys
    raise :class:`InvalidConfig` so that a typo in a provisioning template fails loudly.
    ``state_path`` (``<data-dir>/configs/broker.json``) persists dynamic values.
    """

    def __init__(self, static: Mapping[str, Any] | None = None, *, node_id: int = 0,
                 state_path: Path | str | None = None) -> None:
        self.node_id = node_id
        self.static: dict[str, str] = {}
        for key, raw in (static or {}).items():
            self.static[key] = self._canonical_broker(key, raw)
        self.dynamic_broker: dict[str, str] = {}
        self.dynamic_default: dict[str, str] = {}
        self.state_path = Path(state_path) if state_path else None
        if self.state_path and self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            self.dynamic_broker = {k: str(v) for k, v in state.get("broker", {}).items()}
            self.dynamic_default = {k: str(v) for k, v in state.get("default", {}).items()}
        self._cache: dict[str, Any] = {}
        self.check_plan_limits()

    def set_started(self, values: Mapping[str, Any]) -> None:
        """Static configs known once the broker runs (the bound listeners, the log directory)."""
        for key, raw in values.items():
            self.static[key] = self._canonical_broker(key, raw)
        self._cache.clear()

    # -- lookups
    @staticmethod
    def _canonical_broker(key: str, raw: Any) -> str:
        d = BROKER_CONFIG_DEFS.get(key)
        if d is None:
            raise InvalidConfig(key, f"Unknown broker config {key}")
        value = d.canonical(raw)
        assert value is not None
        return value

    def lookup(self, key: str) -> tuple[str | None, ConfigSource]:
        """The effective string value of a broker key and where it came from."""
        if key in self.dynamic_broker:
            return self.dynamic_broker[key], ConfigSource.DYNAMIC_BROKER_CONFIG
        if key in self.dynamic_default:
            return self.dynamic_default[key], ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
        if key in self.static:
            return self.static[key], ConfigSource.STATIC_BROKER_CONFIG
        return BROKER_CONFIG_DEFS[key].default, ConfigSource.DEFAULT_CONFIG

    def get(self, key: str) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            value = BROKER_CONFIG_DEFS[key].parse(self.lookup(key)[0])
            self._cache[key] = value
            return value

    def _synonym_chain(self, key: str) -> list[DescribedSynonym]:
        """All (name, source) pairs with a value, in Kafka's precedence order."""
        out: list[DescribedSynonym] = []
        names = [key]
        if key in {"log.retention.ms", "log.retention.minutes", "log.retention.hours"}:
            names = ["log.retention.ms", "log.retention.minutes", "log.retention.hours"]
            names = names[names.index(key):]
        elif key in {"log.roll.ms", "log.roll.hours"}:
            names = ["log.roll.ms", "log.roll.hours"][["log.roll.ms", "log.roll.hours"].index(key):]
        for name in names:
            out.extend(self._sources(name))
        return out

    def _sources(self, name: str) -> list[DescribedSynonym]:
        out = []
        for layer, source in ((self.dynamic_broker, ConfigSource.DYNAMIC_BROKER_CONFIG),
                              (self.dynamic_default, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
                              (self.static, ConfigSource.STATIC_BROKER_CONFIG)):
            if name in layer:
                out.append(DescribedSynonym(name, layer[name], source))
        default = BROKER_CONFIG_DEFS[name].default
        if default is not None:
            out.append(DescribedSynonym(name, default, ConfigSource.DEFAULT_CONFIG))
        return out

    def topic_default(self, topic_key: str) -> tuple[str | None, ConfigSource, list[DescribedSynonym]]:
        """The broker-provided default for a topic config, its source, and its synonyms."""
        d = TOPIC_CONFIG_DEFS[topic_key]
        synonyms: list[DescribedSynonym] = []
        for syn in d.synonyms:
            synonyms.extend(self._sources(syn.name))
        if synonyms:
            first = synonyms[0]
            scale = next(s.scale for s in d.synonyms if s.name == first.name)
            return _scaled(first.value, scale), first.source, synonyms
        return d.default, ConfigSource.DEFAULT_CONFIG, synonyms

    # -- super users
    @property
    def super_users(self) -> frozenset[str]:
        """``super.users`` as bare principal names (``User:`` dropped); empty means nobody."""
        return parse_super_users(self.get("super.users"))

    def is_super_user(self, principal: str | None) -> bool:
        """Only the principals listed in ``super.users`` may alter broker configs (including the
        plan's caps) and client quotas. An empty ``super.users`` makes nobody a super user: a
        tenant's API key must never lift its plan's quotas or caps. (On a PLAINTEXT development
        listener the principal is ANONYMOUS; list ``User:ANONYMOUS`` to allow it.)"""
        return (principal or "ANONYMOUS") in self.super_users

    # -- plan limits
    def plan_limit(self, topic_key: str) -> int | None:
        limit_key = PLAN_LIMIT_KEYS.get(topic_key)
        if limit_key is None:
            return None
        value = self.get(limit_key)
        return None if value == -1 else value

    @property
    def max_partitions(self) -> int | None:
        value = self.get("kastle.plan.max.partitions")
        return None if value == -1 else value

    def check_topic_value(self, topic_key: str, value: Any) -> None:
        """Raise PolicyViolation if a parsed topic value exceeds the plan's cap."""
        cap = self.plan_limit(topic_key)
        if cap is None:
            return
        if value == -1 and topic_key != "max.message.bytes":
            raise PolicyViolation(topic_key, f"{topic_key}=-1 (unlimited) is not allowed by the plan; "
                                             f"the maximum is {cap}")
        if value > cap:
            raise PolicyViolation(topic_key, f"{topic_key}={value} exceeds the plan limit; "
                                             f"the maximum is {cap}")

    def check_plan_limits(self) -> None:
        """The broker's own topic defaults must be within the plan (fail at startup if not)."""
        for topic_key in PLAN_LIMIT_KEYS:
            value, _, _ = self.topic_default(topic_key)
            self.check_topic_value(topic_key, TOPIC_CONFIG_DEFS[topic_key].parse(value, validate=False))

    def check_partition_count(self, current_total: int, adding: int) -> None:
        cap = self.max_partitions
        if cap is not None and current_total + adding > cap:
            raise PolicyViolation(
                "kastle.plan.max.partitions",
                f"Adding {adding} partition(s) would make {current_total + adding} in the cluster; "
                f"the plan allows at most {cap} (kastle.plan.max.partitions)")

    # -- describe
    def describe(self, keys: Iterable[str] | None = None, *, include_synonyms: bool = False,
                 include_documentation: bool = False) -> list[DescribedConfig]:
        names = sorted(BROKER_CONFIG_DEFS) if keys is None else [k for k in keys if k in BROKER_CONFIG_DEFS]
        out = []
        for name in names:
            d = BROKER_CONFIG_DEFS[name]
            chain = self._synonym_chain(name)
            value, source = self.lookup(name)
            if value is None and chain:
                value, source = chain[0].value, chain[0].source
            out.append(DescribedConfig(
                name=name, value=None if d.sensitive else value, source=source,
                read_only=d.read_only or not d.dynamic, is_sensitive=d.sensitive,
                config_type=d.type, documentation=d.doc if include_documentation else None,
                synonyms=tuple(chain) if include_synonyms else ()))
        return out

    # -- alter (dynamic broker configs)
    def _validate_dynamic(self, key: str, value: str | None) -> str | None:
        d = BROKER_CONFIG_DEFS.get(key)
        if d is None:
            raise InvalidConfig(key, f"Unknown broker config {key}")
        if d.read_only or not d.dynamic:
            raise InvalidConfig(key, f"Cannot update {key} dynamically: it is read-only")
        return None if value is None else d.canonical(value)

    def alter(self, changes: Mapping[str, str | None], *, default: bool, replace: bool,
              validate_only: bool = False) -> None:
        """Apply dynamic changes (None deletes). ``replace`` = AlterConfigs (whole set)."""
        layer = self.dynamic_default if default else self.dynamic_broker
        new = {} if replace else dict(layer)
        for key, value in changes.items():
            canon = self._validate_dynamic(key, value)
            if canon is None:
                new.pop(key, None)
            else:
                new[key] = canon
        # validate the plan limits against the would-be state
        trial = BrokerConfigs.__new__(BrokerConfigs)
        trial.node_id, trial.static, trial.state_path, trial._cache = self.node_id, self.static, None, {}
        trial.dynamic_broker = self.dynamic_broker if default else new
        trial.dynamic_default = new if default else self.dynamic_default
        trial.check_plan_limits()
        if validate_only:
            return
        if default:
            self.dynamic_default = new
        else:
            self.dynamic_broker = new
        self._cache.clear()
        if self.state_path:
            atomic_write_json(self.state_path, {"broker": self.dynamic_broker,
                                                 "default": self.dynamic_default},
                              sort_keys=True, indent=1)


# ----------------------------------------------------------------------------- topic configs

def validate_topic_config(key: str, raw: Any, broker: BrokerConfigs | None = None) -> str:
    """Validate one topic config (name and value) and return its canonical string."""
    d = TOPIC_CONFIG_DEFS.get(key)
    if d is None:
        raise InvalidConfig(key, f"Unknown topic config name: {key}. Supported: "
                                 f"{', '.join(sorted(TOPIC_CONFIG_DEFS))}")
    if raw is None:
        raise InvalidConfig(key, f"Null value not supported for topic config {key}")
    value = d.parse(raw)
    if broker is not None:
        broker.check_topic_value(key, value)
    canon = format_value(value)
    assert canon is not None
    return canon


def validate_topic_configs(configs: Mapping[str, Any], broker: BrokerConfigs | None = None) -> dict[str, str]:
    """Validate a full set of topic overrides (CreateTopics, AlterConfigs)."""
    # A key left unset inherits the broker default, which check_plan_limits already covered.
    out = {key: validate_topic_config(key, raw, broker) for key, raw in configs.items()}
    check_topic_consistency(out, broker)
    return out


def check_topic_consistency(overrides: Mapping[str, str], broker: BrokerConfigs | None = None) -> None:
    """Rules across keys, on the effective values (Kafka's LogConfig.validateValues)."""
    def effective(key: str) -> Any:
        if key in overrides:
            raw = overrides[key]
        elif broker is not None:
            raw = broker.topic_default(key)[0]
        else:
            raw = TOPIC_CONFIG_DEFS[key].default
        return TOPIC_CONFIG_DEFS[key].parse(raw, validate=False)

    min_lag, max_lag = effective("min.compaction.lag.ms"), effective("max.compaction.lag.ms")
    if min_lag > max_lag:
        key = "min.compaction.lag.ms" if "min.compaction.lag.ms" in overrides else "max.compaction.lag.ms"
        raise InvalidConfig(key, f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
                                 f"max.compaction.lag.ms ({max_lag})")


def incremental_alter(current: Mapping[str, str], ops: Iterable[tuple[str, int, str | None]],
                      broker: BrokerConfigs | None = None) -> dict[str, str]:
    """Apply IncrementalAlterConfigs ops to a topic's overrides; return the new overrides."""
    new = dict(current)
    seen: set[str] = set()
    for key, op, raw in ops:
        d = TOPIC_CONFIG_DEFS.get(key)
        if d is None:
            raise InvalidConfig(key, f"Unknown topic config name: {key}")
        if key in seen:
            raise InvalidConfig(key, f"Error due to duplicate config keys: {key}")
        seen.add(key)
        try:
            op = AlterOp(op)
        except ValueError:
            raise InvalidConfig(key, f"Unknown config operation {op} for {key}") from None
        if op is AlterOp.SET:
            new[key] = validate_topic_config(key, raw, broker)
        elif op is AlterOp.DELETE:
            new.pop(key, None)
        else:
            if d.type is not ConfigType.LIST:
                raise InvalidConfig(key, f"Config value append/subtract is not allowed for config "
                                         f"key {key}: it is not a list")
            effective = new.get(key)
            if effective is None:
                effective = broker.topic_default(key)[0] if broker else d.default
            items = d.parse(effective or "")
            delta = d.parse(raw or "")
            if op is AlterOp.APPEND:
                items = items + [v for v in delta if v not in items]
            else:
                items = [v for v in items if v not in delta]
            new[key] = validate_topic_config(key, ",".join(items), broker)
    check_topic_consistency(new, broker)
    return new


@dataclass
class TopicConfig:
    """The effective configuration of one topic: its overrides over the broker's defaults."""

    broker: BrokerConfigs
    overrides: dict[str, str] = field(default_factory=dict)

    def lookup(self, key: str) -> tuple[str | None, ConfigSource, list[DescribedSynonym]]:
        value, source, synonyms = self.broker.topic_default(key)
        if key in self.overrides:
            own = DescribedSynonym(key, self.overrides[key], ConfigSource.DYNAMIC_TOPIC_CONFIG)
            return self.overrides[key], ConfigSource.DYNAMIC_TOPIC_CONFIG, [own, *synonyms]
        return value, source, synonyms

    def get(self, key: str) -> Any:
        value, source, _ = self.lookup(key)
        # Inherited broker values were validated as broker settings (an operator may use a
        # smaller log.segment.bytes than a tenant may set as segment.bytes).
        return TOPIC_CONFIG_DEFS[key].parse(value, validate=source is ConfigSource.DYNAMIC_TOPIC_CONFIG)

    def log_values(self) -> dict[str, Any]:
        """The values storage applies to this topic's LogSettings (attribute -> value).

        A stored override that no longer validates (a plan cap lowered since) falls back to the
        broker's default for that key instead of stopping the broker.
        """
        out: dict[str, Any] = {}
        for key, attr in LOG_SETTINGS.items():
            try:
                out[attr] = self.get(key)
            except ConfigError as exc:
                log.warning("topic config %s: %s; using the broker default", key, exc)
                out[attr] = TopicConfig(self.broker).get(key)
        policy = self.get("cleanup.policy")
        out["compact"], out["delete"] = "compact" in policy, "delete" in policy
        if out["compact"]:  # Kafka rolls compacted logs by max.compaction.lag.ms too
            out["segment_ms"] = min(out["segment_ms"], out["max_compaction_lag_ms"])
        return out

    @property
    def retention_ms(self) -> int:
        return self.get("retention.ms")

    @property
    def retention_bytes(self) -> int:
        return self.get("retention.bytes")

    @property
    def segment_bytes(self) -> int:
        return self.get("segment.bytes")

    @property
    def segment_ms(self) -> int:
        return self.get("segment.ms")

    @property
    def max_message_bytes(self) -> int:
        return self.get("max.message.bytes")

    @property
    def cleanup_policy(self) -> list[str]:
        return self.get("cleanup.policy")

    @property
    def log_append_time(self) -> bool:
        return self.get("message.timestamp.type") == "LogAppendTime"

    def describe(self, keys: Iterable[str] | None = None, *, include_synonyms: bool = False,
                 include_documentation: bool = False) -> list[DescribedConfig]:
        names = sorted(TOPIC_CONFIG_DEFS) if keys is None else [k for k in keys if k in TOPIC_CONFIG_DEFS]
        out = []
        for name in names:
            d = TOPIC_CONFIG_DEFS[name]
            value, source, synonyms = self.lookup(name)
            out.append(DescribedConfig(
                name=name, value=value, source=source, read_only=d.read_only,
                is_sensitive=d.sensitive, config_type=d.type,
                documentation=d.doc if include_documentation else None,
                synonyms=tuple(synonyms) if include_synonyms else ()))
        return out
