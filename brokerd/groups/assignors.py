"""Server-side partition assignors of the consumer group protocol: ``uniform`` and ``range``.

An assignor maps each member's subscription to a target assignment. Partitions are keyed by
topic id, as the consumer protocol names them. Both assignors are pure functions of their input
(members are visited in a sorted order), so the same group state always gives the same target.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

#: topic id -> set of partition indexes
Assignment = dict[uuid.UUID, set[int]]


@dataclass(slots=True)
class MemberSpec:
    """What an assignor knows of one member."""

    subscribed: frozenset[uuid.UUID]
    current: Assignment = field(default_factory=dict)
    instance_id: str | None = None


class UnknownAssignor(LookupError):
    pass


def _order(members: Mapping[str, MemberSpec]) -> list[str]:
    # Static members sort by their instance id so a restarted instance lands where it was.
    return sorted(members, key=lambda m: (members[m].instance_id is None, members[m].instance_id or m))


def range_assign(
    members: Mapping[str, MemberSpec], partitions: Mapping[uuid.UUID, int]
) -> dict[str, Assignment]:
    """Kafka's range: per topic, the subscribers in order get contiguous ranges, the first ones one more."""
    out: dict[str, Assignment] = {m: {} for m in members}
    order = _order(members)
    for topic_id in sorted(partitions, key=str):
        count = partitions[topic_id]
        subscribers = [m for m in order if topic_id in members[m].subscribed]
        if not subscribers or count <= 0:
            continue
        quota, extra = divmod(count, len(subscribers))
        start = 0
        for i, member in enumerate(subscribers):
            n = quota + (1 if i < extra else 0)
            if n:
                out[member][topic_id] = set(range(start, start + n))
            start += n
    return out


def uniform_assign(
    members: Mapping[str, MemberSpec], partitions: Mapping[uuid.UUID, int]
) -> dict[str, Assignment]:
    """Kafka's uniform: balanced counts, and sticky: a member keeps what it has unless balance needs it.

    Each member first keeps its current partitions that it still subscribes to (a partition
    claimed twice goes to the first in order); the rest go one by one to the least loaded
    subscriber; then partitions move from the most to the least loaded member able to take
    them until no two eligible members differ by more than one.
    """
    order = _order(members)
    owner: dict[tuple[uuid.UUID, int], str] = {}
    load = dict.fromkeys(order, 0)
    for m in order:
        spec = members[m]
        for topic_id, parts in spec.current.items():
            if topic_id not in spec.subscribed or topic_id not in partitions:
                continue
            for p in sorted(parts):
                if 0 <= p < partitions[topic_id] and (topic_id, p) not in owner:
                    owner[(topic_id, p)] = m
                    load[m] += 1
    subscribers = {t: [m for m in order if t in members[m].subscribed] for t in partitions}
    # Partitions nobody keeps go to the least loaded subscriber.
    for topic_id in sorted(partitions, key=str):
        for p in range(partitions[topic_id]):
            tp = (topic_id, p)
            if tp in owner or not subscribers[topic_id]:
                continue
            target = min(subscribers[topic_id], key=lambda m: (load[m], order.index(m)))
            owner[tp] = target
            load[target] += 1
    _balance(owner, load, subscribers, order)
    out: dict[str, Assignment] = {m: {} for m in members}
    for (topic_id, p), m in owner.items():
        out[m].setdefault(topic_id, set()).add(p)
    return out


def _balance(
    owner: dict[tuple[uuid.UUID, int], str],
    load: dict[str, int],
    subscribers: Mapping[uuid.UUID, list[str]],
    order: list[str],
) -> None:
    by_member: dict[str, list[tuple[uuid.UUID, int]]] = {m: [] for m in order}
    for tp, m in sorted(owner.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        by_member[m].append(tp)
    for _ in range(len(owner) + 1):
        moved = False
        for heavy in sorted(order, key=lambda m: -load[m]):
            # the last partitions of the most loaded member move to the least loaded one that subscribes
            for tp in reversed(by_member[heavy]):
                eligible = [m for m in subscribers[tp[0]] if load[m] < load[heavy] - 1]
                if not eligible:
                    continue
                light = min(eligible, key=lambda m: (load[m], order.index(m)))
                by_member[heavy].remove(tp)
                by_member[light].append(tp)
                owner[tp] = light
                load[heavy] -= 1
                load[light] += 1
                moved = True
                break
            if moved:
                break
        if not moved:
            return


ASSIGNORS = {"uniform": uniform_assign, "range": range_assign}


def assign(
    name: str, members: Mapping[str, MemberSpec], partitions: Mapping[uuid.UUID, int]
) -> dict[str, Assignment]:
    try:
        fn = ASSIGNORS[name]
    except KeyError:
        raise UnknownAssignor(name) from None
    return fn(members, partitions)
