"""What a partition leader knows about its followers: how far each has fetched, when it was
last caught up, and the high watermark that follows from the ISR.

The high watermark is the smallest log end over Kafka's *maximal ISR*: the ISR as etcd last
committed it (the view's state) plus any follower the leader has asked etcd to add (it may
be in the ISR already, so nothing it lacks may be acknowledged), while one the leader has
asked to remove keeps counting until the removal is committed. It never
moves backwards while this broker leads, and acks=all waiters are resolved as it passes
their offsets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from brokerd.coordination.records import PartitionState


@dataclass
class Follower:
    log_end: int = -1  # unknown until it fetches in this leader epoch
    caught_up_at: float = field(default_factory=time.monotonic)
    broker_epoch: int = -1  # the registration its fetches came from (KIP-903), -1 unknown

    def restart(self, broker_epoch: int) -> None:
        """Fetches now come from another incarnation of the broker: what the old one held
        says nothing about the new one."""
        self.broker_epoch = broker_epoch
        self.log_end = -1
        self.caught_up_at = time.monotonic()


@dataclass
class Leadership:
    leader_epoch: int
    high_watermark: int
    followers: dict[int, Follower] = field(default_factory=dict)
    waiters: list[tuple[int, asyncio.Future]] = field(default_factory=list)
    isr_change: asyncio.Task | None = None
    joining: set[int] = field(default_factory=set)  # additions asked of etcd, not yet seen

    def follower(self, node_id: int) -> Follower:
        found = self.followers.get(node_id)
        if found is None:
            found = self.followers[node_id] = Follower()
        return found

    def advance(self, state: PartitionState, node_id: int, log_end: int) -> bool:
        """Recompute the high watermark from the committed ISR; True when it moved."""
        ends = [log_end]
        for member in {*state.isr_ids, *self.joining}:
            if member != node_id:
                ends.append(self.follower(member).log_end)
        candidate = min(ends)
        if candidate <= self.high_watermark:
            return False
        self.high_watermark = candidate
        still = []
        for offset, fut in self.waiters:
            if fut.done():
                continue
            if offset <= candidate:
                fut.set_result(True)
            else:
                still.append((offset, fut))
        self.waiters = still
        return True

    def wait_for(self, offset: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if offset <= self.high_watermark:
            fut.set_result(True)
        else:
            self.waiters.append((offset, fut))
        return fut

    def abandon(self) -> None:
        """Leadership lost: acks=all waiters can no longer be satisfied here."""
        for _offset, fut in self.waiters:
            if not fut.done():
                fut.set_result(False)
        self.waiters = []
        if self.isr_change is not None:
            self.isr_change.cancel()
