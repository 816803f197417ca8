"""The registry's storage: each cluster's `_schemas` topic, read into a `RegistryState` and written
through with the cluster's internal credential.

Every web worker keeps its own view per cluster and, before answering, reads the topic up to its
high watermark (one ListOffsets round trip), so a write made through another worker is seen at
once (read-your-writes across workers).

One writer per cluster at a time: a PostgreSQL advisory lock (transaction-scoped, keyed by the
cluster) serializes writers across all web workers and hosts; inside it the writer reads to the
end, picks the next id and version, appends with acks=all and reads its record back. The lock alone
is not the fence (a worker could stall past its database session and still have a record in
flight): the fence is the fold in `state.py`, which every reader applies identically and which
refuses a record that would reuse an id or a version for other content. A writer whose record was
refused reports a conflict and retries, so ids never collide even then. Kafka transactions would
also fence, but would need brokerd's transaction coordinator on every cluster; the fold works on
any broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from django.db import connection, transaction

from acls.bindings import SCHEMAS_TOPIC
from clusters import services as cluster_services
from clusters.models import Cluster
from sharedkit.kafka_admin import admin_client, client_config

from . import errors
from .state import RegistryState, schema_key, schema_value

logger = logging.getLogger(__name__)

IO_TIMEOUT_S = 10.0
#: pg_advisory_xact_lock(class, cluster pk): the first key keeps the registry's locks apart.
LOCK_CLASS = 0x5C4E


def _dump(obj: dict[str, Any] | None) -> bytes | None:
    return None if obj is None else json.dumps(obj, separators=(",", ":")).encode()


class ClusterLog:
    """One process's reader and writer of one cluster's `_schemas` partition."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.public_id = cluster.public_id
        self.bootstrap = cluster.bootstrap_servers
        self.conf = client_config(cluster)
        self.lock = threading.RLock()
        self.state = RegistryState()
        self.position = 0
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._topic_ready = False
        self.last_used = time.monotonic()

    # --- the topic --------------------------------------------------------------------------------
    def ensure_topic(self, cluster: Cluster) -> None:
        """Create `_schemas` (one partition, compacted, a replica on every broker) if it is missing;
        an existing one that is not compacted is switched to compaction.

        Every broker validates the schema ids of the partitions it leads from its own replica of
        `_schemas`, so the topic is replicated to all of the cluster's brokers, not to the default
        replication factor (a Dedicated cluster has more brokers than that)."""
        if self._topic_ready:
            return
        admin = admin_client(cluster)
        replicas = cluster.broker_count if cluster.broker_count > 1 else -1
        topic = NewTopic(SCHEMAS_TOPIC, 1, replicas, config={"cleanup.policy": "compact"})
        future = admin.create_topics([topic], request_timeout=IO_TIMEOUT_S)[SCHEMAS_TOPIC]
        try:
            future.result(IO_TIMEOUT_S + 5)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise errors.store_error(f"creating {SCHEMAS_TOPIC} failed: {err.str()}") from exc
            self._upgrade_to_compact(admin)
        self._topic_ready = True

    def _upgrade_to_compact(self, admin: AdminClient) -> None:
        resource = ConfigResource(ConfigResource.Type.TOPIC, SCHEMAS_TOPIC)
        try:
            described = admin.describe_configs([resource], request_timeout=IO_TIMEOUT_S)[resource].result(15)
        except KafkaException:
            return
        policy = described.get("cleanup.policy")
        if policy is None or "compact" in (policy.value or ""):
            return
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

        entry = ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)
        change = ConfigResource(ConfigResource.Type.TOPIC, SCHEMAS_TOPIC, incremental_configs=[entry])
        try:
            admin.incremental_alter_configs([change])[resource].result(15)
        except KafkaException as exc:
            raise errors.store_error(f"{SCHEMAS_TOPIC} is not compacted and could not be: {exc}") from exc

    # --- reading ----------------------------------------------------------------------------------
    def _reader(self) -> Consumer:
        if self._consumer is None:
            consumer = Consumer(
                {
                    **self.conf,
                    "group.id": "kastle-schema-registry",  # never joined: the partition is assigned
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "fetch.wait.max.ms": 50,
                }
            )
            consumer.assign([TopicPartition(SCHEMAS_TOPIC, 0, OFFSET_BEGINNING)])
            self._consumer = consumer
        return self._consumer

    def catch_up(self, at_least: int = 0) -> RegistryState:
        """Read the topic up to its current end (and at least to offset `at_least`)."""
        with self.lock:
            self.ensure_topic(self.cluster)
            consumer = self._reader()
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(SCHEMAS_TOPIC, 0), timeout=IO_TIMEOUT_S, cached=False
                )
            except KafkaException as exc:
                raise errors.timeout(f"{SCHEMAS_TOPIC} did not answer ({exc.args[0].str()})") from exc
            target = max(high, at_least)
            deadline = time.monotonic() + IO_TIMEOUT_S
            while self.position < target:
                if time.monotonic() > deadline:
                    raise errors.timeout(
                        f"reading {SCHEMAS_TOPIC} stopped at offset {self.position} of {target}"
                    )
                for msg in consumer.consume(500, timeout=0.2):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise errors.store_error(msg.error().str())
                    self._apply(msg.key(), msg.value())
                    self.position = msg.offset() + 1
            self.last_used = time.monotonic()
            return self.state

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            parsed_key = json.loads(key) if key else None
            parsed_value = json.loads(value) if value is not None else None
        except (ValueError, UnicodeDecodeError):
            return  # not a registry record: ignored, as Confluent's registry does
        if isinstance(parsed_key, dict) and (parsed_value is None or isinstance(parsed_value, dict)):
            self.state.apply(parsed_key, parsed_value)

    # --- writing ----------------------------------------------------------------------------------
    def append(self, records: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> RegistryState:
        """Write records (acks=all) and read the topic up to them; returns the updated state."""
        with self.lock:
            if self._producer is None:
                self._producer = Producer(
                    {
                        **self.conf,
                        "acks": "all",
                        "linger.ms": 0,
                        "message.timeout.ms": int(IO_TIMEOUT_S * 1000),
                    }
                )
            results: list[Any] = []
            for key, value in records:
                self._producer.produce(
                    SCHEMAS_TOPIC,
                    key=_dump(key),
                    value=_dump(value),
                    partition=0,
                    on_delivery=lambda err, msg: results.append((err, msg)),
                )
            self._producer.flush(IO_TIMEOUT_S + 5)
            if len(results) != len(records):
                raise errors.timeout(f"writing to {SCHEMAS_TOPIC}")
            failed = next((err for err, _ in results if err is not None), None)
            if failed is not None:
                raise errors.store_error(f"writing to {SCHEMAS_TOPIC} failed: {failed.str()}")
            last = max(msg.offset() for _, msg in results)
            state = self.catch_up(at_least=last + 1)
            # every change of the registry comes through here: metering bills the count it leaves
            cluster_services.cluster_schemas_counted(cluster_id=self.cluster.pk, count=state.schema_count())
            return state

    def catch_up_to_write(self) -> RegistryState:
        """For a writer holding the lock: the state read to the end, with the last record of every
        key made an accepted one again (a refused record must not be what compaction keeps)."""
        state = self.catch_up()
        if state.dirty:
            repairs = []
            for subject, version in sorted(state.dirty):
                current = state.subjects.get(subject, {}).get(version)
                repairs.append((schema_key(subject, version), schema_value(current) if current else None))
            state = self.append(repairs)
        return state

    def close(self) -> None:
        with self.lock:
            if self._consumer is not None:
                with contextlib.suppress(Exception):
                    self._consumer.close()
            if self._producer is not None:
                self._producer.flush(1)
            self._consumer = self._producer = None


_logs: dict[str, ClusterLog] = {}
_logs_lock = threading.Lock()
#: A view unused this long is dropped with its clients (a deleted cluster's ports may serve another
#: cluster later); the next request rebuilds it from the topic.
IDLE_S = 300.0


def cluster_log(cluster: Cluster) -> ClusterLog:
    """This process's log of the cluster (built on first use, rebuilt from the topic)."""
    now = time.monotonic()
    with _logs_lock:
        for public_id, idle in list(_logs.items()):
            if public_id != cluster.public_id and now - idle.last_used > IDLE_S:
                _logs.pop(public_id).close()
        log = _logs.get(cluster.public_id)
        if log is not None and log.bootstrap != cluster.bootstrap_servers:
            log.close()  # the cluster moved to other ports
            log = None
        if log is None:
            log = _logs[cluster.public_id] = ClusterLog(cluster)
        return log


def forget(public_id: str) -> None:
    """Close the view of a cluster that stopped running (`sharedkit.kafka_admin.on_forget`): its
    clients must not keep reconnecting to ports that may soon serve another cluster."""
    with _logs_lock:
        log = _logs.pop(public_id, None)
    if log is not None:
        log.close()


def forget_all() -> None:
    """Drop every view (tests; a restarted platform starts with none and rebuilds from the topics)."""
    with _logs_lock:
        for log in _logs.values():
            log.close()
        _logs.clear()


@contextlib.contextmanager
def writer_lock(cluster: Cluster) -> Iterator[None]:
    """The cluster's single-writer lock across every web worker (see the module docstring)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, cluster.pk])
        # SQLite (embedded mode) begins every transaction IMMEDIATE: the write lock serializes writers.
        yield
