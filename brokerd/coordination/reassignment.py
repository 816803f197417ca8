"""Partition reassignment (Kafka's AlterPartitionReassignments), as pure decisions.

A reassignment first adds the target replicas that are new (``adding``), which fetch from the
leader and join the ISR once caught up; while it runs, ``replicas`` is the target followed by the
replicas being removed (``removing``). When every adding replica is in the ISR it completes: the
replicas become the target, the removed ones leave the ISR, and if the leader is removed the
first in-sync target replica leads. Cancelling goes back to the replicas from before.
"""

from __future__ import annotations

from brokerd.coordination.records import NO_LEADER, PartitionState


def start(state: PartitionState, target: list[int]) -> PartitionState | None:
    """The state that begins moving to ``target``; None when the replicas are the target already.
    A reassignment in progress is replaced (from its original replicas), as in Kafka."""
    original = original_replicas(state)
    if list(original) == target and not state.adding:
        return None
    adding = tuple(r for r in target if r not in original)
    removing = tuple(r for r in original if r not in target)
    replicas = tuple(target) + removing
    isr = tuple(m for m in state.isr if m.broker_id in replicas)
    return state.next(replicas=replicas, adding=adding, removing=removing, isr=isr or state.isr)


def original_replicas(state: PartitionState) -> tuple[int, ...]:
    return tuple(r for r in state.replicas if r not in state.adding)


def cancel(state: PartitionState) -> PartitionState:
    original = original_replicas(state)
    isr = tuple(m for m in state.isr if m.broker_id in original) or state.isr
    leader = state.leader
    if leader not in original:
        leader = next((m.broker_id for m in isr if m.broker_id in original), NO_LEADER)
    return state.next(replicas=original, adding=(), removing=(), isr=isr, leader=leader)


def complete(state: PartitionState) -> PartitionState | None:
    """The finished state once every adding replica is in the ISR, else None."""
    if not state.adding and not state.removing:
        return None
    in_sync = set(state.isr_ids)
    if not all(r in in_sync for r in state.adding):
        return None
    target = tuple(r for r in state.replicas if r not in state.removing)
    isr = tuple(m for m in state.isr if m.broker_id in target)
    if not isr:
        return None
    leader = state.leader if state.leader in target else next(r for r in target if r in in_sync)
    return state.next(replicas=target, adding=(), removing=(), isr=isr, leader=leader)
