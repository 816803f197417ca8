"""Exact wire behaviour with a raw client: versions, tagged fields, bad frames, fetch semantics."""

from __future__ import annotations

import datetime
import socket
import struct
import threading
import time

import pytest
from brokerd_wire import Wire, encode, make_batch, request_class

from brokerd.protocol import kio_adapter

MS = datetime.timedelta(milliseconds=1)


def api_versions(wire: Wire, version: int = 3):
    cls = request_class(18, version)
    return wire.request(kio_adapter.build(cls, client_software_name="wire", client_software_version="1"))


def create(wire: Wire, name: str, partitions: int = 1, configs: dict | None = None, version: int = 7):
    cls = request_class(19, version)
    mod = kio_adapter.request_module(19, version)
    topic = mod.CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=1,
        assignments=(),
        configs=tuple(mod.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()),
    )
    return wire.request(kio_adapter.build(cls, topics=(topic,), timeout=5000 * MS, validate_only=False))


def produce(wire: Wire, topic: str, partition: int, records: bytes, acks: int = -1, version: int = 9):
    cls = request_class(0, version)
    mod = kio_adapter.request_module(0, version)
    req = kio_adapter.build(
        cls,
        transactional_id=None,
        acks=acks,
        timeout=5000 * MS,
        topic_data=(
            mod.TopicProduceData(
                name=topic, partition_data=(mod.PartitionProduceData(index=partition, records=records),)
            ),
        ),
    )
    return req


def produce_one(wire: Wire, topic: str, partition: int, records: bytes, **kw):
    resp = wire.request(produce(wire, topic, partition, records, **kw))
    return resp.responses[0].partition_responses[0]


def fetch_request(
    topic: str,
    offset: int,
    *,
    max_wait_ms: int = 0,
    min_bytes: int = 1,
    max_bytes: int = 10 << 20,
    partition_max_bytes: int = 10 << 20,
    version: int = 12,
    session_id: int = 0,
):
    cls = request_class(1, version)
    mod = kio_adapter.request_module(1, version)
    part = kio_adapter.build(
        mod.FetchPartition,
        partition=0,
        current_leader_epoch=-1,
        fetch_offset=offset,
        last_fetched_epoch=-1,
        log_start_offset=-1,
        partition_max_bytes=partition_max_bytes,
    )
    return kio_adapter.build(
        cls,
        replica_id=-1,
        max_wait=max_wait_ms * MS,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=session_id,
        session_epoch=-1,
        topics=(mod.FetchTopic(topic=topic, partitions=(part,)),),
        forgotten_topics_data=(),
        rack_id="",
    )


