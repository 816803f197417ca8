"""Idempotent-producer state: id allocation, sequence checks, duplicates, fencing, recovery."""

from __future__ import annotations

from kio.schema.errors import ErrorCode as E

from brokerd.producers import INT32_MAX, ProducerIdAllocator, ProducerStateManager, increment_sequence

TP = ("t", 0)


def test_producer_ids_are_unique_across_restarts(tmp_path):
    alloc = ProducerIdAllocator(tmp_path, block_size=10)
    first = [alloc.allocate() for _ in range(25)]
    assert first == list(range(25))
    again = ProducerIdAllocator(tmp_path, block_size=10)
    nxt = again.allocate()
    assert nxt >= 30  # the reserved block is skipped, never reused
    assert nxt not in first


def test_sequences_duplicates_and_gaps(tmp_path):
    ps = ProducerStateManager(tmp_path)
    assert ps.check(TP, 7, 0, 0, 5).error is E.none
    ps.on_append(TP, 7, 0, 0, 5, base_offset=100)
    assert ps.check(TP, 7, 0, 5, 3).error is E.none
    ps.on_append(TP, 7, 0, 5, 3, base_offset=105)
    # A retry of either of the last batches is a duplicate with its original offsets.
    dup = ps.check(TP, 7, 0, 0, 5)
    assert dup.error is E.none and dup.duplicate is not None
    assert (dup.duplicate.first_offset, dup.duplicate.last_offset) == (100, 104)
    assert ps.check(TP, 7, 0, 5, 3).duplicate.first_offset == 105
    # A gap, or a batch older than the window, is out of order.
    assert ps.check(TP, 7, 0, 9, 1).error is E.out_of_order_sequence_number
    assert ps.check(TP, 7, 0, 2, 1).error is E.out_of_order_sequence_number
    assert ps.check(TP, 7, 0, 8, 1).error is E.none
    # Non-idempotent batches are not tracked.
    assert ps.check(TP, -1, -1, -1, 10).error is E.none
    # Other partitions and producers are independent; unknown producers start anywhere.
    assert ps.check(("t", 1), 7, 0, 42, 1).error is E.none
    assert ps.check(TP, 8, 0, 42, 1).error is E.none


def test_only_last_five_batches_are_remembered(tmp_path):
    ps = ProducerStateManager(tmp_path)
    for i in range(7):
        ps.on_append(TP, 1, 0, i, 1, base_offset=i)
    assert ps.check(TP, 1, 0, 2, 1).duplicate.first_offset == 2
    assert ps.check(TP, 1, 0, 1, 1).error is E.out_of_order_sequence_number


def test_epochs_fence_old_producers(tmp_path):
    ps = ProducerStateManager(tmp_path)
    ps.on_append(TP, 1, 3, 0, 1, base_offset=0)
    assert ps.check(TP, 1, 2, 1, 1).error is E.invalid_producer_epoch
    assert ps.check(TP, 1, 4, 5, 1).error is E.out_of_order_sequence_number
    assert ps.check(TP, 1, 4, 0, 1).error is E.none
    ps.on_append(TP, 1, 4, 0, 1, base_offset=1)
    assert ps.entry(TP, 1).epoch == 4
    assert ps.check(TP, 1, 3, 1, 1).error is E.invalid_producer_epoch


def test_sequence_wraps_around():
    assert increment_sequence(INT32_MAX, 1) == 0
    assert increment_sequence(INT32_MAX - 1, 3) == 1
    ps = ProducerStateManager("/nonexistent")
    ps.on_append(TP, 1, 0, INT32_MAX - 1, 2, base_offset=0)
    assert ps.check(TP, 1, 0, 0, 1).error is E.none


