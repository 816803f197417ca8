"""kastle topic produce / consume: lines in, records out, with a real Kafka client (confluent-kafka).

Both use the API key stored for the cluster by `kastle api-key create` (or --api-key/--api-secret,
KASTLE_API_KEY/KASTLE_API_SECRET) and verify a SASL_SSL cluster's brokers with its CA bundle.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import signal
import sys
import time
from typing import Annotated, Any

import typer

from kastle import kafka
from kastle.api import seg
from kastle.errors import AuthError, CliError, NotFound, Unavailable, UsageError
from kastle.output import Format, OutputOpt, done, note
from kastle.session import ClusterOpt, Session, parse_pairs

ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="KASTLE_API_KEY", help="Default: the key stored for the cluster."),
]
ApiSecretOpt = Annotated[
    str | None,
    typer.Option("--api-secret", envvar="KASTLE_API_SECRET", help="The key's secret.", show_default=False),
]
TopicArg = Annotated[str, typer.Argument(metavar="TOPIC", help="The topic's name.")]


class Watch:
    """librdkafka's error callback: fail fast on a refused key or unreachable brokers."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.error: CliError | None = None

    def __call__(self, error: Any) -> None:
        from confluent_kafka import KafkaError

        code = error.code()
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            self.error = AuthError(
                f"the brokers refused API key {self.key} (revoked, expired, or a wrong secret?): "
                "make a new one with `kastle api-key create`"
            )
        elif code == KafkaError._SSL:
            self.error = Unavailable(f"TLS with the brokers failed: {error.str()}")
        elif code == KafkaError._ALL_BROKERS_DOWN and self.error is None:
            self.error = Unavailable("the cluster's brokers cannot be reached (all brokers down)")

    def check(self, fatal_down: bool = False) -> None:
        if self.error is not None and (fatal_down or not isinstance(self.error, Unavailable)):
            raise self.error


