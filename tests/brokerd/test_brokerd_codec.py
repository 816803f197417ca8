"""Sans-IO pieces: the kio adapter, the hand-written fast paths, record batches, settings."""

from __future__ import annotations

import datetime
import struct
import uuid

import crc32c
import pytest
from brokerd_wire import encode, make_batch, request_class, response_class
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from brokerd.protocol import kio_adapter
from brokerd.protocol.fastpath import decode_produce, encode_fetch_response, encode_produce_response
from brokerd.records import BatchTooLarge, InvalidBatch, iter_headers, record_timestamps, validate_and_stamp
from brokerd.settings import Settings, SettingsError, flatten, parse_listener


def _metadata_v12_with_unknown_tags() -> tuple[bytes, object]:
    cls = request_class(3, 12)
    mod = kio_adapter.request_module(3, 12)
    req = cls(
        topics=(mod.MetadataRequestTopic(topic_id=None, name="abc"),),
        allow_auto_topic_creation=True,
        include_topic_authorized_operations=False,
    )
    raw = encode(req)
    # raw: [array len][uuid 16][name len+1]["abc"][topic tags=0][bool][bool][tags=0]
    topic_tags_at = 1 + 16 + 1 + 3
    assert raw[topic_tags_at] == 0 and raw[-1] == 0
    tagged = (
        raw[:topic_tags_at]
        + bytes([2, 7, 1])
        + b"z"
        + bytes([9, 0])  # two unknown tags in the nested struct
        + raw[topic_tags_at + 1 : -1]
        + bytes([1, 3, 2])
        + b"qq"  # one unknown tag at the top level
    )
    return tagged, req


def test_kio_itself_raises_on_unknown_tagged_fields() -> None:
    raw, _req = _metadata_v12_with_unknown_tags()
    with pytest.raises(KeyError):
        entity_reader(request_class(3, 12))(raw, 0)


def test_adapter_skips_unknown_tagged_fields_in_nested_and_top_level_structs() -> None:
    raw, req = _metadata_v12_with_unknown_tags()
    assert kio_adapter.decode_request(3, 12, raw, 0) == req