def test_snapshot_plus_replay_rebuilds_state(tmp_path):
    ps = ProducerStateManager(tmp_path)
    ps.on_append(TP, 1, 0, 0, 2, base_offset=0)
    ps.on_append(("u", 3), 2, 0, 0, 1, base_offset=0)
    ps.write_snapshot()
    ps.on_append(TP, 1, 0, 2, 2, base_offset=2)  # after the snapshot: only in the log

    again = ProducerStateManager(tmp_path)
    again.load_snapshot()
    assert again.replay_from(TP) == 2
    assert again.replay_from(("x", 0)) == 0
    log_batches = [
        (TP, 0, 1, 1, 0, 0, 2),  # before the snapshot offset: skipped
        (TP, 2, 3, 1, 0, 2, 2),
        (TP, 4, 4, -1, -1, -1, 1),  # not idempotent
    ]
    assert again.replay(log_batches) == 1
    assert again.check(TP, 1, 0, 2, 2).duplicate.first_offset == 2
    assert again.check(TP, 1, 0, 0, 2).duplicate.first_offset == 0
    assert again.check(TP, 1, 0, 4, 1).error is E.none
    assert again.check(("u", 3), 2, 0, 0, 1).duplicate is not None


def test_replay_without_snapshot_and_truncation(tmp_path):
    ps = ProducerStateManager(tmp_path)
    ps.load_snapshot()
    ps.replay([(TP, 0, 4, 9, 0, 0, 5), (TP, 5, 9, 9, 0, 5, 5)])
    ps.truncate(TP, 5)  # the second batch was torn off the log
    assert ps.check(TP, 9, 0, 5, 5).duplicate is None
    assert ps.check(TP, 9, 0, 5, 5).error is E.none
    ps.truncate(TP, 0)
    assert ps.entry(TP, 9) is None


def test_expiry_and_head_truncation(tmp_path):
    now = [0]
    ps = ProducerStateManager(tmp_path, expiration_ms=1000, clock=lambda: now[0])
    ps.on_append(TP, 1, 0, 0, 1, base_offset=0)
    now[0] = 500
    ps.on_append(TP, 2, 0, 0, 1, base_offset=1)
    now[0] = 1200
    assert ps.expire() == 1
    assert ps.entry(TP, 1) is None and ps.entry(TP, 2) is not None
    ps.truncate_head(TP, 2)
    assert ps.producer_count() == 0


def test_a_truncated_follower_forgets_cut_batches_and_keeps_older_ones(tmp_path):
    """KIP-101 truncation of a follower's log: sequences past the new log end are forgotten, and
    a producer whose remembered batches were all cut is taken again from the log."""
    from compaction_checks import build_batch

    from brokerd.idempotence import ProducerState
    from brokerd.records import validate_and_stamp
    from brokerd.storage import LogSettings, PartitionLog
    from brokerd.storage.manager import LogManager

    manager = LogManager(str(tmp_path), LogSettings())
    plog = PartitionLog.open("t", 0, str(tmp_path / "t-0"), LogSettings(), clean=False)
    state = ProducerState(str(tmp_path), expiration_ms=86_400_000)

    def append(pid: int, sequence: int) -> None:
        batch = build_batch([(b"k", b"v", 0)], producer_id=pid, epoch=0, sequence=sequence)
        batches, count = validate_and_stamp(batch, plog.next_offset, 1 << 24)
        plog.append(batch, batches, count)
        state.appended("t", 0, batch, batches)

    append(7, 0)  # offset 0
    append(9, 0)  # offset 1: producer 9's only batch before the cut
    append(7, 1)  # offset 2
    for sequence in range(1, 6):
        append(9, sequence)  # offsets 3-7: the 5 batches producer 9 is remembered by
    manager.truncate(plog, 3)
    state.truncated(plog)
    tp = ("t", 0)
    assert state.sequences.entry(tp, 7).last_seq == 1
    assert state.sequences.check(tp, 7, 0, 1, 1).duplicate.first_offset == 2
    # producer 9's sequences 1-5 are gone with the cut; its sequence 0 at offset 1 is known again
    assert state.sequences.entry(tp, 9).last_seq == 0
    assert state.sequences.check(tp, 9, 0, 0, 1).duplicate.first_offset == 1
    assert state.sequences.check(tp, 9, 0, 3, 1).error is E.out_of_order_sequence_number
    assert state.sequences.check(tp, 9, 0, 1, 1).error is E.none
