"""The values stored in etcd, as JSON so that an operator can read them with etcdctl."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

NO_LEADER = -1


@dataclass(frozen=True)
class Endpoint:
    name: str  # listener name
    host: str
    port: int
    security_protocol: str


@dataclass(frozen=True)
class BrokerRegistration:
    node_id: int
    rack: str | None
    endpoints: tuple[Endpoint, ...]
    incarnation: str  # a fresh id per process start
    epoch: int = 0  # the registration key's create revision; not stored in the value
    lease: int = 0  # the lease it is bound to; not stored in the value
    #: a controlled shutdown began: the controller moves the broker's leaderships away and takes
    #: it out of ISRs where other in-sync replicas remain (Kafka's controlled shutdown)
    shutting_down: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "node_id": self.node_id,
                "rack": self.rack,
                "endpoints": [e.__dict__ for e in self.endpoints],
                "incarnation": self.incarnation,
                "shutting_down": self.shutting_down,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, *, epoch: int, lease: int = 0) -> BrokerRegistration:
        data = json.loads(raw)
        return cls(
            node_id=int(data["node_id"]),
            rack=data.get("rack"),
            endpoints=tuple(Endpoint(**e) for e in data.get("endpoints", ())),
            incarnation=data.get("incarnation", ""),
            epoch=epoch,
            lease=lease,
            shutting_down=bool(data.get("shutting_down", False)),
        )


@dataclass(frozen=True)
class ControllerRecord:
    node_id: int
    broker_epoch: int
    epoch: int = 0  # the controller key's create revision; not stored in the value

    def to_bytes(self) -> bytes:
        return json.dumps({"node_id": self.node_id, "broker_epoch": self.broker_epoch}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, *, epoch: int) -> ControllerRecord:
        data = json.loads(raw)
        return cls(int(data["node_id"]), int(data["broker_epoch"]), epoch)


@dataclass(frozen=True)
class Suspicion:
    """A broker (``reporter``) found another's listener refusing connections while that one
    was registered with ``broker_epoch``: the controller checks for itself before fencing."""

    suspect: int
    reporter: int
    broker_epoch: int
    mod_revision: int = 0  # not stored in the value

    def to_bytes(self) -> bytes:
        return json.dumps({"broker_epoch": self.broker_epoch}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, *, suspect: int, reporter: int, mod_revision: int) -> Suspicion:
        return cls(suspect, reporter, int(json.loads(raw)["broker_epoch"]), mod_revision)


@dataclass(frozen=True)
class TopicRecord:
    name: str
    topic_id: str  # a UUID, as Kafka's topic ids
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TopicRecord:
        data = json.loads(raw)
        return cls(
            name=data["name"],
            topic_id=data["topic_id"],
            partitions=int(data["partitions"]),
            replication_factor=int(data["replication_factor"]),
            configs={str(k): str(v) for k, v in data.get("configs", {}).items()},
        )


@dataclass(frozen=True)
class IsrMember:
    """An in-sync replica and the broker epoch it joined with: a broker that restarts gets
    a new epoch, so an entry left from before the restart no longer counts (KIP-903)."""

    broker_id: int
    broker_epoch: int


@dataclass(frozen=True)
class PartitionState:
    topic_id: str
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[IsrMember, ...]
    partition_epoch: int
    mod_revision: int = 0  # where this state was read from; not stored in the value
    # A reassignment in progress (Kafka's adding_replicas / removing_replicas): ``replicas``
    # holds the target replicas first, then those being removed
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @property
    def isr_ids(self) -> tuple[int, ...]:
        return tuple(m.broker_id for m in self.isr)

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "topic_id": self.topic_id,
            "replicas": list(self.replicas),
            "leader": self.leader,
            "leader_epoch": self.leader_epoch,
            "isr": [[m.broker_id, m.broker_epoch] for m in self.isr],
            "partition_epoch": self.partition_epoch,
        }
        if self.adding or self.removing:
            data["adding"], data["removing"] = list(self.adding), list(self.removing)
        return json.dumps(data).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, *, mod_revision: int) -> PartitionState:
        data = json.loads(raw)
        return cls(
            topic_id=data["topic_id"],
            replicas=tuple(int(r) for r in data["replicas"]),
            leader=int(data["leader"]),
            leader_epoch=int(data["leader_epoch"]),
            isr=tuple(IsrMember(int(b), int(e)) for b, e in data["isr"]),
            partition_epoch=int(data["partition_epoch"]),
            mod_revision=mod_revision,
            adding=tuple(int(r) for r in data.get("adding", ())),
            removing=tuple(int(r) for r in data.get("removing", ())),
        )

    def next(self, *, new_leader_epoch: bool = False, **changes: Any) -> PartitionState:
        """The successor state: the partition epoch always moves; the leader epoch moves
        when the leader changes, or when asked (the same broker leads again after a restart)."""
        new = replace(self, **changes)
        bump = new_leader_epoch or new.leader != self.leader
        leader_epoch = self.leader_epoch + 1 if bump else self.leader_epoch
        return replace(
            new, leader_epoch=leader_epoch, partition_epoch=self.partition_epoch + 1, mod_revision=0
        )
