"""The leader epoch cache: KIP-279's OffsetForLeaderEpoch answers, truncation from either
end, and Kafka's leader-epoch-checkpoint file kept across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerd.storage.epochs import UNDEFINED_EPOCH, EpochCacheError, LeaderEpochCache


def test_end_offsets_follow_kip_279(tmp_path: Path) -> None:
    cache = LeaderEpochCache(str(tmp_path))
    assert cache.end_offset_for(0, 0) == (UNDEFINED_EPOCH, -1)  # nothing known yet
    for epoch, start in ((1, 0), (3, 10), (4, 25)):
        cache.assign(epoch, start)
    log_end = 40
    assert cache.end_offset_for(4, log_end) == (4, 40)  # the latest epoch ends at the log end
    assert cache.end_offset_for(3, log_end) == (3, 25)
    assert cache.end_offset_for(2, log_end) == (1, 10)  # an epoch this log never had: the one before it
    assert cache.end_offset_for(0, log_end) == (0, 0)  # before the first known epoch
    assert cache.end_offset_for(5, log_end) == (UNDEFINED_EPOCH, -1)  # after the latest
    assert cache.end_offset_for(UNDEFINED_EPOCH, log_end) == (UNDEFINED_EPOCH, -1)


def test_assign_ignores_repeats_and_drops_what_a_truncation_removed(tmp_path: Path) -> None:
    cache = LeaderEpochCache(str(tmp_path))
    cache.assign(1, 0)
    cache.assign(1, 5)  # later batches of the same epoch
    cache.assign(2, 8)
    assert cache.entries == [(1, 0), (2, 8)]
    cache.assign(2, 6)  # the log was truncated below epoch 2's start and it began again earlier
    assert cache.entries == [(1, 0), (2, 6)]
    cache.assign(3, 4)  # a new leader whose log ends at 4: epoch 2's entry conflicts
    assert cache.entries == [(1, 0), (3, 4)]
    with pytest.raises(EpochCacheError):
        cache.assign(-1, 0)


def test_truncation_from_both_ends(tmp_path: Path) -> None:
    cache = LeaderEpochCache(str(tmp_path))
    for epoch, start in ((1, 0), (2, 10), (3, 20)):
        cache.assign(epoch, start)
    cache.truncate_from_end(15)  # a follower truncated its log to 15
    assert cache.entries == [(1, 0), (2, 10)]
    cache.truncate_from_start(12)  # retention moved the log start to 12
    assert cache.entries == [(2, 12)]
    cache.truncate_from_start(5)  # an older start changes nothing
    assert cache.entries == [(2, 12)]


def test_the_checkpoint_file_survives_a_restart_and_bad_files_are_named(tmp_path: Path) -> None:
    cache = LeaderEpochCache(str(tmp_path))
    cache.assign(0, 0)
    cache.assign(7, 120)
    path = tmp_path / "leader-epoch-checkpoint"
    assert path.read_text() == "0\n2\n0 0\n7 120\n"  # Kafka's format
    assert LeaderEpochCache(str(tmp_path)).entries == [(0, 0), (7, 120)]
    path.write_text("0\n3\n0 0\n")
    with pytest.raises(EpochCacheError, match="leader-epoch-checkpoint"):
        LeaderEpochCache(str(tmp_path))
    path.write_text("0\n2\n5 0\n3 10\n")
    with pytest.raises(EpochCacheError, match="must increase"):
        LeaderEpochCache(str(tmp_path))
