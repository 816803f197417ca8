"""AlterPartitionReassignments 0-1 and ListPartitionReassignments 0, through the controller."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.controller import NoReassignmentError, NotControllerError, UnknownTopicError
from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.placement import AssignmentError

_ZERO = datetime.timedelta(0)


def _top_level_refusal(ctx) -> tuple[int, str] | None:
    broker = ctx.broker
    if not acls.cluster_allowed(ctx, acls.ALTER if ctx.api_key == 45 else acls.DESCRIBE):
        return ErrorCode.cluster_authorization_failed, "Authorization failed."
    if broker.replicas is not None and not broker.cluster.controller.active:
        return ErrorCode.not_controller, "This broker is not the active controller."
    return None


class _Standalone:
    """A broker alone holds every replica itself: nothing can move, and nothing is moving."""

    def __init__(self, broker) -> None:
        self.broker = broker

    async def alter_reassignment(self, name: str, index: int, target: list[int] | None) -> None:
        topic = self.broker.logs.topics.get(name)
        if topic is None or not 0 <= index < len(topic.partitions):
            raise UnknownTopicError(f"partition {name}-{index} does not exist")
        if target is None:
            raise NoReassignmentError(f"no reassignment of {name}-{index} is in progress")
        if target != [self.broker.node_id]:
            raise AssignmentError(f"a standalone broker holds every replica itself: the only replica "
                                  f"list is [{self.broker.node_id}]")


async def _alter(request, ctx):
    broker = ctx.broker
    controller = _Standalone(broker) if broker.replicas is None else broker.cluster.controller
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            target = None if p.replicas is None else [int(r) for r in p.replicas]
            code, message = ErrorCode.none, None
            try:
                await controller.alter_reassignment(t.name, p.partition_index, target)
            except UnknownTopicError as exc:
                code, message = ErrorCode.unknown_topic_or_partition, str(exc)
            except NoReassignmentError as exc:
                code, message = ErrorCode.no_reassignment_in_progress, str(exc)
            except AssignmentError as exc:
                code, message = ErrorCode.invalid_replica_assignment, str(exc)
            except NotControllerError as exc:
                code, message = ErrorCode.not_controller, str(exc)
            except (CoordinationError, TimeoutError) as exc:
                code, message = ErrorCode.request_timed_out, f"cluster metadata: {exc}"
            parts.append(ctx.build("ReassignablePartitionResponse", partition_index=p.partition_index,
                                   error_code=code, error_message=message))
        topics.append(ctx.build("ReassignableTopicResponse", name=t.name, partitions=tuple(parts)))
    return ctx.response(throttle_time=_ZERO, allow_replication_factor_change=True, error_code=ErrorCode.none,
                        error_message=None, responses=tuple(topics))


def alter_partition_reassignments(request, ctx):
    refusal = _top_level_refusal(ctx)
    if refusal is not None:
        return ctx.response(throttle_time=_ZERO, allow_replication_factor_change=True, error_code=refusal[0],
                            error_message=refusal[1], responses=())
    return _alter(request, ctx)


def list_partition_reassignments(request, ctx):
    refusal = _top_level_refusal(ctx)
    if refusal is not None:
        return ctx.response(throttle_time=_ZERO, error_code=refusal[0], error_message=refusal[1], topics=())
    if ctx.broker.replicas is None:
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.none, error_message=None, topics=())
    state = ctx.broker.cluster.controller.view.state
    if request.topics is None:
        wanted = sorted(key for key, p in state.partitions.items() if p.adding or p.removing)
    else:
        wanted = [(t.name, int(i)) for t in request.topics for i in t.partition_indexes]
    by_topic: dict[str, list] = {}
    for name, index in wanted:
        p = state.partitions.get((name, index))
        if p is None or not (p.adding or p.removing):
            continue  # as Kafka: only partitions being reassigned are listed
        by_topic.setdefault(name, []).append(ctx.build(
            "OngoingPartitionReassignment", partition_index=index, replicas=p.replicas,
            adding_replicas=p.adding, removing_replicas=p.removing))
    return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.none, error_message=None, topics=tuple(
        ctx.build("OngoingTopicReassignment", name=name, partitions=tuple(parts))
        for name, parts in by_topic.items()))