def batch_offsets(records: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos + 61 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        (count,) = struct.unpack_from(">i", records, pos + 57)
        out.append((base, count))
        pos += 12 + length
    return out


@pytest.fixture
def wire(broker):
    with Wire(broker.port) as w:
        yield w


def test_api_versions_answers_every_version(wire) -> None:
    # The advertised ranges (Kafka 4.1's, for what brokerd serves) are checked API by API in
    # test_api_versions_matrix.py.
    for version in range(0, 5):
        assert api_versions(wire, version).error_code == 0


def test_unsupported_api_versions_version_gets_kip_511_answer(wire) -> None:
    # v9 does not exist: the header is read, the body ignored; the answer is a v0 body.
    wire.send_raw(struct.pack(">hhih", 18, 9, 77, 1) + b"x" + b"\x00" + b"garbage")
    frame = wire.recv_frame()
    (corr,) = struct.unpack_from(">i", frame)
    assert corr == 77
    error, n, key, lo, hi = struct.unpack_from(">hihhh", frame, 4)
    assert (error, n, key, lo, hi) == (35, 1, 18, 0, 4)


def test_unknown_tagged_fields_are_skipped(wire) -> None:
    cls = request_class(18, 3)
    body = encode(cls(client_software_name="wire", client_software_version="1"))
    # unknown tag in the request header and in the body
    header = struct.pack(">hhih", 18, 3, 5, 4) + b"wire" + bytes([1, 42, 3]) + b"abc"
    body = body[:-1] + bytes([2, 7, 1]) + b"z" + bytes([99, 0])
    wire.send_raw(header + body)
    frame = wire.recv_frame()
    assert struct.unpack_from(">ih", frame) == (5, 0)

    # Metadata v12 with an unknown tag inside a nested topic struct
    mod = kio_adapter.request_module(3, 12)
    req = mod.MetadataRequest(
        topics=(mod.MetadataRequestTopic(topic_id=None, name="tagged"),),
        allow_auto_topic_creation=True,
        include_topic_authorized_operations=False,
    )
    raw = encode(req)
    at = 1 + 16 + 1 + len("tagged")
    raw = raw[:at] + bytes([1, 5, 2]) + b"hi" + raw[at + 1 :]
    wire.send_raw(wire.header(3, 12, True) + raw)
    frame = wire.recv_frame()
    resp, _ = kio_adapter.decode_entity(kio_adapter.response_class(3, 12), frame, 5), None
    assert resp.topics[0].name == "tagged" and resp.topics[0].error_code == 0


def test_produce_v0_to_v2_closes_the_connection(broker) -> None:
    for version in (0, 2):
        with Wire(broker.port) as w:
            w.send_raw(struct.pack(">hhih", 0, version, 1, 0) + b"\x00\x01\x00\x00\x03\xe8\x00\x00\x00\x00")
            assert w.recv_frame() is None
    assert "no longer supported" in broker.log_text()


def test_malformed_frames_close_only_that_connection(broker) -> None:
    with Wire(broker.port) as good:
        create(good, "m")
        for garbage in (
            struct.pack(">hhih", 3, 12, 1, 0) + b"\xff\xff\xff\xff\xff\xff",  # bad body
            struct.pack(">hhih", 999, 0, 1, 0),  # unknown api key
            struct.pack(">hhih", 3, 99, 1, 0),  # unknown version
            b"\x00\x03",  # truncated header
        ):
            with Wire(broker.port) as bad:
                bad.send_raw(garbage)
                assert bad.recv_frame() is None
        with Wire(broker.port) as bad:  # a length prefix larger than socket.request.max.bytes
            bad.sock.sendall(struct.pack(">i", 200 * 1024 * 1024))
            assert bad.closed_by_peer()
        # the good connection is unaffected
        assert produce_one(good, "m", 0, make_batch([(b"k", b"v")])).error_code == 0
    assert broker.healthz() == 200


def test_corrupt_and_oversized_batches(broker_factory) -> None:
    b = broker_factory(settings={"message.max.bytes": 2000})
    with Wire(b.port) as w:
        create(w, "c")
        bad = bytearray(make_batch([(b"k", b"v")]))
        bad[-1] ^= 1
        assert produce_one(w, "c", 0, bytes(bad)).error_code == 2  # CORRUPT_MESSAGE
        big = make_batch([(b"k", b"x" * 5000)])
        assert produce_one(w, "c", 0, big).error_code == 10  # MESSAGE_TOO_LARGE
        assert produce_one(w, "c", 0, make_batch([(b"k", b"v")])).error_code == 0
        assert produce_one(w, "nope", 0, make_batch([(b"k", b"v")])).error_code == 3
        # nothing of the refused batches was stored
        resp = w.request(fetch_request("c", 0))
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(0, 1)]


def test_fetch_long_poll_is_woken_by_produce(broker) -> None:
    with Wire(broker.port) as w, Wire(broker.port) as p:
        create(w, "lp")
        t0 = time.monotonic()
        resp = w.request(fetch_request("lp", 0, max_wait_ms=300))
        waited = time.monotonic() - t0
        assert 0.25 <= waited < 2 and resp.responses[0].partitions[0].records in (b"", None)

        def later():
            time.sleep(0.3)
            produce_one(p, "lp", 0, make_batch([(b"k", b"late")]))

        thread = threading.Thread(target=later)
        t0 = time.monotonic()
        thread.start()
        resp = w.request(fetch_request("lp", 0, max_wait_ms=10_000))
        waited = time.monotonic() - t0
        thread.join()
        assert waited < 3, "long poll was not woken by the append"
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(0, 1)]
        assert resp.session_id == 0


