"""Truncating a partition log (a follower's divergent tail): whole batches go, later segments
and their files go, indexes stay true, appends continue at the new end, and the cut survives a
clean or an unclean reopen."""

from __future__ import annotations

from pathlib import Path

from compaction_checks import build_batch, check_indexes, read_batches, segment_bases

from brokerd.records import validate_and_stamp
from brokerd.storage import LogSettings, PartitionLog
from brokerd.storage.manager import LogManager


def _settings() -> LogSettings:
    return LogSettings(segment_bytes=1024, index_interval_bytes=128)


def _append(plog: PartitionLog, n: int, tag: bytes) -> None:
    batch = build_batch([(None, tag + b"-%03d" % i + b"." * 40, 1000 + i) for i in range(n)])
    batches, count = validate_and_stamp(batch, plog.next_offset, 1 << 24)
    plog.append(batch, batches, count)


def _offsets(plog: PartitionLog) -> list[int]:
    """Every offset a consumer reading from the log start gets, fetch by fetch."""
    out: list[int] = []
    offset = plog.start_offset
    while offset < plog.next_offset:
        batches = read_batches(plog.read(offset, 1 << 24, True))
        if not batches:
            break
        for batch in batches:
            out.extend(range(batch.base_offset, batch.last_offset + 1))
        offset = batches[-1].last_offset + 1
    return out


def test_truncation_cuts_whole_batches_and_later_segments(tmp_path: Path) -> None:
    manager = LogManager(str(tmp_path), _settings())
    pdir = tmp_path / "p"
    plog = PartitionLog.open("t", 0, str(pdir), _settings(), clean=False)
    for i in range(30):
        _append(plog, 3, b"a%d" % i)  # 90 records in 30 batches over several segments
    assert plog.next_offset == 90 and len(segment_bases(pdir)) > 3
    # Offset 50 sits inside the batch 48-50: the batch goes whole.
    assert manager.truncate(plog, 50) == 48
    assert _offsets(plog) == list(range(48))
    assert all(base <= 48 for base in segment_bases(pdir))  # an emptied segment may start at 48
    assert check_indexes(pdir) > 0
    # Nothing to do at or past the end.
    assert manager.truncate(plog, 48) == 48 and manager.truncate(plog, 70) == 48
    # Appends continue at the cut, with the new leader's data.
    _append(plog, 2, b"b")
    assert plog.next_offset == 50
    tail = read_batches(plog.read(48, 1 << 20, True))
    assert tail[0].base_offset == 48
    check_indexes(pdir)
    plog.close()
    # Unclean and clean reopens both find the truncated log.
    for clean in (False, True):
        again = PartitionLog.open("t", 0, str(pdir), _settings(), clean=clean)
        assert again.next_offset == 50 and _offsets(again) == list(range(50))
        again.close()


def test_truncating_below_everything_empties_the_log_at_its_start(tmp_path: Path) -> None:
    manager = LogManager(str(tmp_path), _settings())
    pdir = tmp_path / "p"
    plog = PartitionLog.open("t", 0, str(pdir), _settings(), clean=False)
    for i in range(10):
        _append(plog, 3, b"a%d" % i)
    assert manager.truncate(plog, 0) == 0
    assert segment_bases(pdir) == [0] and plog.read(0, 1 << 20, True) == b""
    _append(plog, 1, b"c")
    assert _offsets(plog) == [0]
    plog.close()
