"""The leader epoch cache of a partition (KIP-101, KIP-279): at which offset each leader
epoch began, so that a follower can ask a new leader where their logs diverge
(OffsetForLeaderEpoch) and truncate there rather than to its high watermark.

Entries are (epoch, start offset), both strictly increasing. The file is Kafka's
``leader-epoch-checkpoint`` format (a version line ``0``, a count line, then one
``epoch start_offset`` line per entry), replaced atomically on every change.
"""

from __future__ import annotations

import bisect
import itertools
import os

from brokerd.durable import atomic_write

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
FILE_NAME = "leader-epoch-checkpoint"


class EpochCacheError(ValueError):
    pass


class LeaderEpochCache:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, FILE_NAME)
        self.entries: list[tuple[int, int]] = []
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path) as fh:
                lines = [line.strip() for line in fh if line.strip()]
        except FileNotFoundError:
            return
        try:
            version, count = int(lines[0]), int(lines[1])
            if version != 0 or count != len(lines) - 2:
                raise ValueError("version or count does not match")
            entries = [(int(a), int(b)) for a, b in (line.split() for line in lines[2:])]
        except (IndexError, ValueError) as exc:
            raise EpochCacheError(f"{self.path} is not a leader epoch checkpoint: {exc}") from None
        for (e1, o1), (e2, o2) in itertools.pairwise(entries):
            if not (e1 < e2 and o1 <= o2):
                raise EpochCacheError(f"{self.path}: epochs and offsets must increase ({e1} {o1}, {e2} {o2})")
        self.entries = entries

    def _save(self) -> None:
        text = f"0\n{len(self.entries)}\n" + "".join(f"{e} {o}\n" for e, o in self.entries)
        atomic_write(self.path, text.encode())

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else UNDEFINED_EPOCH

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that ``epoch`` began at ``start_offset`` (a leader taking over, or a follower
        appending the first batch of an epoch). Entries that conflict with it (an epoch as
        large or larger, or a start offset beyond it) are dropped: the log was truncated."""
        if epoch < 0 or start_offset < 0:
            raise EpochCacheError(f"epoch {epoch} and start offset {start_offset} must not be negative")
        if self.entries and self.entries[-1][0] == epoch and self.entries[-1][1] <= start_offset:
            return  # the epoch is known; later batches of it change nothing
        kept = [(e, o) for e, o in self.entries if e < epoch and o < start_offset]
        self.entries = [*kept, (epoch, start_offset)]
        self._save()

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: the largest epoch not above ``requested_epoch`` and the offset
        where it ended (the next epoch's start, or the log end for the latest epoch)."""
        if requested_epoch == UNDEFINED_EPOCH or not self.entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self.latest_epoch:
            return requested_epoch, log_end_offset
        epochs = [e for e, _o in self.entries]
        higher = bisect.bisect_right(epochs, requested_epoch)
        if higher == len(epochs):  # beyond the latest epoch
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:  # before the first epoch this log knows
            return requested_epoch, self.entries[0][1]
        return epochs[higher - 1], self.entries[higher][1]

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was truncated to ``end_offset``: epochs starting at or after it are gone."""
        kept = [(e, o) for e, o in self.entries if o < end_offset]
        if kept != self.entries:
            self.entries = kept
            self._save()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log's start moved to ``start_offset`` (retention, DeleteRecords): earlier epochs
        are gone, and the epoch covering the new start now begins there."""
        covering = None
        kept = []
        for e, o in self.entries:
            if o <= start_offset:
                covering = (e, start_offset)
            else:
                kept.append((e, o))
        entries = ([covering] if covering is not None else []) + kept
        if entries != self.entries:
            self.entries = entries
            self._save()
