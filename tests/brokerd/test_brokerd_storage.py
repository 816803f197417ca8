"""Durable logs: restart with data intact, torn-tail recovery, segments, durable topic metadata."""

from __future__ import annotations

import datetime
import json

from brokerd_wire import Wire, request_class
from test_brokerd_wire import batch_offsets, create, fetch_request, make_batch, produce_one


def read_offsets(port: int, topic: str, partition_max_bytes: int = 10 << 20) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    offset = 0
    with Wire(port) as w:
        while True:
            part = w.request(fetch_request(topic, offset, partition_max_bytes=partition_max_bytes)).responses[
                0
            ]
            records = part.partitions[0].records
            if not records:
                return out
            batches = batch_offsets(records)
            out.extend(batches)
            offset = batches[-1][0] + batches[-1][1]


def test_restart_keeps_data_topics_and_ids(broker_factory) -> None:
    b = broker_factory(settings={"log.segment.bytes": 4096, "log.index.interval.bytes": 512})
    with Wire(b.port) as w:
        topic_id = create(w, "keep", partitions=2).topics[0].topic_id
        create(w, "gone")
        for i in range(40):
            batch = make_batch([(None, b"v" * 300)] * 2, timestamp=1000 + i)
            assert produce_one(w, "keep", i % 2, batch).error_code == 0
        w.request(request_class(20, 4)(topic_names=("gone",), timeout=datetime.timedelta(seconds=5)))
    segments = sorted(p.name for p in (b.data_dir / "keep-0").glob("*.log"))
    assert len(segments) > 2, "small log.segment.bytes should roll segments"
    assert (b.data_dir / "keep-0" / segments[0].replace(".log", ".index")).exists()
    assert (b.data_dir / "keep-0" / segments[0].replace(".log", ".timeindex")).exists()
    before = read_offsets(b.port, "keep")

    for crash in (False, True):
        b.restart(crash=crash)
        assert read_offsets(b.port, "keep") == before
        with Wire(b.port) as w:
            md = w.request(
                request_class(3, 12)(
                    topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
                )
            )
            topics = {t.name: t for t in md.topics}
            assert set(topics) == {"keep"}
            assert topics["keep"].topic_id == topic_id
            assert len(topics["keep"].partitions) == 2
    # offsets continue after the restarts; reading from the middle of old segments works
    with Wire(b.port) as w:
        assert produce_one(w, "keep", 0, make_batch([(None, b"z")])).base_offset == 40
        part = w.request(fetch_request("keep", 21, partition_max_bytes=1)).responses[0].partitions[0]
        assert batch_offsets(part.records) == [(20, 2)]


def test_torn_tail_is_truncated_on_recovery(broker_factory) -> None:
    b = broker_factory()
    with Wire(b.port) as w:
        create(w, "torn")
        for _ in range(5):
            produce_one(w, "torn", 0, make_batch([(b"k", b"v")] * 3))
    b.kill()
    segment = b.data_dir / "torn-0" / f"{0:020d}.log"
    good_size = segment.stat().st_size
    whole = make_batch([(b"k", b"torn")] * 3, base_offset=15)
    with open(segment, "ab") as fh:
        fh.write(whole[: len(whole) // 2])  # half a batch: a torn write
    b.start()
    assert segment.stat().st_size == good_size
    assert "recovered" in b.log_text()
    assert read_offsets(b.port, "torn") == [(0, 3), (3, 3), (6, 3), (9, 3), (12, 3)]
    with Wire(b.port) as w:
        assert produce_one(w, "torn", 0, make_batch([(b"k", b"v")])).base_offset == 15

    # a corrupt (bad CRC) complete batch at the tail is dropped too
    b.kill()
    size = segment.stat().st_size
    bad = bytearray(make_batch([(b"k", b"bad")], base_offset=16))
    bad[-1] ^= 0xFF
    with open(segment, "ab") as fh:
        fh.write(bad)
    b.start()
    assert segment.stat().st_size == size
    assert read_offsets(b.port, "torn")[-1] == (15, 1)


def test_runtime_files(broker) -> None:
    info = json.loads((broker.data_dir / "listeners.json").read_text())
    assert info["pid"] == broker.pid
    assert info["listeners"]["PLAINTEXT"] == broker.port
    assert (broker.data_dir / "meta.properties").read_text().startswith("version=1\ncluster.id=")
