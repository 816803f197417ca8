"""The log cleaner on partition logs (no broker process): what a pass keeps, writes and swaps.

Batches are encoded and decoded by kafka-python's record classes, not by brokerd's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from compaction_checks import build_batch, check_indexes, latest_by_key, read_batches, read_partition

from brokerd.records import validate_and_stamp
from brokerd.storage import LogSettings, PartitionLog
from brokerd.storage.cleaner import CleanerConfig, LogCleaner

DAY = 86_400_000


def open_log(pdir: Path, **overrides) -> PartitionLog:
    settings = LogSettings(segment_bytes=1 << 20, compact=True, min_cleanable_ratio=0.0,
                           delete_retention_ms=60_000, index_interval_bytes=256)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return PartitionLog.open("t", 0, str(pdir), settings, clean=False)


def append(plog: PartitionLog, batch: bytearray) -> int:
    batches, count = validate_and_stamp(batch, plog.next_offset, 1 << 24)
    return plog.append(batch, batches, count)


def read_through(plog: PartitionLog) -> bytes:
    """Everything a consumer fetching from the log start would get, fetch by fetch."""
    out = bytearray()
    offset = plog.start_offset
    while offset < plog.next_offset:
        data = plog.read(offset, 1 << 24, True)
        if not data:
            break
        out += data
        offset = read_batches(data)[-1].last_offset + 1
    return bytes(out)


def cleaner(plog: PartitionLog, **config) -> LogCleaner:
    return LogCleaner(lambda: [plog], lambda: CleanerConfig(**config))


def test_a_pass_keeps_each_keys_latest_record_at_its_offset_with_codec_and_producer(tmp_path) -> None:
    pdir = tmp_path / "t-0"
    plog = open_log(pdir)
    now = int(time.time() * 1000)
    expected: dict[bytes, tuple[int, bytes]] = {}
    headers: dict[int, tuple] = {}
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    for version in range(5):
        for chunk in range(4):
            keys = [chunk * 5 + i for i in range(5)]
            records = [(f"k{k}".encode(), f"v{version}-{k}".encode() * 3, now + version) for k in keys]
            pid, seq = (42, version * 4 + chunk) if chunk == 0 else (-1, -1)
            base = append(plog, build_batch(records, codec=codecs[(version + chunk) % 5], producer_id=pid,
                                            epoch=0 if pid >= 0 else -1, sequence=seq))
            headers[base] = (codecs[(version + chunk) % 5], pid, seq)
            for i, (key, value, _ts) in enumerate(records):
                expected[key] = (base + i, value)
        plog.roll()
    append(plog, build_batch([(b"active", b"x", now)]))  # the active segment is never cleaned
    total = plog.next_offset

    result = cleaner(plog).run_pass()
    assert result is not None and result.records_removed > 0 and result.segments_swapped >= 5

    got = latest_by_key(pdir)
    assert got.pop(b"active")[1] == b"x"
    assert got == expected
    offsets = [r.offset for _b, records in read_partition(pdir) for r in records]
    assert offsets == sorted(offsets) and len(offsets) == len(expected) + 1
    for batch, records in read_partition(pdir):
        if batch.base_offset in headers:
            codec, pid, seq = headers[batch.base_offset]
            assert batch.producer_id == pid and batch.base_sequence == seq
            if records:
                assert batch.compression_type == ["none", "gzip", "snappy", "lz4", "zstd"].index(codec)
            assert all(r.timestamp >= now for r in records)
    # The producer's last batch (sequence 16) stays, with its records still current.
    assert any(b.producer_id == 42 and b.base_sequence == 16 for b, _r in read_partition(pdir))
    assert check_indexes(pdir) > 0

    # The in-memory log reads what the files hold, and a restart (recovery) agrees.
    data = read_through(plog)
    assert data == b"".join((pdir / f"{s.base:020d}.log").read_bytes() for s in plog.segments)
    plog.close()
    again = open_log(pdir)
    assert again.next_offset == total
    assert read_through(again) == data
    again.close()


def test_tombstones_stay_for_delete_retention_after_the_first_pass_then_go(tmp_path) -> None:
    pdir = tmp_path / "t-0"
    plog = open_log(pdir, delete_retention_ms=5_000)
    now = int(time.time() * 1000)
    big = b"1" * 500  # compressible: kafka-python leaves a batch uncompressed when it would not shrink
    append(plog, build_batch([(b"a", big, now), (b"b", big, now + 1)], codec="gzip"))
    append(plog, build_batch([(b"a", None, now + 2), (b"c", big, now + 3)], codec="gzip"))
    plog.roll()
    append(plog, build_batch([(b"d", b"1", now + 4)]))

    c = cleaner(plog)
    first = c.run_pass(now=now)
    assert first is not None
    got = latest_by_key(pdir)
    assert got[b"a"] == (2, None) and b"b" in got and b"c" in got
    tomb_batch, tomb_records = next((b, records) for b, records in read_partition(pdir)
                                    if any(r.key == b"a" for r in records))
    assert tomb_batch.attributes & 0x40, "the delete horizon is stored in the batch (KIP-534)"
    assert tomb_batch.compression_type == 1
    assert [r.timestamp for r in tomb_records] == [now + 2, now + 3], "record timestamps unchanged"
    assert check_indexes(pdir) > 0

    assert c.run_pass(now=now + 1_000) is None  # not dirty, horizon not reached
    second = c.run_pass(now=now + 5_001)
    assert second is not None and second.records_removed == 1
    got = latest_by_key(pdir)
    assert b"a" not in got and set(got) == {b"b", b"c", b"d"}
    assert got[b"c"][0] == 3
    assert check_indexes(pdir) > 0
    plog.close()


def test_an_idempotent_producers_last_batch_stays_empty_with_its_sequence(tmp_path) -> None:
    pdir = tmp_path / "t-0"
    plog = open_log(pdir)
    now = int(time.time() * 1000)
    for seq in range(0, 12, 3):
        append(plog, build_batch([(b"k", b"p", now)] * 3, producer_id=7, epoch=2, sequence=seq, codec="lz4"))
    plog.roll()
    append(plog, build_batch([(b"k", b"other", now)]))
    plog.roll()
    append(plog, build_batch([(b"z", b"1", now)]))

    assert cleaner(plog).run_pass() is not None
    batches = [(b, r) for b, r in read_partition(pdir)]
    mine = [(b, r) for b, r in batches if b.producer_id == 7]
    assert len(mine) == 1, "only the producer's last batch remains"
    batch, records = mine[0]
    assert records == [] and batch.records_count == 0
    assert batch.base_offset == 9 and batch.last_offset_delta == 2 and batch.base_sequence == 9
    assert batch.producer_epoch == 2 and batch.last_sequence == 11
    assert latest_by_key(pdir)[b"k"] == (12, b"other")
    assert check_indexes(pdir) > 0
    plog.close()


def test_a_small_dedupe_buffer_cleans_in_several_passes(tmp_path) -> None:
    pdir = tmp_path / "t-0"
    plog = open_log(pdir)
    now = int(time.time() * 1000)
    expected = {}
    for version in range(3):
        for start in range(0, 200, 50):
            records = [(f"k{i}".encode(), f"v{version}".encode(), now) for i in range(start, start + 50)]
            base = append(plog, build_batch(records))
            expected.update({r[0]: (base + i, r[1]) for i, r in enumerate(records)})
        plog.roll()
    append(plog, build_batch([(b"tail", b"1", now)]))
    expected[b"tail"] = (plog.next_offset - 1, b"1")

    c = cleaner(plog, dedupe_buffer_size=100 * 24 * 10 // 9)  # room for ~100 keys
    ends = []
    while (result := c.run_pass()) is not None:
        ends.append(result.end)
        assert len(ends) < 20
    assert len(ends) > 1 and ends == sorted(ends)
    assert latest_by_key(pdir) == expected
    assert check_indexes(pdir) > 0
    plog.close()


def _read_range_through(plog: PartitionLog) -> list[int]:
    """Every offset a zero-copy Fetch from the log start gets, fetch by fetch (read_range)."""
    out: list[int] = []
    offset = plog.start_offset
    while offset < plog.next_offset:
        found = plog.read_range(offset, 1 << 24, True)
        if found is None:
            break
        if isinstance(found, bytes):
            data = found
        else:
            fd, pos, size, _count = found
            try:
                data = os.pread(fd, size, pos)
            finally:
                os.close(fd)
        batches = read_batches(data)
        out.extend(r.offset for batch in batches for r in batch)
        offset = batches[-1].last_offset + 1
    return out


def test_a_fetch_into_a_segments_cleaned_away_tail_gets_the_next_segments_batch(tmp_path) -> None:
    """A pass removed the last batches of a segment: a fetch continuing where the previous one
    stopped (that segment's end) gets the next segment's first batch, as Kafka answers an offset
    in a gap, not an empty answer a consumer would poll for ever."""
    pdir = tmp_path / "t-0"
    plog = open_log(pdir, segment_bytes=3000)  # the two segments are cleaned apart
    now = int(time.time() * 1000)

    def batch(version: int, keys: range) -> bytearray:
        return build_batch([(f"k{k}".encode(), f"v{version}-{k}".encode() * 50, now) for k in keys])

    append(plog, batch(0, range(5)))
    append(plog, batch(0, range(5, 10)))  # offsets 5-9: superseded by the next segment
    plog.roll()
    append(plog, batch(1, range(5, 10)))
    plog.roll()
    append(plog, build_batch([(b"active", b"x", now)]))
    assert cleaner(plog).run_pass() is not None
    expected = [r.offset for _b, records in read_partition(pdir) for r in records]
    second_base = plog.segments[1].base
    assert max(o for o in expected if o < second_base) + 1 < second_base, "no tail was cleaned away"
    assert _read_range_through(plog) == expected
    plog.close()
