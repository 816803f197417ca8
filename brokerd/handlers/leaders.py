"""ElectLeaders 0-2: preferred and unclean elections, written by the controller to etcd."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.controller import NotControllerError, UnknownTopicError
from brokerd.coordination.elections import PREFERRED, ElectionRefusal
from brokerd.coordination.etcd import CoordinationError

_ZERO = datetime.timedelta(0)
_REFUSALS = {
    ElectionRefusal.ELECTION_NOT_NEEDED: ErrorCode.election_not_needed,
    ElectionRefusal.PREFERRED_LEADER_NOT_AVAILABLE: ErrorCode.preferred_leader_not_available,
    ElectionRefusal.ELIGIBLE_LEADERS_NOT_AVAILABLE: ErrorCode.eligible_leaders_not_available,
}


def _respond(ctx, error, results: dict[str, list[tuple[int, int, str | None]]]):
    return ctx.response(
        throttle_time=_ZERO, error_code=error,
        replica_election_results=tuple(
            ctx.build("ReplicaElectionResult", topic=name, partition_result=tuple(
                ctx.build("PartitionResult", partition_id=p, error_code=code, error_message=message)
                for p, code, message in rows))
            for name, rows in results.items()
        ),
    )


def _wanted(request, broker) -> tuple[list[tuple[str, int]], bool]:
    """The partitions asked for, and whether all were (then ELECTION_NOT_NEEDED is left out,
    as Kafka's controller leaves it out)."""
    if request.topic_partitions is None:
        if broker.replicas is not None:
            every = broker.replicas.topics()
            return [(name, row[0]) for name in sorted(every) for row in every[name][1]], True
        return [(n, p.partition) for n, t in sorted(broker.logs.topics.items()) for p in t.partitions], True
    return [(t.topic, int(p)) for t in request.topic_partitions for p in t.partitions], False


async def _elect(ctx, election_type: int, wanted, every: bool):
    broker = ctx.broker
    results: dict[str, list[tuple[int, int, str | None]]] = {}
    controller = broker.cluster.controller
    for name, index in wanted:
        try:
            refusal = await controller.elect_leader(name, index, election_type)
        except UnknownTopicError as exc:
            code, message = ErrorCode.unknown_topic_or_partition, str(exc)
        except NotControllerError as exc:
            code, message = ErrorCode.not_controller, str(exc)
        except (CoordinationError, TimeoutError) as exc:  # etcd unreachable or busy: retriable
            code, message = ErrorCode.request_timed_out, f"cluster metadata: {exc}"
        else:
            if refusal is None:
                code, message = ErrorCode.none, None
            else:
                code, message = _REFUSALS[refusal], refusal.value
        if every and code == ErrorCode.election_not_needed:
            continue
        results.setdefault(name, []).append((index, code, message))
    return _respond(ctx, ErrorCode.none, results)


def elect_leaders(request, ctx):
    broker = ctx.broker
    election_type = int(getattr(request, "election_type", PREFERRED))
    wanted, every = _wanted(request, broker)
    if not acls.cluster_allowed(ctx, acls.ALTER):  # ALTER on the cluster, as Kafka
        code = ErrorCode.cluster_authorization_failed
        return _respond(ctx, code, _each(wanted, code, "ElectLeaders needs ALTER on the cluster"))
    if election_type not in (0, 1):
        code = ErrorCode.invalid_request
        return _respond(ctx, code, _each(wanted, code, f"election type {election_type} is not 0 "
                                                      "(preferred) or 1 (unclean)"))
    if broker.replicas is None:  # a standalone broker leads every partition it has
        results: dict[str, list[tuple[int, int, str | None]]] = {}
        for name, index in wanted:
            topic = broker.logs.topics.get(name)
            if topic is None or not 0 <= index < len(topic.partitions):
                results.setdefault(name, []).append((index, ErrorCode.unknown_topic_or_partition,
                                                     f"partition {name}-{index} does not exist"))
            elif not every:
                refusal = ElectionRefusal.ELECTION_NOT_NEEDED
                results.setdefault(name, []).append((index, _REFUSALS[refusal], refusal.value))
        return _respond(ctx, ErrorCode.none, results)
    if not broker.cluster.controller.active:
        code = ErrorCode.not_controller
        return _respond(ctx, code, _each(wanted, code, "This broker is not the active controller."))
    return _elect(ctx, election_type, wanted, every)


def _each(wanted, code, message) -> dict[str, list[tuple[int, int, str | None]]]:
    results: dict[str, list[tuple[int, int, str | None]]] = {}
    for name, index in wanted:
        results.setdefault(name, []).append((index, code, message))
    return results