def test_fetch_long_poll_sees_an_append_handled_before_it_parked(broker) -> None:
    """A Fetch and a Produce in one write: the Produce is appended while the Fetch is on its
    way to parking. The Fetch answers with the record at once, not after max_wait."""
    with Wire(broker.port) as w:
        create(w, "race")
        fetch = fetch_request("race", 0, max_wait_ms=10_000)
        append = produce(w, "race", 0, make_batch([(b"k", b"raced")]), acks=1)
        frames = b""
        for entity in (fetch, append):
            cls = type(entity)
            payload = w.header(cls.__api_key__, cls.__version__, cls.__flexible__) + encode(entity)
            frames += struct.pack(">i", len(payload)) + payload
        t0 = time.monotonic()
        w.sock.sendall(frames)
        resp = w.recv(1, 12)
        waited = time.monotonic() - t0
        assert w.recv(0, 9).responses[0].partition_responses[0].error_code == 0
        assert waited < 5, f"the parked fetch missed the append and waited {waited:.1f} s"
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(0, 1)]


def test_fetch_byte_limits_and_batch_containing_offset(broker) -> None:
    with Wire(broker.port) as w:
        create(w, "lim")
        assert produce_one(w, "lim", 0, make_batch([(None, b"a" * 100)] * 5)).base_offset == 0
        for i in range(10):
            assert produce_one(w, "lim", 0, make_batch([(None, b"b" * 1000)])).base_offset == 5 + i
        one_batch = len(make_batch([(None, b"b" * 1000)]))
        # starts at the batch containing offset 3 (base 0)
        resp = w.request(fetch_request("lim", 3, partition_max_bytes=1))
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(0, 5)]  # KIP-74: at least one
        resp = w.request(fetch_request("lim", 5, partition_max_bytes=one_batch * 2 + 10))
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(5, 1), (6, 1)]
        resp = w.request(fetch_request("lim", 5, max_bytes=one_batch * 3 + 5))
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(5, 1), (6, 1), (7, 1)]
        part = w.request(fetch_request("lim", 15)).responses[0].partitions[0]
        assert part.high_watermark == 15 and not part.records
        part = w.request(fetch_request("lim", 16)).responses[0].partitions[0]
        assert part.error_code == 1  # OFFSET_OUT_OF_RANGE
        resp = w.request(fetch_request("lim", 0, session_id=1234))
        assert resp.error_code == 70  # FETCH_SESSION_ID_NOT_FOUND


def test_fetch_by_topic_id_and_delete_by_id(broker) -> None:
    with Wire(broker.port) as w:
        topic_id = create(w, "byid").topics[0].topic_id
        produce_one(w, "byid", 0, make_batch([(None, b"x")]))
        mod = kio_adapter.request_module(1, 13)
        part = kio_adapter.build(
            mod.FetchPartition,
            partition=0,
            current_leader_epoch=-1,
            fetch_offset=0,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=1 << 20,
        )
        req = kio_adapter.build(
            request_class(1, 13),
            replica_id=-1,
            max_wait=0 * MS,
            min_bytes=1,
            max_bytes=1 << 20,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=(mod.FetchTopic(topic_id=topic_id, partitions=(part,)),),
            forgotten_topics_data=(),
            rack_id="",
        )
        resp = w.request(req)
        assert resp.responses[0].topic_id == topic_id
        assert batch_offsets(resp.responses[0].partitions[0].records) == [(0, 1)]
        md = w.request(
            request_class(3, 12)(
                topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
            )
        )
        assert {t.name: t.topic_id for t in md.topics}["byid"] == topic_id
        dmod = kio_adapter.request_module(20, 6)
        resp = w.request(
            request_class(20, 6)(
                topics=(dmod.DeleteTopicState(name=None, topic_id=topic_id),), timeout=5000 * MS
            )
        )
        assert resp.responses[0].error_code == 0 and resp.responses[0].name == "byid"
        resp = w.request(req)
        assert resp.responses[0].partitions[0].error_code == 100  # UNKNOWN_TOPIC_ID


def test_list_offsets_specs(broker) -> None:
    with Wire(broker.port) as w:
        create(w, "lo")
        for ts in (1000, 5000, 3000):
            produce_one(w, "lo", 0, make_batch([(None, b"x")], timestamp=ts))
        mod = kio_adapter.request_module(2, 8)

        def lookup(ts: int) -> tuple[int, int, int]:
            req = request_class(2, 8)(
                replica_id=-1,
                isolation_level=0,
                topics=(
                    mod.ListOffsetsTopic(
                        name="lo",
                        partitions=(
                            mod.ListOffsetsPartition(
                                partition_index=0, current_leader_epoch=-1, timestamp=ts
                            ),
                        ),
                    ),
                ),
            )
            p = w.request(req).topics[0].partitions[0]
            return p.error_code, p.offset, p.timestamp

        assert lookup(-1) == (0, 3, -1)
        assert lookup(-2) == (0, 0, -1)
        assert lookup(-3) == (0, 1, 5000)  # max timestamp
        assert lookup(2000) == (0, 1, 5000)
        assert lookup(1000) == (0, 0, 1000)
        assert lookup(6000) == (0, -1, -1)


