"""A consume-transform-produce pipeline, exactly once: run as a process the test SIGKILLs.

``python eos_pipeline.py BOOTSTRAP SOURCE SINK GROUP TRANSACTIONAL_ID PARTITIONS [PER_TRANSACTION]``

Reads SOURCE with read_committed from the group's committed offsets (partitions assigned, no
group management, so a killed process leaves no member behind), writes ``out-<value>`` to the
same partition of SINK, and commits the consumed offsets inside each transaction. Starting
again fences the previous process (InitProducerId) and aborts whatever it left open; an error in
a transaction ends the process the same way (the test starts another).
"""

from __future__ import annotations

import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def main(
    bootstrap: str, source: str, sink: str, group: str, tid: str, partitions: int, per_txn: int = 500
) -> int:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
    })  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 5,
                         "transaction.timeout.ms": 10000})
    producer.init_transactions(30)
    tps = [TopicPartition(source, p) for p in range(partitions)]

    committed = consumer.committed(tps, timeout=30)
    consumer.assign([TopicPartition(source, tp.partition, max(tp.offset, 0)) for tp in committed])
    while True:
        messages = consumer.consume(per_txn, 0.5)
        messages = [m for m in messages if not m.error()]
        if not messages:
            continue
        try:
            producer.begin_transaction()
            for m in messages:
                producer.produce(sink, key=m.key(), value=b"out-" + m.value(), partition=m.partition())
            positions = {}
            for m in messages:
                positions[m.partition()] = m.offset() + 1
            offsets = [TopicPartition(source, p, o) for p, o in positions.items()]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        except KafkaException as exc:
            # A new process fences this one and aborts what it left open: the simplest recovery
            # that is exactly once whatever the error was.
            print(f"transaction failed: {exc.args[0]}", file=sys.stderr, flush=True)
            return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6], *(int(n) for n in sys.argv[6:8])))