def _connect(
    session: Session, cluster: str | None, topic: str, api_key: str | None, api_secret: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(client settings, the topic as REST describes it): a missing topic fails before connecting."""
    cluster_id = session.cluster_id(cluster)
    described = session.api.get(
        f"clusters/{seg(cluster_id)}/topics/{seg(topic)}", what=f"topic {topic} on cluster {cluster_id}"
    )
    key, secret = kafka.credentials(session, cluster_id, api_key, api_secret)
    conf = kafka.client_settings(session, session.cluster(cluster_id), key, secret)
    return conf, described


def _kafka_error(error: Any, topic: str, key: str) -> CliError:
    from confluent_kafka import KafkaError

    code = error.code()
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return CliError(f"API key {key} may not use topic {topic} (its scope or the cluster's ACLs)")
    if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
        return CliError(f"API key {key} may not use this consumer group (its scope or the cluster's ACLs)")
    if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION):
        return NotFound(f"topic {topic} (or that partition) not found on the cluster")
    if code == KafkaError.MSG_SIZE_TOO_LARGE:
        return CliError(f"a message is larger than the topic allows (max.message.bytes): {error.str()}")
    return CliError(f"Kafka error on topic {topic}: {error.name()}: {error.str()}")


def produce(
    topic: TopicArg,
    key_separator: Annotated[
        str | None, typer.Option("--key-separator", help="Split each line into key and value at this string.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", help="A header k=v for every record (repeatable).")
    ] = None,
    value_format: Annotated[
        str, typer.Option("--value-format", help="string, or json (each value must be a JSON document).")
    ] = "string",
    partition: Annotated[int | None, typer.Option("--partition", min=0, help="Only this partition.")] = None,
    cluster: ClusterOpt = None,
    api_key: ApiKeyOpt = None,
    api_secret: ApiSecretOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Produce one record per line of stdin (acks=all); stops at the first bad line."""
    if value_format not in ("string", "json"):
        raise UsageError(f"--value-format {value_format!r}: choose string or json")
    if key_separator == "":
        raise UsageError("--key-separator must not be empty")
    headers = list(parse_pairs(header, "--header").items())
    session = Session()
    conf, described = _connect(session, cluster, topic, api_key, api_secret)
    if partition is not None and partition >= described["partitions_count"]:
        raise UsageError(
            f"--partition {partition}: topic {topic} has {described['partitions_count']} partitions"
        )

    from confluent_kafka import Producer

    watch = Watch(conf["sasl.username"])
    producer = Producer(
        {
            **conf,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            "error_cb": watch,
            "log_level": 0,
        }
    )
    failures: list[Any] = []
    delivered = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(err)
        else:
            delivered += 1

    sent = 0
    problem: str | None = None  # a bad line: what was before it is delivered, then we stop
    try:
        for number, raw in enumerate(sys.stdin, start=1):
            line = raw.rstrip("\r\n") if raw.endswith("\n") else raw
            key: str | None = None
            value = line
            if key_separator is not None:
                key, sep, value = line.partition(key_separator)
                if not sep:
                    problem = f"line {number} has no key separator {key_separator!r}"
                    break
            if value_format == "json":
                try:
                    json.loads(value)
                except ValueError as exc:
                    problem = f"line {number} is not JSON ({exc.msg})"
                    break
            extra = {"partition": partition} if partition is not None else {}
            while True:
                try:
                    producer.produce(
                        topic,
                        value=value.encode(),
                        key=key.encode() if key is not None else None,
                        headers=headers or None,
                        on_delivery=on_delivery,
                        **extra,
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
                    watch.check()
            sent += 1
            producer.poll(0)
            watch.check()
            if failures:
                break
        remaining = producer.flush(30)
        while remaining and watch.error is None:
            remaining = producer.flush(1)
    except KeyboardInterrupt:
        producer.flush(5)
        note(f"Interrupted: {delivered} of {sent} records delivered.")
        raise typer.Exit(130) from None
    watch.check(fatal_down=remaining > 0)
    if failures:
        raise _kafka_error(failures[0], topic, conf["sasl.username"])
    if remaining:
        raise Unavailable(f"{remaining} records were not delivered within 30s: the brokers did not answer")
    if problem is not None:
        raise UsageError(f"{problem}; the {delivered} records before it were delivered, nothing after it")
    summary = {"cluster": session.cluster_id(cluster), "topic": topic, "produced": delivered}
    done(output, f"Produced {delivered} records to {topic}.", summary)


def _timestamp_ms(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--timestamp {value!r}: give milliseconds since the epoch or ISO 8601 (2026-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _record(msg: Any) -> dict[str, Any]:
    kind, ts = msg.timestamp()
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": ts if kind else None,
        "key": _text(msg.key()),
        "headers": {k: _text(v) for k, v in (msg.headers() or [])},
        "value": _text(msg.value()),
    }


def consume(
    topic: TopicArg,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the earliest offset.")
    ] = False,
    offset: Annotated[int | None, typer.Option("--offset", min=0, help="Start at this offset.")] = None,
    timestamp: Annotated[
        str | None, typer.Option("--timestamp", help="Start at the first record at or after this time.")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", help="Consume as this consumer group (offsets are committed)."),
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many records.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option("--idle-timeout", min=0.1, help="Stop after this many seconds without a record."),
    ] = None,
    partition: Annotated[int | None, typer.Option("--partition", min=0, help="Only this partition.")] = None,
    print_key: Annotated[bool, typer.Option("--print-key", help="Print each record's key.")] = False,
    print_headers: Annotated[
        bool, typer.Option("--print-headers", help="Print each record's headers.")
    ] = False,
    print_offset: Annotated[bool, typer.Option("--print-offset", help="Print partition:offset.")] = False,
    separator: Annotated[str, typer.Option("--separator", help="Between printed fields.")] = "\t",
    cluster: ClusterOpt = None,
    api_key: ApiKeyOpt = None,
    api_secret: ApiSecretOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Print records (one per line; with -o json, one JSON object per line). Ctrl-C stops cleanly.

    Without a flag it starts at the end (new records only). With --group, a committed offset wins
    over --from-beginning, as in Kafka; --offset and --timestamp always apply.
    """
    starts = [flag for flag, given in (("--from-beginning", from_beginning), ("--offset", offset is not None),
                                       ("--timestamp", timestamp is not None)) if given]  # fmt: skip
    if len(starts) > 1:
        raise UsageError(f"{' and '.join(starts)} cannot be combined: choose one start position")
    start_ms = _timestamp_ms(timestamp) if timestamp is not None else None
    session = Session()
    conf, described = _connect(session, cluster, topic, api_key, api_secret)
    count = described["partitions_count"]
    if partition is not None and partition >= count:
        raise UsageError(f"--partition {partition}: topic {topic} has {count} partitions")

    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

    watch = Watch(conf["sasl.username"])
    settings = {
        **conf,
        "group.id": group or "kastle-cli",
        "enable.auto.commit": bool(group),
        "enable.auto.offset.store": False,  # an offset is stored only once its record was printed
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "error_cb": watch,
        "log_level": 0,
    }
    consumer = Consumer(settings)
    signal.signal(signal.SIGTERM, _interrupt)

    def positions(parts: list[Any]) -> list[Any]:
        if offset is not None:
            return [TopicPartition(topic, p.partition, offset) for p in parts]
        if start_ms is not None:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p.partition, start_ms) for p in parts], 10
            )
            return [
                TopicPartition(topic, p.partition, p.offset if p.offset >= 0 else OFFSET_END) for p in found
            ]
        if group is None:
            return [TopicPartition(topic, p.partition, OFFSET_BEGINNING if from_beginning else OFFSET_END)
                    for p in parts]  # fmt: skip
        return parts

    def on_assign(c: Any, parts: list[Any]) -> None:
        mine = [p for p in parts if partition is None or p.partition == partition]
        c.assign(positions(mine) if (offset is not None or start_ms is not None) else mine)

    wanted = [partition] if partition is not None else list(range(count))
    if group is None:
        consumer.assign(positions([TopicPartition(topic, p) for p in wanted]))
    else:
        consumer.subscribe([topic], on_assign=on_assign)

    seen = 0
    last = time.monotonic()
    try:
        while max_messages is None or seen < max_messages:
            msg = consumer.poll(0.5)
            watch.check(fatal_down=time.monotonic() - last > 30)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                    break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if group is None and msg.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    continue  # librdkafka looks up its (unused) group; a scoped key may not: no matter
                raise _kafka_error(msg.error(), topic, conf["sasl.username"])
            _print(msg, output, print_key, print_headers, print_offset, separator)
            consumer.store_offsets(message=msg)
            seen += 1
            last = time.monotonic()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how an endless consume ends: commit and close below, exit 0
    finally:
        with contextlib.suppress(Exception):  # closing after an error must not hide it
            consumer.close()  # commits the stored offsets of a group
    note(f"Consumed {seen} records from {topic}.")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print(
    msg: Any, output: Format, print_key: bool, print_headers: bool, print_offset: bool, sep: str
) -> None:
    if output is Format.json:
        sys.stdout.write(json.dumps(_record(msg)) + "\n")
    elif output is Format.yaml:
        import yaml

        sys.stdout.write("---\n" + yaml.safe_dump(_record(msg), sort_keys=False))
    else:
        fields: list[str] = []
        if print_offset:
            fields.append(f"{msg.partition()}:{msg.offset()}")
        if print_key:
            fields.append(_text(msg.key()) or "")
        if print_headers:
            fields.append(",".join(f"{k}={_text(v) or ''}" for k, v in (msg.headers() or [])))
        fields.append(_text(msg.value()) or "")
        sys.stdout.write(sep.join(fields) + "\n")
    sys.stdout.flush()
