"""The follower side of Kafka's replication throttle (follower.replication.throttled.rate).

Bytes fetched for throttled replicas (a topic's follower.replication.throttled.replicas names
them: partition:broker pairs, or '*') are counted against the broker's rate; while the count is
ahead of the rate, the fetchers leave throttled partitions out of their requests and copy the
others, as Kafka's ReplicaFetcherThread does. A reassignment throttles only the replicas it
adds, so followers already in sync keep pace with producers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from brokerd.kafka_configs import LONG_MAX

#: At most this much unused rate is saved up, so an idle while does not allow a burst after it.
BURST_SECONDS = 1.0


class ReplicationQuota:
    def __init__(self, rate: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = 0.0
        self._at = clock()

    @property
    def rate(self) -> int:
        return self._rate()

    @property
    def limited(self) -> bool:
        return self.rate < LONG_MAX

    def _refill(self) -> float:
        now = self._clock()
        rate = self.rate
        self._tokens = min(rate * BURST_SECONDS, self._tokens + (now - self._at) * rate)
        self._at = now
        return rate

    def exceeded(self) -> bool:
        if not self.limited:
            return False
        self._refill()
        return self._tokens < 0

    def record(self, nbytes: int) -> None:
        if self.limited and nbytes:
            self._refill()
            self._tokens -= nbytes

    def seconds_until_allowed(self) -> float:
        """How long until throttled partitions may be fetched again (0 when they may now)."""
        if not self.exceeded():
            return 0.0
        return -self._tokens / self.rate
