"""Member epochs of consumer-protocol groups: ConsumerGroupDescribe, which AdminClient decodes without them.

confluent-kafka's describe_consumer_groups gives a consumer-protocol group's members and their
assignments but not the group and member epochs, so this asks the group's coordinator itself
(FindCoordinator, then ConsumerGroupDescribe v1) over `sharedkit.kafka_wire`, as the cluster's
internal user. Best effort: None when a broker does not answer.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from kio.schema.consumer_group_describe.v1 import request as cgd_req
from kio.schema.consumer_group_describe.v1 import response as cgd_resp
from kio.schema.find_coordinator.v4 import request as fc_req
from kio.schema.find_coordinator.v4 import response as fc_resp
from kio.static.primitive import i8

from clusters.models import Cluster
from sharedkit.kafka_wire import internal_connection

logger = logging.getLogger(__name__)


def _bootstrap(cluster: Cluster) -> tuple[str, int]:
    first = (cluster.bootstrap_servers or "").split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]"), int(port)


def _assignment(entity) -> list[dict[str, Any]]:
    return sorted(
        (
            {"topic": tp.topic_name, "partitions": sorted(int(p) for p in tp.partitions)}
            for tp in entity.topic_partitions
        ),
        key=lambda row: row["topic"],
    )


def consumer_group_epochs(cluster: Cluster, group_id: str) -> dict[str, Any] | None:
    """{group_epoch, assignment_epoch, assignor, members: {member_id: {member_epoch, target, classic}}}."""
    try:
        host, port = _bootstrap(cluster)
        conn = internal_connection(cluster, host, port)
        try:
            found = conn.call(
                fc_req.FindCoordinatorRequest(key_type=i8(0), coordinator_keys=(group_id,)),
                fc_resp.FindCoordinatorResponse,
            )
            coordinator = found.coordinators[0]
            if int(coordinator.error_code) != 0:
                return None
            if (coordinator.host, int(coordinator.port)) != (host, port):
                conn.close()
                conn = internal_connection(cluster, coordinator.host, int(coordinator.port))
            answer = conn.call(
                cgd_req.ConsumerGroupDescribeRequest(
                    group_ids=(group_id,), include_authorized_operations=False
                ),
                cgd_resp.ConsumerGroupDescribeResponse,
            )
        finally:
            conn.close()
    except (OSError, ValueError, IndexError, struct.error) as exc:
        logger.warning("ConsumerGroupDescribe of %s on %s failed: %s", group_id, cluster.public_id, exc)
        return None
    (group,) = answer.groups
    if int(group.error_code) != 0:
        return None  # a classic group (GROUP_ID_NOT_FOUND) or gone
    return {
        "group_epoch": int(group.group_epoch),
        "assignment_epoch": int(group.assignment_epoch),
        "assignor": group.assignor_name or None,
        "members": {
            m.member_id: {
                "member_epoch": int(m.member_epoch),
                "target": _assignment(m.target_assignment),
                # ConsumerGroupDescribe v1's MemberType: 0 for a classic consumer in the group
                "classic": int(getattr(m, "member_type", 1)) == 0,
            }
            for m in group.members
        },
    }
