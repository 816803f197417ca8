"""Writes: aborting a hanging transaction on one partition, as Kafka's
`kafka-transactions.sh abort` does it.

The partition's leader is asked for its producers (DescribeProducers); only a producer with a
transaction open on that partition can be aborted, with the epoch the leader knows, so a
producer that moved on (a newer epoch, or its transaction already ended) is never touched.
The abort marker is then written by the leader (WriteTxnMarkers): read_committed consumers
pass the transaction's records, which stay hidden from them.
"""

from __future__ import annotations

from typing import Any

from accounts.audit import Actor, audit_record
from clusters.models import Cluster
from controlplane.errors import Conflict
from sharedkit import kafka_admin

from . import wire
from .selectors import UNREADABLE

NOT_LEADER = 6
UNKNOWN_TOPIC_OR_PARTITION = 3


class NoOpenTransaction(Conflict):
    code = "no_open_transaction"


def transaction_abort(
    *, cluster: Cluster, topic: str, partition: int, producer_id: int, actor: Actor
) -> dict[str, Any]:
    reached = False
    for host, port in wire.addresses(cluster):
        try:
            with wire.connection(cluster, host, port) as conn:
                error, producers = wire.partition_producers(conn, topic, partition)
                if error == NOT_LEADER:
                    reached = True
                    continue
                reached = True
                if error == UNKNOWN_TOPIC_OR_PARTITION:
                    raise NoOpenTransaction(
                        f"Partition {topic}-{partition} does not exist.",
                        code="unknown_partition",
                        details={"topic": topic, "partition": partition},
                    )
                state = next((p for p in producers if int(p.producer_id) == producer_id), None)
                if state is None or int(state.current_txn_start_offset) < 0:
                    raise NoOpenTransaction(
                        f"Producer {producer_id} has no open transaction on {topic}-{partition}.",
                        details={"topic": topic, "partition": partition, "producer_id": producer_id},
                    )
                epoch, first = int(state.producer_epoch), int(state.current_txn_start_offset)
                code = wire.write_abort_marker(
                    conn, topic, partition, producer_id, epoch, int(state.coordinator_epoch)
                )
        except UNREADABLE:
            continue
        if code != 0:
            raise Conflict(
                f"The partition leader refused the abort marker (error {code}).",
                code="kafka_error",
                details={"error_code": code},
            )
        audit_record(
            organization=cluster.organization, actor=actor, action="transaction.abort",
            target_type="transaction",
            target_id=f"{cluster.public_id}/{topic}-{partition}/{producer_id}"[:64],
            target_label=f"{topic}-{partition} producer {producer_id}"[:200],
            details={"cluster": cluster.public_id, "topic": topic, "partition": partition,
                     "producer_id": producer_id, "producer_epoch": epoch, "first_offset": first},
        )  # fmt: skip
        return {
            "topic": topic,
            "partition": partition,
            "producer_id": producer_id,
            "producer_epoch": epoch,
            "first_offset": first,
        }
    if reached:
        raise NoOpenTransaction(
            f"No broker leads {topic}-{partition}.",
            code="unknown_partition",
            details={"topic": topic, "partition": partition},
        )
    raise kafka_admin.unavailable(cluster)
