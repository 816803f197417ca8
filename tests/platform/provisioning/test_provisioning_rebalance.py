"""The balanced target of a grown cluster's replicas: few moves, no broker twice, even load."""

from __future__ import annotations

from collections import Counter

import pytest

from provisioning.rebalance import balanced_targets


def _layout(partitions: int, brokers: int, rf: int) -> dict[tuple[str, int], list[int]]:
    return {("t", p): [(p + k) % brokers + 1 for k in range(rf)] for p in range(partitions)}


@pytest.mark.parametrize(
    ("partitions", "old", "new", "rf"), [(6, 3, 4, 3), (50, 3, 5, 3), (7, 3, 6, 2), (1, 3, 4, 3)]
)
def test_moves_balance_the_replicas_over_the_new_brokers(partitions, old, new, rf):
    current = _layout(partitions, old, rf)
    targets = balanced_targets(current, range(1, new + 1))
    after = {p: targets.get(p, r) for p, r in current.items()}
    load = Counter(b for r in after.values() for b in r)
    total = partitions * rf
    assert max(load.get(b, 0) for b in range(1, new + 1)) - min(
        load.get(b, 0) for b in range(1, new + 1)
    ) <= 1 or (total < new)
    for partition, replicas in after.items():
        assert len(replicas) == len(set(replicas)) == rf, (partition, replicas)
    # each move replaces one replica: nothing moves that need not
    moved = sum(len(set(after[p]) - set(current[p])) for p in current)
    ideal = sum(
        max(0, load_now - -(-total // new))
        for load_now in Counter(b for r in current.values() for b in r).values()
    )
    assert moved <= ideal + new, (moved, ideal)


def test_every_broker_topics_gain_a_replica_on_each_new_broker():
    current = {("_schemas", 0): [2, 1, 3], ("t", 0): [1, 2, 3]}
    targets = balanced_targets(current, [1, 2, 3, 4], every_broker=frozenset({"_schemas"}))
    assert targets[("_schemas", 0)] == [2, 1, 3, 4]


def test_a_balanced_cluster_needs_no_move():
    assert balanced_targets(_layout(12, 4, 3), [1, 2, 3, 4]) == {}
