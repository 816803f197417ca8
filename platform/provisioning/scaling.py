"""Growing a Dedicated cluster (control queue): start the new brokers, then move replicas over.

`clusters.services.cluster_scale` raised the broker count and set `Cluster.scale` to `starting`;
`provisioning.cluster_scale_step` then runs again and again (each run short, queued again a moment
later, so no worker is held while data copies):

- starting: the new brokers are placed on hosts of their own and their hosts start them
  (host reconciliation starts every leased broker of a RUNNING cluster); once each is registered
  in etcd the bootstrap list names them, new topics' partitions spread over them (brokerd places
  new partitions on every registered broker), and the balanced target of the existing
  partitions is computed (`rebalance`);
- reassigning: the moves go to the controller as AlterPartitionReassignments, a few partitions
  at a time (`conf.reassign_batch()`), the replicas they add throttled to a byte rate (`throttle`);
  a move is done when etcd shows the target replicas and nothing adding or removing;
- done, or failed with a reason for the tenant.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.utils import timezone
from kio.schema.alter_partition_reassignments.v0 import request as reassign_req
from kio.schema.alter_partition_reassignments.v0 import response as reassign_resp
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i32

from acls.bindings import SCHEMAS_TOPIC
from clusters import services as cluster_services
from clusters.models import Broker, Cluster, ClusterStatus
from sharedkit import coordination, kafka_admin
from sharedkit.kafka_wire import internal_connection

from . import conf, placement, queues, rebalance, services, throttle

logger = logging.getLogger(__name__)

TASK = "provisioning.cluster_scale_step"
STEP_INTERVAL = 0.5  # seconds between steps
#: A growth whose latest step began this long ago has lost its chain of steps (the worker running
#: it died). Longer than one step can take against a struggling cluster (etcd 5 s, the
#: controller's connection 10 s, the throttle's configs 15 s), so that a slow step is never
#: joined by a second chain.
REDRIVE_AFTER = 60.0
#: Topics with a replica on every broker, so they gain one on each new broker.
EVERY_BROKER_TOPICS = frozenset({SCHEMAS_TOPIC})


UNKNOWN_TOPIC_OR_PARTITION = 3  # deleted meanwhile: nothing to move
RETRIABLE = {7, 41}  # REQUEST_TIMED_OUT, NOT_CONTROLLER


class ScaleFailed(Exception):
    """The growth cannot go on; the message is for the tenant."""


def cluster_scale_step(*, cluster_id: int, again=None, send_host=None) -> str:
    """One step of a growth; queues the next one (`again(cluster_id, seconds)`) unless it ended.
    `send_host(host name)` queues a host's reconciliation."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    scale = (cluster.scale or {}) if cluster is not None else {}
    state = scale.get("state")
    if cluster is None or state not in ("starting", "reassigning"):
        return "skipped"
    # the chain is alive: reconciliation leaves it alone while this step runs
    cluster_services.cluster_scale_progress(cluster_id=cluster_id, stepped_at=timezone.now().isoformat())
    try:
        if cluster.status != ClusterStatus.RUNNING:
            raise ScaleFailed(f"The cluster became {cluster.status}.")
        if state == "starting":
            state = _starting(cluster, scale, send_host or queues.host_reconcile_send)
        else:
            state = _reassigning(cluster, scale)
    except ScaleFailed as exc:
        error = str(exc)
        if state == "starting" and cluster.status == ClusterStatus.RUNNING:
            _roll_back(cluster, scale)
            error += f" The cluster stays at {scale['from']} brokers."
        elif scale.get("throttled") and cluster.status == ClusterStatus.RUNNING:
            try:
                throttle.throttle_clear(cluster, scale["throttled"])
            except (ConnectionError, kafka_admin.ClusterUnavailable) as clear_exc:
                logger.warning("cluster %s: the moves' throttle stays set: %s", cluster.public_id, clear_exc)
        cluster_services.cluster_scale_progress(cluster_id=cluster_id, state="failed", error=error)
        logger.warning("cluster %s: growth failed: %s", cluster.public_id, error)
        return "failed"
    except coordination.CoordinationError as exc:
        logger.warning("cluster %s: growth waits for etcd: %s", cluster.public_id, exc)
    except (ConnectionError, OSError) as exc:
        logger.warning("cluster %s: growth waits for the controller: %s", cluster.public_id, exc)
    if state == "done":
        logger.info("cluster %s: grown to %s brokers", cluster.public_id, scale.get("to"))
        return "done"
    (again or _again)(cluster_id, STEP_INTERVAL)
    return state


