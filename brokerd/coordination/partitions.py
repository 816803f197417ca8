"""A partition leader's own metadata writes: ISR shrink and expand (Kafka's AlterPartition).

The write compares the partition's mod revision (which moves with every partition epoch),
the leader's own registration (its broker epoch), and the registration of every replica
it adds, with the epoch the new ISR entry names. The leader acts on the new ISR only
after this returns the committed state: until then acknowledgements keep waiting for the
ISR as it was (Kafka's "maximal ISR"), so no write is acknowledged by a replica that etcd
might already have removed.
"""

from __future__ import annotations

from brokerd.coordination import etcd as e
from brokerd.coordination.records import IsrMember, PartitionState
from brokerd.coordination.session import BrokerSession


class NotLeaderError(Exception):
    pass


async def alter_isr(
    session: BrokerSession, name: str, index: int, seen: PartitionState, isr: tuple[IsrMember, ...]
) -> PartitionState | None:
    """Write ``isr`` for a partition this broker leads; return the committed state, or None
    when the partition changed meanwhile (re-read and decide again)."""
    if seen.leader != session.node_id:
        raise NotLeaderError(f"broker {session.node_id} does not lead {name}-{index}")
    if session.node_id not in {m.broker_id for m in isr}:
        raise ValueError("the leader cannot remove itself from the ISR")
    keys = session.keys
    key = keys.partition(name, index)
    wanted = seen.next(isr=isr)
    compare = [
        e.modified_at(key, seen.mod_revision),
        e.created_at(keys.broker(session.node_id), session.epoch),
    ]
    before = set(seen.isr)
    compare += [e.created_at(keys.broker(m.broker_id), m.broker_epoch) for m in isr if m not in before]
    result = await session.etcd.txn(compare, [e.put(key, wanted.to_bytes())])
    if not result.succeeded:
        return None
    return PartitionState.from_bytes(wanted.to_bytes(), mod_revision=result.revision)
