"""Replica placement for new topics: Kafka's assignment, with racks alternated.

Brokers are ordered so that consecutive ones sit on different racks (Kafka's
rack-alternated list); the first replica of partition ``p`` goes to broker ``start + p``
and the followers to the brokers after it, shifted every full round so that the
followers of one broker's leaderships spread over the others. With racks, a follower
skips brokers on a rack the partition already uses while unused racks remain.
"""

from __future__ import annotations

import random
from collections import defaultdict


class PlacementError(ValueError):
    pass


def rack_alternated(brokers: dict[int, str | None]) -> list[int]:
    by_rack: dict[str | None, list[int]] = defaultdict(list)
    for node_id in sorted(brokers):
        by_rack[brokers[node_id]].append(node_id)
    racks = sorted(by_rack, key=lambda r: (r is None, r or ""))
    ordered: list[int] = []
    for round_ in range(max(len(v) for v in by_rack.values())):
        ordered.extend(by_rack[r][round_] for r in racks if round_ < len(by_rack[r]))
    return ordered


def assign_replicas(
    brokers: dict[int, str | None],
    partitions: int,
    replication_factor: int,
    *,
    rng: random.Random | None = None,
) -> list[list[int]]:
    """``brokers`` maps live node ids to their rack (or None)."""
    if partitions < 1:
        raise PlacementError("the number of partitions must be at least 1")
    if replication_factor < 1:
        raise PlacementError("the replication factor must be at least 1")
    if replication_factor > len(brokers):
        raise PlacementError(
            f"replication factor {replication_factor} is larger than the {len(brokers)} available "
            "broker(s); lower it or start more brokers"
        )
    rng = rng or random.Random()
    order = rack_alternated(brokers)
    n = len(order)
    racks_total = len({brokers[b] for b in order})
    start = rng.randrange(n)
    shift = rng.randrange(n)
    assignment: list[list[int]] = []
    for p in range(partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (p + start) % n
        replicas = [order[first]]
        used_racks = {brokers[order[first]]}
        step = 1 + shift % max(n - 1, 1)
        k = 0
        while len(replicas) < replication_factor:
            candidate = order[(first + step + k) % n]
            k += 1
            if candidate in replicas:
                continue
            rack = brokers[candidate]
            if rack in used_racks and len(used_racks) < racks_total and k <= n:
                continue
            replicas.append(candidate)
            used_racks.add(rack)
        assignment.append(replicas)
    return assignment


class AssignmentError(PlacementError):
    """A manual replica assignment Kafka refuses with INVALID_REPLICA_ASSIGNMENT."""


def check_assignment(
    assignment: list[list[int]],
    registered: set[int],
    replication_factor: int | None = None,
    *,
    first_index: int = 0,
) -> None:
    """A manual assignment, as Kafka's controller checks it: every partition names at least one
    broker, no broker twice, only registered brokers, and the same number of replicas as the
    topic's other partitions (``replication_factor``, or the first listed partition's)."""
    expected = replication_factor
    for index, replicas in enumerate(assignment, start=first_index):
        if not replicas:
            raise AssignmentError(f"the assignment of partition {index} is an empty replica list")
        twice = sorted({b for b in replicas if replicas.count(b) > 1})
        if twice:
            raise AssignmentError(f"the assignment of partition {index} names broker {twice[0]} "
                                  "more than once")
        unknown = sorted(set(replicas) - registered)
        if unknown:
            raise AssignmentError(f"the assignment of partition {index} names broker {unknown[0]}, "
                                  f"but no such broker is registered (brokers: {sorted(registered)})")
        if expected is None:
            expected = len(replicas)
        elif len(replicas) != expected:
            raise AssignmentError(f"partition {index} has {len(replicas)} replica(s), but the topic's "
                                  f"other partitions have {expected}; give every partition {expected}")
