"""The controller's partition decisions, as pure functions of the state in etcd.

``reconcile`` takes a partition's state and the live brokers (node id -> broker epoch) and
returns the state the partition should have, or None when it is right already:

- an ISR member counts only while its broker is registered with the epoch it joined with:
  a broker whose lease expired, or that restarted (a new epoch), leaves every ISR;
- the ISR never becomes empty: when its last member dies the member stays, the partition
  goes offline (leader -1), and that member leads again when it comes back, since its log
  is the only one known to hold every acknowledged write;
- a new leader comes from the live ISR only: the member in sync the longest (the ISR keeps
  join order, and a new partition's ISR is its replica order, so until replicas leave and
  rejoin this is Kafka's first live replica in replica order). A replica that has just caught
  up after a restart comes last: a broker that just restarted is the likeliest to fail again,
  and clients may still be backing off from reconnecting to it (librdkafka doubles its
  reconnect back-off per attempt for 10 s). The preferred-leader rebalance gives partitions
  back to their preferred replicas later. Only a topic with
  ``unclean.leader.election.enable=true`` may elect a live replica outside the ISR, which
  can lose acknowledged writes.
"""

from __future__ import annotations

from brokerd.coordination.records import NO_LEADER, IsrMember, PartitionState


def reconcile(
    state: PartitionState,
    live: dict[int, int],
    *,
    unclean: bool = False,
    shutting_down: frozenset[int] | set[int] = frozenset(),
) -> PartitionState | None:
    def alive(member: IsrMember) -> bool:
        return live.get(member.broker_id) == member.broker_epoch

    live_isr = tuple(m for m in state.isr if alive(m))
    staying = tuple(m for m in live_isr if m.broker_id not in shutting_down)
    if staying and len(staying) < len(live_isr):
        # A controlled shutdown: the brokers going away leave the ISR, and lead no more, while
        # another in-sync replica remains (else they keep it until they are gone).
        if state.leader in {m.broker_id for m in staying}:
            return state.next(isr=staying)
        candidates = [r for r in state.replicas if any(m.broker_id == r for m in staying)]
        return state.next(leader=candidates[0], isr=staying, new_leader_epoch=True)
    leader_member = next((m for m in state.isr if m.broker_id == state.leader), None)
    leader_ok = leader_member is not None and alive(leader_member)

    if live_isr:
        if leader_ok:
            if live_isr == state.isr:
                return None
            return state.next(isr=live_isr)
        # The replica in sync the longest leads (the ISR keeps the order replicas joined in).
        return state.next(leader=live_isr[0].broker_id, isr=live_isr, new_leader_epoch=True)

    # No ISR member is alive with the epoch it joined with.
    last = next((m for m in state.isr if m.broker_id == state.leader), None) or (
        state.isr[0] if state.isr else None
    )
    if last is not None and last.broker_id in live:
        # The last in-sync replica is back (a new process): it leads again.
        member = IsrMember(last.broker_id, live[last.broker_id])
        return state.next(leader=last.broker_id, isr=(member,), new_leader_epoch=True)
    if unclean:
        for replica in state.replicas:
            if replica in live:
                return state.next(
                    leader=replica, isr=(IsrMember(replica, live[replica]),), new_leader_epoch=True
                )
    kept = (last,) if last is not None else ()
    if state.leader == NO_LEADER and state.isr == kept:
        return None
    return state.next(leader=NO_LEADER, isr=kept)


def initial_state(
    topic_id: str, replicas: list[int], live: dict[int, int], *, followers_in_sync: bool = True
) -> PartitionState:
    """A new partition: the first replica leads. As in Kafka every assigned replica starts in
    the ISR (its log is as empty as the leader's), unless ``followers_in_sync`` is false:
    then the followers join once a leader has seen them catch up."""
    in_sync = replicas if followers_in_sync else replicas[:1]
    return PartitionState(
        topic_id=topic_id,
        replicas=tuple(replicas),
        leader=replicas[0],
        leader_epoch=0,
        isr=tuple(IsrMember(r, live[r]) for r in in_sync),
        partition_epoch=0,
    )
