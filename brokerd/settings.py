"""Broker settings: Kafka's names, typed, with defaults; from a TOML file, flags and ``--set``.

Precedence: command-line flags > ``--set key=value`` > the TOML file > defaults.

TOML files may write Kafka names as dotted keys (``log.retention.ms = 1000``), which TOML
turns into nested tables; they are flattened back into dotted names here. Each subsystem adds
their settings with :func:`register` (one line per setting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting is unknown or invalid. The message is one line, shown to the operator."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    type: str  # "bool" | "int" | "str" | "list" | "path"
    default: Any
    doc: str
    minimum: int | None = None


SETTINGS: dict[str, Setting] = {}
ALIASES: dict[str, str] = {
    "log.dirs": "data.dir",
    "log.dir": "data.dir",
    "coordination.session.timeout.ms": "broker.session.timeout.ms",  # the name it had first
}


def register(name: str, type_: str, default: Any, doc: str, *, minimum: int | None = None) -> None:
    SETTINGS[name] = Setting(name, type_, default, doc, minimum)


# --- process / node -------------------------------------------------------------------
register("data.dir", "path", None, "directory holding topic metadata and partition logs")
register("listeners", "list", [], "listener URLs, e.g. PLAINTEXT://127.0.0.1:9092")
register("admin.listener", "str", "", "host:port of the HTTP admin listener (/healthz)")
register("advertised.host", "str", "", "host name advertised to clients (default: listener host)")
register("node.id", "int", 1, "this broker's node id", minimum=0)
register("cluster.id", "str", "", "cluster id (default: generated once and kept in data.dir)")
register("credentials.file", "path", None, "SCRAM credentials file (brokerd/credentials.py format)")
register("pid.file", "path", None, "write the process id here")
register("log.file", "path", None, "write brokerd's own log here instead of stderr")
register("log.level", "str", "INFO", "logging level of brokerd's own log")
# --- cluster: coordination through etcd (brokerd/coordination/, brokerd/replication/) --------
register("coordination", "str", "", "etcd://HOST:PORT[,HOST:PORT]/PREFIX: form a cluster (empty: alone)")
register("coordination.user", "str", "", "etcd user of this cluster, when etcd has authentication on")
register("coordination.password.file", "path", None, "file holding the etcd user's password")
register("broker.session.timeout.ms", "int", 6000, "a broker whose etcd lease is not refreshed "
         "this long leaves the cluster (its leaderships move)", minimum=2000)
register("broker.heartbeat.interval.ms", "int", 2000, "how often a broker refreshes its etcd lease "
         "(less than broker.session.timeout.ms; unset: a third of it, 2000 at most)", minimum=100)
register("coordination.start.timeout.ms", "int", 30000, "give up starting when etcd cannot be reached "
         "this long", minimum=100)
register("broker.rack", "str", "", "this broker's rack, for replica placement")
register("auto.leader.rebalance.enable", "bool", True, "the controller gives partitions back to their "
         "preferred replicas when a broker's leaderships are imbalanced")
register("leader.imbalance.check.interval.seconds", "int", 300, "how often the controller checks the "
         "leader imbalance", minimum=1)
register("leader.imbalance.per.broker.percentage", "int", 10, "the share of a broker's preferred "
         "partitions led elsewhere above which they are given back", minimum=0)
register("inter.broker.user", "str", "", "user followers authenticate as (SASL/PLAIN) on a leader's "
         "SASL_PLAINTEXT or SASL_SSL listener, when the brokers have no PLAINTEXT one")
register("inter.broker.password.file", "path", None, "file holding inter.broker.user's password")
register("inter.broker.tls.ca.file", "path", None, "PEM CA bundle that verifies a leader's SASL_SSL "
         "listener; followers fetch over TLS only when it is set")
register("replica.lag.time.max.ms", "int", 30000, "a follower not caught up this long leaves the ISR",
         minimum=100)
# --- topics -----------------------------------------------------------------------------
register("auto.create.topics.enable", "bool", True, "create unknown topics on Metadata/Produce")
register("num.partitions", "int", 1, "partitions of auto-created topics", minimum=1)
register("default.replication.factor", "int", 1, "accepted for compatibility (single node)", minimum=1)
register("delete.topic.enable", "bool", True, "allow DeleteTopics")
register("max.request.partition.size.limit", "int", 2000, "most partitions one "
         "DescribeTopicPartitions response holds (caps the request's limit)", minimum=1)
# --- records and requests ---------------------------------------------------------------
register("message.max.bytes", "int", 1048588, "largest record batch accepted", minimum=64)
register("socket.request.max.bytes", "int", 104857600, "largest request frame accepted", minimum=1024)
register("sasl.server.max.receive.size", "int", 524288, "largest frame before authentication", minimum=64)
# Pipelined requests a connection may have in flight before the broker stops reading from it. Large
# enough that a librdkafka producer at linger.ms=0 (up to 1,000,000 in flight) keeps its requests
# flowing into the next group fsync instead of backing up in the socket while one runs.
register("max.inflight.requests.per.connection", "int", 1000, "pipelined requests per connection", minimum=1)
register("sasl.enabled.mechanisms", "list", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], "SASL mechanisms")
register("connections.max.idle.ms", "int", 600000, "close connections idle this long", minimum=1000)
register("fetch.max.bytes", "int", 57671680, "cap on a fetch response's bytes", minimum=1024)
# --- logs -------------------------------------------------------------------------------
register("log.segment.bytes", "int", 1073741824, "roll a segment at this size", minimum=1024)
register("log.roll.ms", "int", 604800000, "roll a segment after this long", minimum=1)
register("log.index.interval.bytes", "int", 4096, "bytes between sparse index entries", minimum=1)
register("log.retention.ms", "int", 604800000, "delete segments older than this (-1: forever)")
register("log.retention.bytes", "int", -1, "delete old segments beyond this size (-1: no limit)")
register("log.retention.check.interval.ms", "int", 300000, "how often retention runs", minimum=10)
register("log.message.timestamp.type", "str", "CreateTime", "CreateTime or LogAppendTime")
register("log.flush.group.window.ms", "int", 0, "extra wait to batch acks=all fsyncs (rounds also batch "
         "whatever arrives while the previous fsync runs)", minimum=0)
# uvloop (libuv) answers more requests per second of CPU than asyncio's own loop; "asyncio" keeps the
# standard library's loop (the fallback when uvloop is not installed).
register("fetch.zero.copy", "bool", True,
         "plaintext listeners send Fetch records from segment files with sendfile (no copy into the broker)")
register("event.loop", "str", "auto", "auto (uvloop when installed), uvloop or asyncio")
register("credentials.poll.ms", "int", 250, "how often the credentials file is checked", minimum=10)
# --- TLS for SASL_SSL listeners (brokerd/tls.py) -----------------------------
register("tls.cert.file", "path", None, "PEM certificate chain of the SASL_SSL listener")
register("tls.key.file", "path", None, "PEM private key of tls.cert.file (unencrypted)")
register("tls.min.version", "str", "TLSv1.2", "oldest TLS version accepted: TLSv1.2 or TLSv1.3")
register("tls.poll.ms", "int", 1000, "how often the certificate and key files are checked", minimum=10)
# --- consumer groups: coordinator, committed offsets, idempotent producers ----------------------
register("group.min.session.timeout.ms", "int", 6000, "smallest member session timeout", minimum=1)
register("group.max.session.timeout.ms", "int", 1800000, "largest member session timeout", minimum=1)
register("group.initial.rebalance.delay.ms", "int", 3000, "delay of a new group's first rebalance", minimum=0)
register("group.max.size", "int", 2147483647, "members allowed in one group", minimum=1)
register("offsets.retention.minutes", "int", 10080, "keep an empty group's offsets this long", minimum=1)
register("offsets.retention.check.interval.ms", "int", 600000, "how often offset expiry runs", minimum=1)
register("offset.metadata.max.bytes", "int", 4096, "largest commit metadata string", minimum=0)
register("offsets.commit.flush.window.ms", "int", 0, "extra wait to batch offset-commit fsyncs", minimum=0)
register("producer.id.expiration.ms", "int", 86400000, "forget an idle producer's sequence state", minimum=1)
register("group.consumer.session.timeout.ms", "int", 45000, "a consumer-protocol member not heard from "
         "this long leaves its group", minimum=1)
register("group.consumer.heartbeat.interval.ms", "int", 5000, "heartbeat interval told to "
         "consumer-protocol members", minimum=1)
register("group.consumer.max.size", "int", 2147483647, "members allowed in one consumer-protocol group",
         minimum=1)
register("group.consumer.assignors", "list", ["uniform", "range"], "server-side assignors (uniform, range); "
         "the first is the default")
register("group.consumer.migration.policy", "str", "bidirectional", "online protocol changes of groups "
         "with members: disabled, upgrade, downgrade or bidirectional")
# --- transactions: the transaction coordinator (brokerd/txn/) ----------------------------
register("transaction.max.timeout.ms", "int", 900000, "longest transaction timeout a producer may ask for",
         minimum=1)
register("transaction.state.log.num.partitions", "int", 50, "partitions of __transaction_state", minimum=1)
register("transaction.state.log.replication.factor", "int", 3, "replication factor of __transaction_state "
         "(at most the live brokers when it is created)", minimum=1)
register("transaction.state.log.min.isr", "int", 2, "min.insync.replicas of __transaction_state (at most its "
         "replication factor): a transaction state change is acknowledged by this many replicas", minimum=1)
register("transaction.state.log.segment.bytes", "int", 104857600, "segment size of __transaction_state",
         minimum=1024)
register("transaction.abort.timed.out.transaction.cleanup.interval.ms", "int", 10000,
         "how often transactions open longer than their timeout are aborted", minimum=1)
register("transactional.id.expiration.ms", "int", 604800000,
         "remove a transactional id whose producer sent nothing for this long", minimum=1)
register("offsets.topic.num.partitions", "int", 50, "partitions of __consumer_offsets when it is created "
         "(the group's partition a transaction adds)", minimum=1)
register("offsets.topic.replication.factor", "int", 3, "replication factor of __consumer_offsets (at most "
         "the live brokers when it is created)", minimum=1)
register("offsets.commit.timeout.ms", "int", 5000, "how long an offset commit waits for the in-sync replicas "
         "of __consumer_offsets (then COORDINATOR_NOT_AVAILABLE)", minimum=1)
# --- stopping ---------------------------------------------------------------------------
register("controlled.shutdown.enable", "bool", True, "on SIGTERM, move this broker's leaderships to other "
         "in-sync replicas before it stops")
register("controlled.shutdown.timeout.ms", "int", 5000, "longest wait for the leaderships to move on a "
         "controlled shutdown (a supervisor's SIGKILL usually follows SIGTERM after 10 s)", minimum=0)
# --- ACLs: the authorizer (brokerd/acls.py) ---------------------------------------
register("authorizer.enable", "bool", False, "enforce ACLs (Kafka AclAuthorizer; super.users bypass)")
register("allow.everyone.if.no.acl.found", "bool", False,
         "with the authorizer on: allow an action on a resource no ACL matches")
# --- test hooks -------------------------------------------------------------------------
register("test.fault.produce.drop.after.append", "int", 0,
         "TEST ONLY: close the connection after every Nth idempotent append, before responding")
register("test.flush.journal", "path", None, "TEST ONLY: append 'topic partition offset' per fsync")
register("test.cleaner.kill.at", "str", "", "TEST ONLY: SIGKILL at a log cleaner swap point "
         "(staged, committed or installed)")
# --- Kafka broker configs, plan limits and quotas (defined in brokerd/kafka_configs.py) ---
from brokerd import kafka_configs  # noqa: E402

kafka_configs.register_settings(register)


# Tables passed through unparsed to the modules that own them (quotas.py reads [[quotas]]).
PASSTHROUGH = {"quotas"}


def _kafka_config(name: str, raw: Any, source: str) -> str:
    """Other Kafka broker configs (brokerd/kafka_configs.py): validated, kept as canonical strings."""
    instead = kafka_configs.DERIVED_KEYS.get(name)
    if instead is not None:
        raise SettingsError(f"{source}: {name} is derived by brokerd, not set; {instead}")
    definition = kafka_configs.BROKER_CONFIG_DEFS.get(name)
    if definition is None:
        raise SettingsError(f"{source}: unknown setting {name!r}; run 'brokerd settings' for the list")
    try:
        return definition.canonical(raw)
    except kafka_configs.ConfigError as exc:
        raise SettingsError(f"{source}: {exc}") from None


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    name = setting.name
    try:
        if setting.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if setting.type == "int":
            if isinstance(value, bool):
                raise ValueError
            result = int(value)
            if setting.minimum is not None and result < setting.minimum:
                raise SettingsError(f"{source}: {name} must be >= {setting.minimum}, got {result}")
            return result
        if setting.type == "list":
            if isinstance(value, list | tuple):
                return [str(v) for v in value]
            return [part.strip() for part in str(value).split(",") if part.strip()]
        if setting.type == "path":
            return str(value) if value not in (None, "") else None
        return str(value)
    except SettingsError:
        raise
    except (TypeError, ValueError):
        raise SettingsError(
            f"{source}: {name} expects a {setting.type} value, got {value!r}"
        ) from None


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def load_toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as fh:
            return flatten(tomllib.load(fh))
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist; check the --config path") from None
    except PermissionError:
        raise SettingsError(f"config file {path} is not readable; fix its permissions") from None
    except IsADirectoryError:
        raise SettingsError(f"config file {path} is a directory; pass a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML ({exc}); fix the syntax") from None


def parse_set(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set {item!r}: expected key=value, e.g. --set num.partitions=3")
        out[key.strip()] = value.strip()
    return out


class Settings:
    """Resolved, typed settings. Access with ``config["num.partitions"]``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self.explicit: set[str] = set()  # names given by a file, --set or a flag (not defaults)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @classmethod
    def resolve(
        cls,
        *,
        toml: dict[str, Any] | None = None,
        sets: dict[str, Any] | None = None,
        flags: dict[str, Any] | None = None,
    ) -> Settings:
        values = {name: s.default for name, s in SETTINGS.items()}
        for source, layer in (("config file", toml or {}), ("--set", sets or {}), ("flag", flags or {})):
            for raw_name, raw in layer.items():
                name = canonical(raw_name)
                setting = SETTINGS.get(name)
                if setting is not None:
                    values[name] = _coerce(setting, raw, source)
                elif name in PASSTHROUGH:
                    values[name] = raw
                else:
                    values[name] = _kafka_config(name, raw, source)
        config = cls(values)
        config.explicit = {canonical(n) for layer in (toml or {}, sets or {}, flags or {}) for n in layer}
        config.validate()
        return config

    def validate(self) -> None:
        if not self["data.dir"]:
            raise SettingsError("no data directory; pass --data-dir DIR (or data.dir in the config file)")
        if not self["listeners"]:
            raise SettingsError("no listener; pass --listener PLAINTEXT://127.0.0.1:9092")
        self.listeners = [parse_listener(url) for url in self["listeners"]]
        names = [listener.name for listener in self.listeners]
        if len(set(names)) != len(names):
            raise SettingsError("two listeners use the same security protocol; give each its own")
        if any(listener.sasl for listener in self.listeners) and not self["credentials.file"]:
            raise SettingsError("a SASL listener needs a credentials file; pass --credentials FILE")
        self._validate_tls()
        admin = self["admin.listener"]
        self.admin = parse_hostport(admin, "admin listener") if admin else None
        for mech in self["sasl.enabled.mechanisms"]:
            if mech not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                raise SettingsError(f"sasl.enabled.mechanisms: unsupported mechanism {mech!r}")
        if self["log.message.timestamp.type"] not in ("CreateTime", "LogAppendTime"):
            raise SettingsError("log.message.timestamp.type must be CreateTime or LogAppendTime")
        self._validate_coordination()
        if self["credentials.file"]:
            path = Path(self["credentials.file"])
            if path.exists() and not path.is_file():
                raise SettingsError(f"credentials file {path} is not a regular file; pass a JSON file")


    def _validate_coordination(self) -> None:
        """--coordination needs an explicit node id and, with a user, its password file."""
        self.coordination = None
        if not self["coordination"]:
            return
        from brokerd.coordination.url import CoordinationUrlError, parse_coordination_url

        try:
            self.coordination = parse_coordination_url(self["coordination"])
        except CoordinationUrlError as exc:
            raise SettingsError(str(exc)) from None
        if "node.id" not in self.explicit:
            raise SettingsError("--coordination needs --node-id N: each broker of a cluster has its own id")
        user, password_file = self["coordination.user"], self["coordination.password.file"]
        if bool(user) != bool(password_file):
            raise SettingsError(
                "an etcd user needs its password: pass both --coordination-user and "
                "--coordination-password-file, or neither when etcd runs without authentication"
            )
        if password_file and not Path(password_file).is_file():
            raise SettingsError(f"coordination password file {password_file} does not exist or is not a file")
        if self.heartbeat_interval_ms() >= self["broker.session.timeout.ms"]:
            raise SettingsError(
                "broker.heartbeat.interval.ms must be less than broker.session.timeout.ms, or the "
                "lease expires between two refreshes"
            )

    def heartbeat_interval_ms(self) -> int:
        """broker.heartbeat.interval.ms when set, else a third of the session timeout (2000 at
        most, Kafka's default), so that a shorter session alone still refreshes in time."""
        if "broker.heartbeat.interval.ms" in self.explicit:
            return self["broker.heartbeat.interval.ms"]
        return min(2000, self["broker.session.timeout.ms"] // 3)

    def _validate_tls(self) -> None:
        """A SASL_SSL listener needs a certificate and its key."""
        if self["tls.min.version"] not in ("TLSv1.2", "TLSv1.3"):
            raise SettingsError("tls.min.version must be TLSv1.2 or TLSv1.3")
        if self["event.loop"] not in ("auto", "uvloop", "asyncio"):
            raise SettingsError(f"event.loop must be auto, uvloop or asyncio, not {self['event.loop']!r}")
        if not any(listener.tls for listener in self.listeners):
            return
        for name, flag in (("tls.cert.file", "--tls-cert"), ("tls.key.file", "--tls-key")):
            value = self[name]
            if not value:
                raise SettingsError(f"a SASL_SSL listener needs {name}; pass {flag} FILE (PEM)")
            if not Path(value).is_file():
                raise SettingsError(f"{name} {value} does not exist or is not a file; pass a PEM file")


@dataclass(frozen=True, slots=True)
class Listener:
    name: str  # security protocol, used as the listener name
    host: str
    port: int

    @property
    def sasl(self) -> bool:
        return self.name.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.name.endswith("SSL")


SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
_LISTENER_RE = re.compile(r"^([A-Za-z_]+)://(\[[0-9a-fA-F:.]+\]|[^:/\s]*):(\d+)$")


def parse_listener(url: str) -> Listener:
    match = _LISTENER_RE.match(url.strip())
    if not match:
        raise SettingsError(
            f"bad listener URL {url!r}; expected PROTOCOL://HOST:PORT, e.g. PLAINTEXT://127.0.0.1:9092"
        )
    proto, host, port_text = match.group(1).upper(), match.group(2), match.group(3)
    if proto not in SECURITY_PROTOCOLS:
        raise SettingsError(
            f"bad listener URL {url!r}: protocol {proto} is not supported; use one of "
            + ", ".join(SECURITY_PROTOCOLS)
        )
    port = int(port_text)
    if port > 65535:
        raise SettingsError(f"bad listener URL {url!r}: port {port} is out of range (0-65535)")
    return Listener(proto, host.strip("[]") or "0.0.0.0", port)


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise SettingsError(f"bad {what} {text!r}; expected HOST:PORT, e.g. 127.0.0.1:9644")
    return host.strip("[]") or "0.0.0.0", int(port_text)
