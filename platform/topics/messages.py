"""Browse and produce a topic's messages with the cluster's internal credential (the portal's browser).

Browsing uses a confluent-kafka Consumer with `assign()` only: it never joins or commits to a
consumer group, so it changes nothing a tenant's consumers see. Every call is bounded in time
(`timeout_s`) and in messages (`MAX_MESSAGES`), so a page never hangs on a busy or silent topic.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from accounts.audit import SYSTEM, Actor, audit_record
from clusters.models import Cluster
from controlplane.errors import ValidationFailed
from sharedkit import kafka_admin

from .selectors import topic_metadata

MAX_MESSAGES = 200
DEFAULT_MESSAGES = 20
DEFAULT_TIMEOUT_S = 4.0
PREVIEW_BYTES = 64 * 1024
BROWSER_GROUP = "kastle-portal-browser"  # required by librdkafka; never joined (assign) nor committed
INVALID = "The message request is invalid."


@dataclass
class Message:
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    schema: Any = None  # the value read through the Schema Registry (schemaregistry.decoding), if framed

    @property
    def key_view(self) -> dict[str, Any]:
        return render_bytes(self.key)

    @property
    def value_view(self) -> dict[str, Any]:
        return render_bytes(self.value)

    @property
    def headers_view(self) -> list[tuple[str, dict[str, Any]]]:
        return [(name, render_bytes(value)) for name, value in self.headers]


def render_bytes(data: bytes | None) -> dict[str, Any]:
    """{kind: null|json|text|binary, text, truncated}: pretty JSON when JSON, hex when binary."""
    if data is None:
        return {"kind": "null", "text": "", "truncated": False}
    truncated = len(data) > PREVIEW_BYTES
    body = data[:PREVIEW_BYTES]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not truncated:
        stripped = text.strip()
        if stripped[:1] in ("{", "[") or stripped in ("true", "false", "null"):
            try:
                return {
                    "kind": "json",
                    "text": json.dumps(json.loads(text), indent=2, ensure_ascii=False),
                    "truncated": False,
                }
            except ValueError:
                pass
    printable = text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if printable:
        return {"kind": "text", "text": text, "truncated": truncated}
    hexed = body.hex(" ")
    return {"kind": "binary", "text": hexed, "truncated": truncated, "size": len(data)}


def _config(cluster: Cluster, **extra: Any) -> dict[str, Any]:
    conf = kafka_admin.client_config(cluster)
    conf.update(extra)
    return conf


def _consumer(cluster: Cluster) -> Consumer:
    if cluster.status != "RUNNING" or not cluster.bootstrap_servers:
        raise kafka_admin.ClusterNotRunning(cluster)
    return Consumer(
        _config(
            cluster,
            **{
                "group.id": BROWSER_GROUP,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "latest",
                "client.id": "kastle-portal-browser",
                "fetch.wait.max.ms": 100,
            },
        )
    )


def browse(
    *,
    cluster: Cluster,
    topic: str,
    partition: int | None = None,
    mode: str = "latest",
    count: int = DEFAULT_MESSAGES,
    offset: int | None = None,
    timestamp: datetime | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Message]:
    """Up to `count` messages of `topic` (one partition or all).

    mode "latest": the newest `count` messages (newest first);
    mode "offset": from `offset` on, in the chosen partition (or at that offset in each);
    mode "timestamp": from the first message at or after `timestamp`, oldest first.
    """
    if mode not in ("latest", "offset", "timestamp"):
        raise ValidationFailed(INVALID, details={"mode": ["Choose latest, offset or timestamp."]})
    if not 1 <= count <= MAX_MESSAGES:
        raise ValidationFailed(INVALID, details={"count": [f"Choose between 1 and {MAX_MESSAGES} messages."]})
    if mode == "offset" and (offset is None or offset < 0):
        raise ValidationFailed(INVALID, details={"offset": ["Give an offset of 0 or more."]})
    if mode == "timestamp" and timestamp is None:
        raise ValidationFailed(INVALID, details={"timestamp": ["Give a date and time."]})
    meta = topic_metadata(cluster, topic)  # 404 for an unknown topic, 409/503 as the REST API
    partitions = sorted(meta.partitions)
    if partition is not None:
        if partition not in meta.partitions:
            raise ValidationFailed(
                INVALID, details={"partition": [f"The topic has partitions 0 to {len(partitions) - 1}."]}
            )
        partitions = [partition]

    consumer = _consumer(cluster)
    deadline = time.monotonic() + timeout_s
    try:
        ends: dict[int, tuple[int, int]] = {}
        for p in partitions:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=max(0.5, deadline - time.monotonic()), cached=False
                )
            except KafkaException as exc:
                raise _unavailable(cluster, exc) from exc
            ends[p] = (low, high)

        starts: dict[int, int] = {}
        if mode == "latest":
            for p, (low, high) in ends.items():
                starts[p] = max(low, high - count)
        elif mode == "offset":
            for p, (low, high) in ends.items():
                starts[p] = min(max(offset or 0, low), high)
        else:
            ms = int(timestamp.timestamp() * 1000)  # type: ignore[union-attr]
            try:
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, p, ms) for p in partitions],
                    timeout=max(0.5, deadline - time.monotonic()),
                )
            except KafkaException as exc:
                raise _unavailable(cluster, exc) from exc
            for tp in found:
                starts[tp.partition] = ends[tp.partition][1] if tp.offset < 0 else tp.offset

        pending = {p for p in partitions if starts[p] < ends[p][1]}
        if not pending:
            return []
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
        per_partition_cap = count
        got: dict[int, list[Message]] = {p: [] for p in pending}
        while pending and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=min(500, count * len(pending)), timeout=0.2)
            for msg in batch:
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                        continue
                    if err.code() in kafka_admin.TRANSPORT_ERRORS:
                        raise kafka_admin.unavailable(cluster, err)
                    continue
                if p not in got:
                    continue
                got[p].append(_message(msg))
                if msg.offset() + 1 >= ends[p][1] or len(got[p]) >= per_partition_cap:
                    pending.discard(p)
            if mode != "latest" and sum(len(v) for v in got.values()) >= count and partition is not None:
                break
    finally:
        consumer.close()

    messages = [m for rows in got.values() for m in rows]
    epoch = datetime.min.replace(tzinfo=UTC)
    if mode == "latest":
        messages.sort(key=lambda m: (m.timestamp or epoch, m.partition, m.offset), reverse=True)
    else:
        messages.sort(key=lambda m: (m.timestamp or epoch, m.partition, m.offset))
    return messages[:count]


def _message(msg) -> Message:
    kind, ms = msg.timestamp()
    ts = datetime.fromtimestamp(ms / 1000, tz=UTC) if kind != 0 and ms >= 0 else None
    headers = [(name, value) for name, value in (msg.headers() or [])]
    return Message(
        partition=msg.partition(),
        offset=msg.offset(),
        timestamp=ts,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
    )


def _unavailable(cluster: Cluster, exc: KafkaException):
    err = kafka_admin.kafka_error(exc)
    return kafka_admin.unavailable(cluster, err)


def _producer(cluster: Cluster, timeout_s: float) -> Producer:
    """The portal's producer for the cluster, kept in the control plane's client cache (closed when
    the cluster stops running, swept when idle), so a message does not pay a SASL handshake."""
    extra = {
        "acks": "all",
        "client.id": "kastle-portal",
        "linger.ms": 0,
        "message.timeout.ms": int(timeout_s * 1000),
    }
    return kafka_admin.cached_client(
        cluster, f"portal-producer/{timeout_s:g}", lambda: Producer(_config(cluster, **extra))
    )


def produce(
    *,
    cluster: Cluster,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int | None = None,
    actor: Actor = SYSTEM,
    timeout_s: float = 10.0,
) -> tuple[int, int]:
    """Produce one message (acks=all); returns (partition, offset)."""
    meta = topic_metadata(cluster, topic)
    if partition is not None and partition not in meta.partitions:
        raise ValidationFailed(
            INVALID, details={"partition": [f"The topic has partitions 0 to {len(meta.partitions) - 1}."]}
        )
    limit = cluster.plan_limits.max_message_bytes
    size = len(value or b"") + len(key or b"") + sum(len(n) + len(v or b"") for n, v in headers or [])
    if size > limit:
        raise ValidationFailed(
            INVALID,
            details={"value": [f"The message is {size} bytes; the {cluster.plan} plan allows {limit}."]},
        )
    producer = _producer(cluster, timeout_s)
    outcome: dict[str, Any] = {}

    def delivered(err, msg) -> None:
        outcome["err"] = err
        outcome["msg"] = msg

    kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": delivered}
    if headers:
        kwargs["headers"] = headers
    if partition is not None:
        kwargs["partition"] = partition
    try:
        producer.produce(topic, **kwargs)
    except (KafkaException, BufferError) as exc:
        raise kafka_admin.unavailable(cluster, kafka_admin.kafka_error(exc)) from exc
    producer.flush(timeout_s + 1)
    err = outcome.get("err")
    if "msg" not in outcome or err is not None:
        if (
            err is not None
            and err.code() not in kafka_admin.TRANSPORT_ERRORS
            and err.code() != KafkaError._MSG_TIMED_OUT
        ):
            raise ValidationFailed(
                INVALID, details={"value": [f"The cluster refused the message: {err.str()}"]}
            )
        raise kafka_admin.unavailable(cluster, err)
    msg = outcome["msg"]
    audit_record(
        organization=cluster.organization,
        actor=actor,
        action="topic.produce",
        target_type="topic",
        target_id=f"{cluster.public_id}/{topic}",
        target_label=topic,
        details={"cluster": cluster.public_id, "partition": msg.partition(), "offset": msg.offset()},
    )
    return msg.partition(), msg.offset()


__all__ = ["MAX_MESSAGES", "Message", "browse", "produce", "render_bytes"]
