"""Reads: a cluster's open transactions, from its brokers (the transaction coordinators)."""

from __future__ import annotations

import struct
import time
from typing import Any

from clusters.models import Cluster
from sharedkit import kafka_admin

from . import wire

UNREADABLE = (OSError, ValueError, IndexError, struct.error)


def transaction_list(*, cluster: Cluster) -> list[dict[str, Any]]:
    """Every open transaction (Ongoing, PrepareCommit, PrepareAbort), oldest first: producer id and
    epoch, state, start, age, timeout and partitions."""
    now_ms = int(time.time() * 1000)
    found: dict[str, dict[str, Any]] = {}
    reached = False
    for host, port in wire.addresses(cluster):
        try:
            with wire.connection(cluster, host, port) as conn:
                described = wire.open_transactions(conn)
        except UNREADABLE:
            continue
        reached = True
        for t in described:
            started_ms = int(t.transaction_start_time.timestamp() * 1000)
            found[t.transactional_id] = {
                "transactional_id": t.transactional_id,
                "producer_id": int(t.producer_id),
                "producer_epoch": int(t.producer_epoch),
                "state": t.transaction_state,
                "started_at": t.transaction_start_time,
                "age_ms": max(now_ms - started_ms, 0),
                "timeout_ms": int(t.transaction_timeout.total_seconds() * 1000),
                "partitions": sorted(
                    (
                        {"topic": d.topic, "partitions": sorted(int(p) for p in d.partitions)}
                        for d in t.topics
                    ),
                    key=lambda row: row["topic"],
                ),
            }
    if not reached:
        raise kafka_admin.unavailable(cluster)
    return sorted(found.values(), key=lambda row: (-row["age_ms"], row["transactional_id"]))