def test_adapter_keeps_known_tagged_fields() -> None:
    cls = request_class(1, 12)  # Fetch v12: cluster_id is tag 0
    mod = kio_adapter.request_module(1, 12)
    req = cls(
        cluster_id="c1",
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=5),
        min_bytes=1,
        max_bytes=100,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            mod.FetchTopic(
                topic="t",
                partitions=(
                    mod.FetchPartition(
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=3,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=10,
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    raw = encode(req)
    known = bytes([1, 0, 3, 3]) + b"c1"  # one tag: cluster_id (tag 0), compact string "c1"
    assert raw.endswith(known)
    with_unknown = raw[: -len(known)] + bytes([2, 0, 3, 3]) + b"c1" + bytes([5, 1]) + b"x"
    assert kio_adapter.decode_request(1, 12, with_unknown, 0) == req


def test_truncated_request_is_a_protocol_error() -> None:
    raw, _ = _metadata_v12_with_unknown_tags()
    with pytest.raises(kio_adapter.ProtocolError):
        kio_adapter.decode_request(3, 12, raw[:10], 0)


_TOPIC_IDS = {"a": uuid.UUID(int=0xA), "bb": uuid.UUID(int=0xBB), "t": uuid.UUID(int=0x7)}


def _topic_key(name: str, version: int) -> dict:
    """From Produce v13 a topic is named by its id."""
    return {"topic_id": _TOPIC_IDS[name]} if version >= 13 else {"name": name}


@pytest.mark.parametrize("version", range(3, 14))
def test_produce_request_fast_decoder_matches_kio(version: int) -> None:
    cls = request_class(0, version)
    mod = kio_adapter.request_module(0, version)
    batch = make_batch([(b"k", b"v")])
    req = kio_adapter.build(
        cls,
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(milliseconds=1500),
        topic_data=(
            mod.TopicProduceData(
                **_topic_key("a", version),
                partition_data=(
                    mod.PartitionProduceData(index=0, records=batch),
                    mod.PartitionProduceData(index=2, records=None),
                ),
            ),
            mod.TopicProduceData(**_topic_key("bb", version), partition_data=()),
        ),
    )
    raw = bytearray(b"prefix" + encode(req))
    decoded = decode_produce(raw, 6, version)
    assert decoded.acks == -1 and decoded.timeout_ms == 1500 and decoded.transactional_id is None
    assert [
        (name, [(i, None if r is None else bytes(r)) for i, r in parts]) for name, parts in decoded.topics
    ] == [
        (_TOPIC_IDS["a"] if version >= 13 else "a", [(0, batch), (2, None)]),
        (_TOPIC_IDS["bb"] if version >= 13 else "bb", []),
    ]


@pytest.mark.parametrize("version", range(3, 14))
def test_produce_response_fast_encoder_matches_kio(version: int) -> None:
    cls = response_class(0, version)
    mod = kio_adapter.response_module(0, version)
    partitions = [(0, 0, 42, -1, 0, None), (1, 2, -1, -1, -1, "CRC mismatch")]
    expected = kio_adapter.build(
        cls,
        responses=(
            mod.TopicProduceResponse(
                **_topic_key("t", version),
                partition_responses=tuple(
                    kio_adapter.build(
                        mod.PartitionProduceResponse,
                        index=i,
                        error_code=ErrorCode(e),
                        base_offset=b,
                        log_append_time=None,
                        log_start_offset=s,
                        record_errors=(),
                        error_message=m,
                    )
                    for i, e, b, _lat, s, m in partitions
                ),
            ),
        ),
        throttle_time=datetime.timedelta(0),
    )
    name = _TOPIC_IDS["t"] if version >= 13 else "t"
    assert encode_produce_response(version, [(name, partitions)]) == encode(expected)


@pytest.mark.parametrize("version", range(4, 19))
def test_fetch_response_fast_encoder_matches_kio(version: int) -> None:
    cls = response_class(1, version)
    mod = kio_adapter.response_module(1, version)
    tid = uuid.uuid4()
    batch = make_batch([(None, b"x" * 10)])
    # read_committed: partition 0 names the aborted transactions in its range
    parts = [(0, 0, 5, 3, 0, batch, [(42, 1), (43, 2)]), (1, 1, 7, 7, 2, None), (2, 0, 0, 0, 0, b"")]
    expected = kio_adapter.build(
        cls,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        session_id=0,
        responses=(
            kio_adapter.build(
                mod.FetchableTopicResponse,
                topic="t",
                topic_id=tid,
                partitions=tuple(
                    kio_adapter.build(
                        mod.PartitionData,
                        partition_index=p,
                        error_code=ErrorCode(e),
                        high_watermark=hw,
                        last_stable_offset=lso,
                        log_start_offset=ls,
                        aborted_transactions=tuple(
                            kio_adapter.build(mod.AbortedTransaction, producer_id=pid, first_offset=first)
                            for pid, first in (rest[0] if rest else ())
                        ),
                        preferred_read_replica=-1,
                        records=b"" if r is None else r,  # never null on the wire, as Kafka
                    )
                    for p, e, hw, lso, ls, r, *rest in parts
                ),
            ),
        ),
    )
    buffers, size = encode_fetch_response(version, [("t", tid, parts)])
    assert b"".join(buffers) == encode(expected)
    assert size == len(encode(expected))


def _fetch_response_kio(version: int, topics: list):
    """Kafka's Fetch response for ``topics`` [(name, id, [(p, error, hw, lso, log_start, records)])]."""
    cls = response_class(1, version)
    mod = kio_adapter.response_module(1, version)
    return kio_adapter.build(
        cls,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        session_id=0,
        responses=tuple(
            kio_adapter.build(
                mod.FetchableTopicResponse,
                topic=name,
                topic_id=tid,
                partitions=tuple(
                    kio_adapter.build(
                        mod.PartitionData,
                        partition_index=p,
                        error_code=ErrorCode(e),
                        high_watermark=hw,
                        last_stable_offset=lso,
                        log_start_offset=ls,
                        aborted_transactions=(),
                        preferred_read_replica=-1,
                        records=r,
                    )
                    for p, e, hw, lso, ls, r in parts
                ),
            )
            for name, tid, parts in topics
        ),
    )


@pytest.mark.parametrize("version", range(4, 19))
def test_fetch_error_partitions_match_kio_and_kafka(version: int) -> None:
    """Denied / unknown partitions as Kafka's FetchResponse.partitionResponse sends them.

    Error code, offsets -1, preferred replica -1 and an *empty* record set (Kafka never writes
    null records; librdkafka fails the whole response on one). v13+ name topics by id only.
    """
    from brokerd.handlers.fetch import (
        TOPIC_AUTHORIZATION_FAILED,
        UNKNOWN_TOPIC_ID,
        UNKNOWN_TOPIC_OR_PARTITION,
        _error_partition,
    )

    tid = uuid.uuid4()
    batch = make_batch([(None, b"x" * 10)])
    unknown = UNKNOWN_TOPIC_ID if version >= 13 else UNKNOWN_TOPIC_OR_PARTITION
    topics = [
        ("denied", tid, [_error_partition(0, TOPIC_AUTHORIZATION_FAILED), _error_partition(7, 29)]),
        ("ok", uuid.uuid4(), [(0, 0, 5, 5, 0, batch), _error_partition(9, UNKNOWN_TOPIC_OR_PARTITION)]),
        # an unknown topic: v13+ by an id that resolves to no name, older by a name with no id
        ("", uuid.uuid4(), [_error_partition(0, unknown)])
        if version >= 13
        else ("gone", None, [_error_partition(0, unknown)]),
    ]
    kafka = [
        (name, t_id, [(p, e, -1, -1, -1, b"") if e else (p, e, hw, lso, ls, r)
                      for p, e, hw, lso, ls, r, *_ in x])
        for name, t_id, x in topics
    ]
    expected = encode(_fetch_response_kio(version, kafka))
    buffers, size = encode_fetch_response(version, topics)
    raw = b"".join(buffers)
    assert raw == expected
    assert size == len(raw)
    decoded, end = entity_reader(response_class(1, version))(raw, 0)
    assert end == len(raw)
    denied = decoded.responses[0]
    if version >= 13:
        assert denied.topic_id == tid
    else:
        assert denied.topic == "denied"
    for p in denied.partitions:
        assert p.error_code == TOPIC_AUTHORIZATION_FAILED
        assert (p.high_watermark, p.last_stable_offset) == (-1, -1)
        if version >= 5:
            assert p.log_start_offset == -1
        if version >= 11:
            assert p.preferred_read_replica == -1
        assert p.records == b""  # empty; kio decodes a null record set as None
    assert decoded.responses[2].partitions[0].error_code == unknown


@pytest.mark.parametrize("version", range(4, 19))
def test_fetch_fast_encoder_never_writes_null_records(version: int) -> None:
    none, _ = encode_fetch_response(version, [("t", uuid.uuid4(), [(0, 1, 7, 7, 2, None)])])
    empty, _ = encode_fetch_response(version, [("t", uuid.uuid4(), [(0, 1, 7, 7, 2, b"")])])
    assert len(b"".join(none)) == len(b"".join(empty))
    decoded, _ = entity_reader(response_class(1, version))(b"".join(none), 0)
    assert decoded.responses[0].partitions[0].records == b""


def test_validate_and_stamp_assigns_offsets_in_place() -> None:
    data = bytearray(make_batch([(b"a", b"1"), (b"b", b"2")]) + make_batch([(None, b"3")]))
    batches, count = validate_and_stamp(memoryview(data), 10, 1 << 20)
    assert count == 3
    assert [b[0] for b in batches] == [10, 12]
    assert [h[1] for h in iter_headers(data)] == [10, 12]
    # offsets are outside the CRC: the stamped batch still verifies
    assert struct.unpack_from(">I", data, 17)[0] == crc32c.crc32c(bytes(data[21 : batches[0][1]]))


def test_log_append_time_restamps_timestamp_and_crc() -> None:
    data = bytearray(make_batch([(b"a", b"1")], timestamp=1000))
    validate_and_stamp(data, 0, 1 << 20, log_append_time=5000)
    (attrs,) = struct.unpack_from(">h", data, 21)
    assert attrs & 0x08
    assert struct.unpack_from(">q", data, 35)[0] == 5000
    assert struct.unpack_from(">I", data, 17)[0] == crc32c.crc32c(bytes(data[21:]))
    assert record_timestamps(bytes(data)) == [(0, 5000)]


def test_corrupt_and_oversized_batches_are_refused() -> None:
    good = make_batch([(b"a", b"1")])
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    with pytest.raises(InvalidBatch, match="CRC"):
        validate_and_stamp(flipped, 0, 1 << 20)
    with pytest.raises(InvalidBatch):
        validate_and_stamp(bytearray(good[:-3]), 0, 1 << 20)
    with pytest.raises(BatchTooLarge):
        validate_and_stamp(bytearray(good), 0, 40)
    old_magic = bytearray(good)
    old_magic[16] = 1
    with pytest.raises(InvalidBatch, match="magic"):
        validate_and_stamp(old_magic, 0, 1 << 20)


def test_record_timestamps_of_compressed_batches() -> None:
    import gzip

    raw = make_batch([(b"a", b"1"), (b"b", b"2")], timestamp=777)
    records = raw[61:]
    compressed = gzip.compress(records)
    header = bytearray(raw[:61])
    struct.pack_into(">i", header, 8, 49 + len(compressed))
    struct.pack_into(">h", header, 21, 1)
    assert record_timestamps(bytes(header) + compressed) == [(0, 777), (1, 777)]


def test_settings_precedence_and_kafka_names() -> None:
    toml = flatten(
        {
            "num": {"partitions": 3},
            "auto.create.topics.enable": False,
            "listeners": ["PLAINTEXT://:0"],
            "log": {"dirs": "/tmp/x", "segment.bytes": 2048},
        }
    )
    cfg = Settings.resolve(toml=toml, sets={"num.partitions": "5"}, flags={"node.id": "7"})
    assert cfg["num.partitions"] == 5
    assert cfg["auto.create.topics.enable"] is False
    assert cfg["data.dir"] == "/tmp/x"
    assert cfg["log.segment.bytes"] == 2048
    assert cfg["node.id"] == 7
    assert cfg.listeners[0].host == "0.0.0.0"


def test_settings_errors_are_one_line() -> None:
    base = {"data.dir": "/tmp/x", "listeners": ["PLAINTEXT://127.0.0.1:1"]}
    for bad, match in [
        ({"no.such.setting": "1"}, "unknown setting"),
        ({"num.partitions": "many"}, "expects a int"),
        ({"num.partitions": "0"}, ">= 1"),
        ({"listeners": ["HTTP://127.0.0.1:1"]}, "not supported"),
        ({"listeners": ["127.0.0.1:9092"]}, "PROTOCOL://HOST:PORT"),
        ({"listeners": ["SASL_PLAINTEXT://127.0.0.1:1"]}, "credentials"),
        ({"advertised.listeners": "PLAINTEXT://h:1"}, "derived by brokerd.*advertised.host"),
    ]:
        with pytest.raises(SettingsError, match=match) as info:
            Settings.resolve(flags={**base, **bad})
        assert "\n" not in str(info.value)
    assert parse_listener("SASL_PLAINTEXT://[::1]:9093").host == "::1"


@pytest.mark.parametrize(("api_key", "versions"), [(0, range(3, 14)), (1, range(4, 19))])
def test_hot_path_flexibility_table_matches_kio(api_key: int, versions: range) -> None:
    # Produce/Fetch header flexibility comes from a table (no schema import on the hot path).
    for v in versions:
        assert kio_adapter.is_flexible_request(api_key, v) == request_class(api_key, v).__flexible__
        assert kio_adapter.is_flexible_response(api_key, v) == response_class(api_key, v).__flexible__
