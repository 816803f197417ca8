"""The metering subsystem: the durable usage journal and the broker's Prometheus metrics.

Built by ``Broker.start()`` after storage recovery (:meth:`Metering.recover` voids journal
entries the log does not hold). The produce path journals a batch *before* appending it
(:meth:`Metering.before_append`, see brokerd/metrics.py for why), Fetch counts what it sends
(:meth:`Metering.after_fetch`), and the connection loop reports every answered request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from brokerd.api import api_name
from brokerd.metrics import ANONYMOUS, BrokerMetrics, UsageJournal, batch_stats
from brokerd.storage import LogManager

log = logging.getLogger("brokerd.metering")


class Metering:
    def __init__(self, data_dir: Path, logs: LogManager) -> None:
        self.logs = logs
        self.usage = UsageJournal(data_dir / "usage")
        self.metrics = BrokerMetrics(self.usage, storage=self._storage_rows,
                                     live_topics=lambda: list(logs.topics))
        self.traffic = self.metrics.partition_traffic

    # --- start / stop ---------------------------------------------------------------------
    def recover(self) -> None:
        """After storage recovery, before serving: void what the logs do not hold."""
        by_id = {t.id.bytes: t for t in self.logs.topics.values()}

        def end_offset(topic_id: bytes, partition: int) -> int | None:
            topic = by_id.get(topic_id)
            if topic is None or partition >= len(topic.partitions):
                return None
            return topic.partitions[partition].next_offset

        voided = self.usage.reconcile(end_offset)
        if voided:
            log.info("usage journal: voided %d produce entries the log does not hold", voided)

    def close(self) -> None:
        """Clean shutdown: fold the usage journal into a snapshot."""
        self.usage.close()

    def fsync_fds(self) -> list[int]:
        """The usage journal's fd, for the group fsync (fsynced before the logs)."""
        fd = self.usage._fd
        return [] if fd is None else [fd]

    def metrics_route(self) -> tuple[int, str, bytes]:
        return 200, self.metrics.content_type, self.metrics.render()

    def _storage_rows(self) -> list[tuple[str, int, int]]:
        return [
            (topic.name, plog.partition, plog.size_bytes())
            for topic in list(self.logs.topics.values())
            for plog in topic.partitions
        ]

    # --- usage ----------------------------------------------------------------------------
    def before_append(self, principal: str | None, topic_name: str, topic_id: bytes, partition: int,
                      base: int, count: int, nbytes: int) -> None:
        self.usage.record_in(principal or ANONYMOUS, [(topic_name, topic_id, partition, base, count, nbytes)])
        self.traffic.add(topic_name, partition, 0, nbytes, count)

    def append_failed(self, principal: str | None, topic_name: str, topic_id: bytes, partition: int,
                      base: int, count: int, nbytes: int) -> None:
        self.usage.void_in(principal or ANONYMOUS, topic_name, topic_id, partition, base, count, nbytes)
        self.traffic.add(topic_name, partition, 0, -nbytes, -count)

    def after_fetch(self, principal: str | None,
                    topics: Iterable[tuple[str, Iterable[tuple[int, bytes]]]]) -> int:
        """Count bytes out of a Fetch response about to be sent: (topic, (partition, records)...).

        Returns the total record bytes.
        """
        entries = []
        total = 0
        for name, partitions in topics:
            records_n = 0
            nbytes = 0
            for partition, data in partitions:
                if data:
                    # a segment file range knows its record count (read from its batch headers)
                    n, size = (data.records, data.size) if hasattr(data, "fd") else batch_stats(data)
                    records_n += n
                    nbytes += size
                    self.traffic.add(name, partition, 2, size, n)
            if nbytes:
                entries.append((name, records_n, nbytes))
                total += nbytes
        if entries:
            self.usage.record_out(principal or ANONYMOUS, entries)
        return total

    def authenticated(self, principal: str) -> None:
        self.usage.touch(principal)

    def request_done(self, api_key: int, started: float, principal: str | None,
                     errors: Mapping[str, int] | None) -> None:
        """A request was answered: latency and error-code metrics, and the principal's last-seen."""
        self.metrics.observe_request(api_name(api_key), time.perf_counter() - started, errors)
        self.usage.touch(principal or ANONYMOUS)

    def housekeeping(self) -> None:
        self.usage.maybe_rotate()


