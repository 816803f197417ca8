"""Where a cluster's metadata lives in etcd, all under the cluster's own prefix.

    {prefix}cluster                 the cluster id, written once by the first broker
    {prefix}brokers/{node_id}       a live broker's registration, bound to its lease;
                                    its create revision is the broker epoch
    {prefix}controller              the active controller, bound to its broker's lease;
                                    its create revision is the controller epoch
    {prefix}topics/{name}           a topic: id, partition count, configs
    {prefix}partitions/{name}/{n}   a partition's replicas, leader, leader epoch, ISR and
                                    partition epoch
    {prefix}producer_ids            the start of the next free block of producer ids
    {prefix}suspects/{id}/{by}      broker ``by`` could not connect to broker ``id``'s listener
                                    (the epoch it saw); bound to ``by``'s lease
    {prefix}acls/{digest}           one ACL binding (its digest names it)
    {prefix}quotas/{digest}         one client-quota entity and its values
    {prefix}client-metrics/{name}   one client-metrics subscription's configs (KIP-714)
    {prefix}internal/{name}         a broker's request that the controller create an internal
                                    topic (partitions, replication factor, configs); removed
                                    with the topic's creation

Topic names cannot hold ``/`` (Kafka's legal characters are letters, digits, ``.``, ``_``
and ``-``), so a name is a single path element.
"""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str) -> None:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"a cluster prefix starts and ends with '/': {prefix!r}")
        self.prefix = prefix.encode()
        self.cluster = self.prefix + b"cluster"
        self.brokers = self.prefix + b"brokers/"
        self.controller = self.prefix + b"controller"
        self.topics = self.prefix + b"topics/"
        self.partitions = self.prefix + b"partitions/"
        self.suspects = self.prefix + b"suspects/"
        self.producer_ids = self.prefix + b"producer_ids"
        self.acls = self.prefix + b"acls/"
        self.quotas = self.prefix + b"quotas/"
        self.client_metrics = self.prefix + b"client-metrics/"
        self.internal = self.prefix + b"internal/"

    def broker(self, node_id: int) -> bytes:
        return self.brokers + str(node_id).encode()

    def topic(self, name: str) -> bytes:
        return self.topics + name.encode()

    def internal_request(self, name: str) -> bytes:
        return self.internal + name.encode()

    def client_metrics_resource(self, name: str) -> bytes:
        return self.client_metrics + name.encode()

    def topic_partitions(self, name: str) -> bytes:
        return self.partitions + name.encode() + b"/"

    def partition(self, name: str, index: int) -> bytes:
        return self.topic_partitions(name) + str(index).encode()

    def suspicions_of(self, suspect: int) -> bytes:
        return self.suspects + str(suspect).encode() + b"/"

    def suspicion(self, suspect: int, reporter: int) -> bytes:
        return self.suspicions_of(suspect) + str(reporter).encode()

    # --- parsing keys read back from etcd ----------------------------------------------------
    def broker_id(self, key: bytes) -> int:
        return int(key[len(self.brokers) :])

    def topic_name(self, key: bytes) -> str:
        return key[len(self.topics) :].decode()

    def internal_name(self, key: bytes) -> str:
        return key[len(self.internal) :].decode()

    def partition_of(self, key: bytes) -> tuple[str, int]:
        name, _, index = key[len(self.partitions) :].decode().rpartition("/")
        return name, int(index)

    def suspicion_of(self, key: bytes) -> tuple[int, int]:
        """(suspect, reporter) of a suspicion key."""
        suspect, _, reporter = key[len(self.suspects) :].decode().partition("/")
        return int(suspect), int(reporter)
