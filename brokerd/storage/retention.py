"""Size and time retention: which of a partition's oldest segments may go.

Kafka's rules: a segment is past ``retention.ms`` when its newest record (its largest
timestamp, or the file's mtime for a segment without timestamps) is older than that; the log
is over ``retention.bytes`` while dropping the oldest segment still leaves at least that many
bytes. Deleting always takes whole segments from the head, never the active one while it is
empty (every segment expired: the log rolls first, so that the last data can go too).
"""

from __future__ import annotations

from collections.abc import Sequence

from brokerd.storage.segment import Segment


def expired_segments(
    segments: Sequence[Segment], retention_ms: int, retention_bytes: int, now_ms: int
) -> int:
    """How many segments, from the oldest, retention would delete (possibly all of them)."""
    doomed = 0
    if retention_ms >= 0:
        for seg in segments:
            seg.ensure_loaded()
            newest = seg.max_ts if seg.max_ts >= 0 else int(seg.last_modified * 1000)
            # (a sealed segment the cleaner emptied goes too; an empty active one stays)
            if (seg.size or seg is not segments[-1]) and now_ms - newest > retention_ms:
                doomed += 1
            else:
                break
    if retention_bytes >= 0:
        total = sum(seg.size for seg in segments)
        n = 0
        for seg in segments:
            if total - seg.size < retention_bytes or (not seg.size and seg is segments[-1]):
                break
            total -= seg.size
            n += 1
        doomed = max(doomed, n)
    return doomed


def segments_below(segments: Sequence[Segment], start_offset: int) -> int:
    """How many leading segments hold only offsets below ``start_offset`` (DeleteRecords)."""
    n = 0
    for i in range(len(segments) - 1):
        if segments[i + 1].base <= start_offset:
            n = i + 1
    return n