def test_pipelined_requests_are_answered_in_order(broker) -> None:
    with Wire(broker.port) as w:
        create(w, "pipe")
        sent = []
        for i in range(60):
            if i % 3 == 0:
                sent.append((w.send(fetch_request("pipe", 0, max_wait_ms=50, min_bytes=10 << 20)), 1, 12))
            elif i % 3 == 1:
                sent.append((w.send(produce(w, "pipe", 0, make_batch([(None, b"%d" % i)]))), 0, 9))
            else:
                sent.append((w.send(request_class(3, 1)(topics=None)), 3, 1))
        for corr, _api, _version in sent:
            frame = w.recv_frame()
            assert struct.unpack_from(">i", frame)[0] == corr


def test_large_frames_split_across_reads_and_pipelined(broker) -> None:
    """Produce frames larger than one read, their size fields and bodies cut anywhere and sent
    back to back with small requests, are answered in order and stored byte for byte."""
    big = [make_batch([(None, bytes([i % 256]) * 1000) for i in range(k, k + 700)]) for k in (0, 1)]
    small = make_batch([(None, b"small")])
    sent = [big[0], small, big[1], big[0], small]  # ~700 KB each: more than one read takes
    with Wire(broker.port) as w:
        create(w, "big")
        stream = b""
        for records in sent:
            req = produce(w, "big", 0, records, acks=1)
            cls = type(req)
            payload = w.header(cls.__api_key__, cls.__version__, cls.__flexible__) + encode(req)
            stream += struct.pack(">i", len(payload)) + payload
        start = 0
        for cut in (1, 3, 70_001, 300_000, 701_000, 701_002, 1_500_000, len(stream)):
            w.sock.sendall(stream[start:cut])  # a pause after each piece: a read of its own
            start = cut
            time.sleep(0.05)
        bases = []
        for _ in sent:
            [part] = w.recv(0, 9).responses[0].partition_responses
            assert part.error_code == 0
            bases.append(part.base_offset)
        assert bases == [0, 700, 701, 1401, 2101]
        stored, offset = [], 0
        while offset < 2102:
            part = w.request(fetch_request("big", offset)).responses[0].partitions[0]
            assert part.error_code == 0 and part.records
            pos = 0
            for base, count in batch_offsets(part.records):
                if base >= offset:
                    (length,) = struct.unpack_from(">i", part.records, pos + 8)
                    stored.append(bytes(part.records[pos + 61 : pos + 12 + length]))  # the records
                    offset = base + count
                pos += 12 + struct.unpack_from(">i", part.records, pos + 8)[0]
        assert stored == [records[61:] for records in sent]


def test_a_large_frame_buffer_is_reused_only_once_nothing_refers_to_it() -> None:
    from brokerd import server

    first = server._frame_buffer(600_000)
    server._scratch.spare = first
    records = memoryview(first)[100:200]  # as a handler that kept the records would hold them
    assert server._frame_buffer(600_000) is not first
    del records
    assert server._frame_buffer(600_000) is not first  # ``first`` itself is still referred to here
    first_id = id(first)
    del first
    again = server._frame_buffer(590_000)  # nothing else refers to it: the same buffer, resized
    assert id(again) == first_id and len(again) == 590_000
    del again
    small = server._frame_buffer(100_000)  # far smaller: a new one, the big one is not kept for it
    assert id(small) != first_id and len(small) == 100_000
    del server._scratch.spare


def test_idle_socket_does_not_block_others(broker) -> None:
    slow = socket.create_connection(("127.0.0.1", broker.port))
    try:
        slow.sendall(b"\x00\x00\x00\x20\x00")  # a partial frame, never finished
        with Wire(broker.port) as w:
            assert api_versions(w).error_code == 0
    finally:
        slow.close()
