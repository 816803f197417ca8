"""DescribeCluster 0-2 and DescribeLogDirs 1-4 (size on disk per partition)."""

from __future__ import annotations

import datetime
import os

from kio.schema.errors import ErrorCode

from brokerd import acls

_ZERO = datetime.timedelta(0)
NO_OPS = -(2**31)
# ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE
CLUSTER_OPS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))


def describe_cluster(request, ctx):
    broker = ctx.broker
    endpoint_type = int(getattr(request, "endpoint_type", 1))
    if endpoint_type != 1:  # 2 = controllers: brokerd has no separate controller endpoint
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.unsupported_endpoint_type,
                            error_message="Only the broker endpoint type is supported",
                            endpoint_type=endpoint_type, cluster_id=broker.cluster_id, controller_id=-1,
                            brokers=(), cluster_authorized_operations=NO_OPS)
    ops = CLUSTER_OPS if request.include_cluster_authorized_operations else NO_OPS
    if request.include_cluster_authorized_operations and broker.authorizer is not None:
        # as Kafka, DescribeCluster needs no ACL; it reports the caller's operations
        ops = acls.authorized_operations(ctx, acls.CLUSTER, acls.CLUSTER_NAME)
    return ctx.response(
        throttle_time=_ZERO, error_code=ErrorCode.none, error_message=None, endpoint_type=1,
        cluster_id=broker.cluster_id, controller_id=broker.controller_id(),
        brokers=tuple(
            # v2 asks for fenced brokers too; brokerd lists registered (unfenced) brokers only
            ctx.build("DescribeClusterBroker", broker_id=node_id, host=host, port=port, rack=rack,
                      is_fenced=False)
            for node_id, host, port, rack in broker.cluster_brokers(ctx.conn.listener, ctx.conn.port)
        ),
        cluster_authorized_operations=ops)


def _hosts_replica(broker, name: str, index: int) -> bool:
    if broker.replicas is None:
        return True
    state = broker.replicas.partition(name, index)
    return state is not None and broker.node_id in state.replicas


def describe_log_dirs(request, ctx):
    logs = ctx.broker.logs
    if not acls.cluster_allowed(ctx, acls.DESCRIBE):  # DESCRIBE on the cluster
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.cluster_authorization_failed,
                            results=())
    if request.topics is None:
        wanted = {name: None for name in logs.topics}
    else:
        wanted = {}
        for t in request.topics:
            wanted.setdefault(t.topic, set()).update(t.partitions)
    topics = []
    for name, partitions in wanted.items():
        topic = logs.topics.get(name)
        if topic is None:
            continue  # Kafka leaves out what this broker does not host
        parts = []
        for plog in topic.partitions:
            if partitions is not None and plog.partition not in partitions:
                continue
            if not _hosts_replica(ctx.broker, name, plog.partition):
                continue  # a local log kept for a partition this broker does not replicate
            parts.append(ctx.build("DescribeLogDirsPartition", partition_index=plog.partition,
                                   partition_size=plog.size_bytes(), offset_lag=0, is_future_key=False))
        topics.append(ctx.build("DescribeLogDirsTopic", name=name, partitions=tuple(parts)))
    try:
        st = os.statvfs(logs.data_dir)
        total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    except OSError:
        total = usable = -1
    result = ctx.build("DescribeLogDirsResult", error_code=ErrorCode.none, log_dir=logs.data_dir,
                       topics=tuple(topics), total_bytes=total, usable_bytes=usable)
    return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.none, results=(result,))