def _roll_back(cluster: Cluster, scale: dict) -> None:
    """A growth that failed before its new brokers joined: they lose their ports (their hosts'
    reconciliation stops them and removes their directories) and the count goes back."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        for broker in Broker.objects.filter(cluster=locked, node_id__gt=scale["from"]):
            placement.release_ports(broker)
            broker.delete()
        locked.broker_count = scale["from"]
        locked.save(update_fields=["broker_count", "updated_at"])
        services.bootstrap_rewrite(cluster_id=locked.pk)


def scales_redrive(*, again=None) -> list[str]:
    """Growths whose chain of steps broke (the worker running one died) are stepped again."""
    stale = timezone.now() - timedelta(seconds=REDRIVE_AFTER)
    redriven = []
    for cluster in Cluster.objects.filter(
        status=ClusterStatus.RUNNING, scale__state__in=["starting", "reassigning"]
    ):
        stepped = cluster.scale.get("stepped_at") or cluster.scale.get("started_at")
        if stepped and datetime.fromisoformat(stepped) < stale:
            logger.warning("cluster %s: its growth stalled; stepping it again", cluster.public_id)
            (again or _again)(cluster.pk, 0)
            redriven.append(cluster.public_id)
    return redriven


def _again(cluster_id: int, seconds: float) -> None:
    current_app.send_task(TASK, args=(cluster_id,), countdown=seconds)


def _starting(cluster: Cluster, scale: dict, send_host) -> str:
    try:
        brokers = placement.place_cluster(cluster)
    except placement.PlacementRefused as exc:
        raise ScaleFailed(str(exc)) from exc
    except (placement.NoHostAvailable, placement.NoPortAvailable) as exc:
        raise ScaleFailed(f"The new brokers found no host: {exc}") from exc
    new = [b for b in brokers if b.node_id > scale["from"]]
    try:
        state = coordination.cluster_state(cluster.public_id)
    except coordination.NotConfigured as exc:
        raise ScaleFailed(str(exc)) from exc
    waiting = [b for b in new if b.node_id not in state.brokers]
    if waiting:
        # Their hosts' reconciliation starts them (every beat too); tell them now, and again
        # now and then in case a reconciliation was running already and missed them.
        told = scale.get("told_at")
        if told is None or (timezone.now() - datetime.fromisoformat(told)).total_seconds() > 5:
            hosts = Broker.objects.filter(pk__in=[b.pk for b in waiting]).values_list("host__name", flat=True)
            for name in sorted(set(hosts)):
                send_host(name)
            cluster_services.cluster_scale_progress(cluster_id=cluster.pk, told_at=timezone.now().isoformat())
        started = datetime.fromisoformat(scale["started_at"])
        if (timezone.now() - started).total_seconds() > conf.scale_start_timeout():
            raise ScaleFailed(
                f"Broker {', '.join(str(b.node_id) for b in waiting)} did not start and register within "
                f"{conf.scale_start_timeout():.0f} s; the operators have the details in the logs."
            )
        return "starting"
    with transaction.atomic():
        Cluster.objects.select_for_update().get(pk=cluster.pk)
        services.bootstrap_rewrite(cluster_id=cluster.pk)
    current = {p: list(s.replicas) for p, s in state.partitions.items() if not s.adding and not s.removing}
    targets = rebalance.balanced_targets(
        current, [b.node_id for b in brokers], every_broker=EVERY_BROKER_TOPICS
    )
    plan = [[topic, index, target] for (topic, index), target in sorted(targets.items())]
    cluster_services.cluster_scale_progress(
        cluster_id=cluster.pk, state="reassigning", partitions=len(plan), moved=0, plan=plan, moving=[]
    )
    logger.info("cluster %s: new brokers registered; %d partitions to move", cluster.public_id, len(plan))
    return "reassigning"


def _reassigning(cluster: Cluster, scale: dict) -> str:
    state = coordination.cluster_state(cluster.public_id)
    moving = [m for m in scale.get("moving", []) if not _arrived(state, m)]
    moved = scale.get("moved", 0) + len(scale.get("moving", [])) - len(moving)
    plan = list(scale.get("plan", []))
    batch = plan[: max(0, conf.reassign_batch() - len(moving))]
    throttled = scale.get("throttled") or {"topics": [], "brokers": []}
    if batch:
        now = throttle.throttle_moves(cluster, state, moving + batch)  # before the moves start
        throttled = {k: sorted({*throttled.get(k, []), *now[k]}) for k in ("topics", "brokers")}
        cluster_services.cluster_scale_progress(cluster_id=cluster.pk, throttled=throttled)
        _send_reassignments(cluster, state, batch)
        moving += batch
        plan = plan[len(batch) :]
    if not plan and not moving:
        throttle.throttle_clear(cluster, throttled)
        cluster_services.cluster_scale_progress(
            cluster_id=cluster.pk, state="done", moved=moved, plan=[], moving=[], throttled={}
        )
        return "done"
    if batch or moved != scale.get("moved", 0):
        cluster_services.cluster_scale_progress(cluster_id=cluster.pk, moved=moved, plan=plan, moving=moving)
    return "reassigning"


def _arrived(state: coordination.ClusterState, move: list) -> bool:
    topic, index, target = move
    partition = state.partitions.get((topic, index))
    if partition is None:
        return True  # the topic was deleted meanwhile: nothing left to move
    return list(partition.replicas) == list(target) and not partition.adding and not partition.removing


def _send_reassignments(cluster: Cluster, state: coordination.ClusterState, moves: list) -> None:
    """AlterPartitionReassignments to the controller (only it takes them)."""
    controller = (
        Broker.objects.select_related("host")
        .filter(cluster=cluster, node_id=state.controller if state.controller is not None else -1)
        .first()
    )
    if controller is None or controller.host is None or not controller.port:
        raise ConnectionError("the cluster has no controller right now")
    by_topic: dict[str, list] = {}
    for topic, index, target in moves:
        by_topic.setdefault(topic, []).append(
            reassign_req.ReassignablePartition(
                partition_index=i32(index), replicas=tuple(BrokerId(b) for b in target)
            )
        )
    request = reassign_req.AlterPartitionReassignmentsRequest(
        topics=tuple(
            reassign_req.ReassignableTopic(name=TopicName(t), partitions=tuple(p))
            for t, p in by_topic.items()
        )
    )
    conn = internal_connection(cluster, controller.host.address, controller.port)
    try:
        reply = conn.call(request, reassign_resp.AlterPartitionReassignmentsResponse)
    finally:
        conn.close()
    if int(reply.error_code) != 0:
        raise ConnectionError(f"the controller refused the reassignment: {reply.error_message}")
    codes = {int(p.error_code) for t in reply.responses for p in t.partitions}
    if codes & RETRIABLE:
        raise ConnectionError("the controller changed or timed out; the moves are sent again")
    refused = [
        f"{t.name}-{p.partition_index}: {p.error_message}"
        for t in reply.responses
        for p in t.partitions
        if int(p.error_code) not in (0, UNKNOWN_TOPIC_OR_PARTITION)
    ]
    if refused:
        raise ScaleFailed(f"The controller refused to move {', '.join(refused)}.")
