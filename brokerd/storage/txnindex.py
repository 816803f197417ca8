"""The aborted-transaction index of a partition: Kafka's ``<base>.txnindex`` files.

One entry per aborted transaction, written when its abort marker is appended, to the file named
after the segment the marker went to. Kafka's layout, 34 bytes per entry (big-endian):
version int16 (0), producer id int64, first offset int64, last offset int64 (the marker's),
last stable offset int64 (the partition's once the marker is written).

A read_committed Fetch answers the aborted transactions overlapping the range it returns, and
the consumer drops their records. Entries are loaded from every ``.txnindex`` file of the
partition directory when the partition is first asked about; torn tails (a crash mid-write) are
ignored, entries past the log end (a truncated tail) are dropped, and the producer-state replay
after a crash adds back the aborts whose entries did not reach the disk (:meth:`add` is
idempotent).
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left
from typing import NamedTuple

from brokerd.durable import atomic_write

SUFFIX = ".txnindex"
_ENTRY = struct.Struct(">hqqqq")
VERSION = 0


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class AbortedTxnIndex:
    """The aborted transactions of one partition directory, sorted by last offset."""

    __slots__ = ("_by_last", "_entries", "_seen", "directory")

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._entries: list[AbortedTxn] = []
        self._by_last: list[int] = []
        self._seen: set[tuple[int, int]] = set()  # (producer id, last offset)

    @classmethod
    def load(cls, directory: str, log_end: int) -> AbortedTxnIndex:
        index = cls(directory)
        found: list[AbortedTxn] = []
        try:
            names = [n for n in os.listdir(directory) if n.endswith(SUFFIX)]
        except FileNotFoundError:
            names = []
        for name in names:
            with open(os.path.join(directory, name), "rb") as fh:
                data = fh.read()
            for pos in range(0, len(data) - _ENTRY.size + 1, _ENTRY.size):
                version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
                if version != VERSION:
                    break  # a torn or foreign tail
                if last < log_end:
                    found.append(AbortedTxn(pid, first, last, lso))
        for entry in sorted(found, key=lambda e: e.last_offset):
            index._insert(entry)
        return index

    def _insert(self, entry: AbortedTxn) -> bool:
        key = (entry.producer_id, entry.last_offset)
        if key in self._seen:
            return False
        self._seen.add(key)
        i = bisect_left(self._by_last, entry.last_offset)
        self._entries.insert(i, entry)
        self._by_last.insert(i, entry.last_offset)
        return True

    def add(self, entry: AbortedTxn, segment_base: int) -> None:
        """Record an aborted transaction (its marker is in the segment ``segment_base``)."""
        if not self._insert(entry):
            return
        path = os.path.join(self.directory, f"{segment_base:020d}{SUFFIX}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, _ENTRY.pack(VERSION, *entry))
            # The marker's own fsync (acks=all, or the coordinator's wait) does not cover this
            # file; the replay after a crash rebuilds what is lost, so no fsync here.
        finally:
            os.close(fd)

    def truncate(self, log_end: int) -> None:
        """The log lost its tail from ``log_end``: forget the aborts whose markers went with it."""
        keep = [e for e in self._entries if e.last_offset < log_end]
        if len(keep) != len(self._entries):
            self._entries = keep
            self._by_last = [e.last_offset for e in keep]
            self._seen = {(e.producer_id, e.last_offset) for e in keep}

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions with records in [start, end)."""
        out = []
        for i in range(bisect_left(self._by_last, start), len(self._entries)):
            entry = self._entries[i]
            if entry.first_offset < end:
                out.append((entry.producer_id, entry.first_offset))
        return out

    def forget(self, spent: set[tuple[int, int]]) -> None:
        """Drop the aborted transactions ``(producer id, marker offset)`` that the log cleaner
        left no record of: each file holding one is rewritten without it (atomically, durable
        when this returns), so a consumer is never told of an abort whose marker may go next."""
        spent = spent & self._seen
        if not spent:
            return
        self._entries = [e for e in self._entries if (e.producer_id, e.last_offset) not in spent]
        self._by_last = [e.last_offset for e in self._entries]
        self._seen -= spent
        for name in sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX)):
            path = os.path.join(self.directory, name)
            with open(path, "rb") as fh:
                data = fh.read()
            kept = bytearray()
            for pos in range(0, len(data) - _ENTRY.size + 1, _ENTRY.size):
                version, pid, _first, last, _lso = _ENTRY.unpack_from(data, pos)
                if version != VERSION:
                    break
                if (pid, last) not in spent:
                    kept += data[pos : pos + _ENTRY.size]
            if len(kept) != len(data):
                atomic_write(path, bytes(kept))

    def between(self, start: int, end: int) -> list[AbortedTxn]:
        """The aborted transactions with records in [start, end) (the log cleaner's range)."""
        return [e for e in self._entries[bisect_left(self._by_last, start) :] if e.first_offset < end]

    def __len__(self) -> int:
        return len(self._entries)
