"""Where a grown cluster's existing replicas go: a balanced target with few moves (pure).

Each move copies a partition's log to a broker over the network, so the target changes as few
replicas as it can: the busiest broker hands one replica to the idlest one that does not hold the
partition yet, until no two brokers differ by more than one replica. A replica keeps its place in
the list, so a new broker taking over a first replica becomes that partition's preferred leader
and leaderships spread too. Topics replicated to every broker (the schema registry's `_schemas`,
which each broker reads to validate records) gain a replica on each new broker instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Partition = tuple[str, int]


def balanced_targets(
    replicas: Mapping[Partition, list[int]],
    brokers: Iterable[int],
    *,
    every_broker: frozenset[str] = frozenset(),
) -> dict[Partition, list[int]]:
    """The new replica list of each partition that changes (an empty dict when balanced)."""
    nodes = sorted(set(brokers))
    targets: dict[Partition, list[int]] = {}
    current = {p: list(r) for p, r in replicas.items()}
    for partition, members in current.items():
        if partition[0] in every_broker:
            grown = members + [b for b in nodes if b not in members]
            if grown != members:
                targets[partition] = grown
    balanced = {p: r for p, r in current.items() if p[0] not in every_broker}
    load = {b: 0 for b in nodes}
    leads = {b: 0 for b in nodes}
    for members in balanced.values():
        for b in members:
            load[b] = load.get(b, 0) + 1
        if members:
            leads[members[0]] = leads.get(members[0], 0) + 1
    while nodes:
        busiest = max(nodes, key=lambda b: (load[b], leads[b], -b))
        idlest = min(nodes, key=lambda b: (load[b], leads[b], b))
        if load[busiest] - load[idlest] <= 1:
            break
        choice = _pick(balanced, busiest, idlest, lead=leads[busiest] > leads[idlest] + 1)
        if choice is None:
            break
        members = balanced[choice]
        position = members.index(busiest)
        members[position] = idlest
        targets[choice] = members
        load[busiest] -= 1
        load[idlest] += 1
        if position == 0:
            leads[busiest] -= 1
            leads[idlest] += 1
    return targets


def _pick(
    partitions: Mapping[Partition, list[int]], source: int, dest: int, *, lead: bool
) -> Partition | None:
    """A partition `source` holds and `dest` does not: one `source` leads when leaderships are
    unbalanced too, else one it follows (either kind if the preferred one is missing)."""
    fallback = None
    for partition in sorted(partitions):
        members = partitions[partition]
        if source not in members or dest in members:
            continue
        if (members[0] == source) == lead:
            return partition
        fallback = fallback or partition
    return fallback
