"""Leader elections an operator asks for (Kafka's ElectLeaders), as pure decisions.

``elect`` takes a partition's state and the live brokers (node id -> broker epoch) and answers
the state to write, or the reason, with Kafka's error names:

- preferred: the first assigned replica leads. ELECTION_NOT_NEEDED when it leads already,
  PREFERRED_LEADER_NOT_AVAILABLE when it is not live and in the ISR (a replica outside the ISR
  may lack acknowledged writes, so it is never made leader this way);
- unclean: only for a partition without a leader. ELECTION_NOT_NEEDED when it has one; the
  first live ISR member in replica order, else the first live replica (which can lose
  acknowledged writes: that is what unclean means); ELIGIBLE_LEADERS_NOT_AVAILABLE when no
  replica is live.
"""

from __future__ import annotations

from enum import Enum

from brokerd.coordination.records import NO_LEADER, IsrMember, PartitionState

PREFERRED, UNCLEAN = 0, 1  # Kafka's election_type values


class ElectionRefusal(Enum):
    ELECTION_NOT_NEEDED = "the partition already has the leader asked for"
    PREFERRED_LEADER_NOT_AVAILABLE = "the preferred replica is not live and in the ISR"
    ELIGIBLE_LEADERS_NOT_AVAILABLE = "no replica of the partition is live"


def elect(
    state: PartitionState, live: dict[int, int], election_type: int
) -> PartitionState | ElectionRefusal:
    def in_sync_and_live(broker_id: int) -> bool:
        return any(m.broker_id == broker_id and live.get(broker_id) == m.broker_epoch for m in state.isr)

    if election_type == PREFERRED:
        preferred = state.replicas[0]
        if state.leader == preferred:
            return ElectionRefusal.ELECTION_NOT_NEEDED
        if not in_sync_and_live(preferred):
            return ElectionRefusal.PREFERRED_LEADER_NOT_AVAILABLE
        return state.next(leader=preferred)
    if state.leader != NO_LEADER:
        return ElectionRefusal.ELECTION_NOT_NEEDED
    for replica in state.replicas:
        if in_sync_and_live(replica):
            return state.next(leader=replica)
    for replica in state.replicas:
        if replica in live:
            return state.next(leader=replica, isr=(IsrMember(replica, live[replica]),))
    return ElectionRefusal.ELIGIBLE_LEADERS_NOT_AVAILABLE


def imbalanced_leaderships(
    partitions: dict[tuple[str, int], PartitionState], live: dict[int, int], percentage: int
) -> list[tuple[str, int]]:
    """Kafka's automatic preferred-leader rebalance: for each broker, the share of the partitions
    it prefers to lead that another broker leads; where that share exceeds ``percentage``, the
    partitions whose preferred replica could take over now."""
    preferred_of: dict[int, list[tuple[tuple[str, int], PartitionState]]] = {}
    for key, state in partitions.items():
        if state.replicas:
            preferred_of.setdefault(state.replicas[0], []).append((key, state))
    chosen = []
    for broker_id, owned in preferred_of.items():
        if broker_id not in live:
            continue
        elsewhere = [(key, s) for key, s in owned if s.leader != broker_id]
        if len(elsewhere) * 100 > percentage * len(owned):
            chosen += [key for key, s in elsewhere if isinstance(elect(s, live, PREFERRED), PartitionState)]
    return sorted(chosen)
