"""Request handlers, one module per API family, and the one table that registers them.

A handler is ``handler(request, ctx) -> response``: it translates a decoded request into calls
on the broker's subsystems (``ctx.broker.logs``, ``.configs``, ``.quotas``, ``.metering``,
``.producers``, ``.groups``, ``.authorizer``) and their answers into a response. Handlers hold
no state and import no other handler module; what two families share is a subsystem's method.

Adding an API is one row in :data:`APIS`; ApiVersions advertises exactly this table.
"""

from __future__ import annotations

from brokerd.api import ApiSpec
from brokerd.handlers import (
    acls,
    api_versions,
    client_quotas,
    cluster,
    configs,
    consumer_groups,
    fetch,
    groups,
    leaders,
    list_offsets,
    metadata,
    partitions,
    produce,
    producers,
    reassignments,
    sasl,
    telemetry,
    topics,
    txn,
)
from brokerd.protocol.fastpath import decode_produce

_SPECS = (
    ApiSpec(0, 0, 13, produce.handle, decode=decode_produce, refuse_below=3),
    ApiSpec(1, 4, 18, fetch.handle),
    ApiSpec(2, 1, 10, list_offsets.handle),
    ApiSpec(3, 0, 13, metadata.handle),
    ApiSpec(8, 2, 9, groups.offset_commit),
    ApiSpec(9, 1, 9, groups.offset_fetch),
    ApiSpec(10, 0, 6, groups.find_coordinator),
    ApiSpec(11, 0, 9, groups.join_group),
    ApiSpec(12, 0, 4, groups.heartbeat),
    ApiSpec(13, 0, 5, groups.leave_group),
    ApiSpec(14, 0, 5, groups.sync_group),
    ApiSpec(15, 0, 6, groups.describe_groups),
    ApiSpec(16, 0, 5, groups.list_groups),
    ApiSpec(17, 0, 1, sasl.handshake, pre_auth=True),
    ApiSpec(18, 0, 4, api_versions.handle, pre_auth=True),
    ApiSpec(19, 2, 7, topics.create_topics),
    ApiSpec(20, 1, 6, topics.delete_topics),
    ApiSpec(21, 0, 2, partitions.delete_records),
    ApiSpec(22, 0, 5, producers.init_producer_id),
    ApiSpec(23, 2, 4, partitions.offset_for_leader_epoch),
    ApiSpec(24, 0, 5, txn.add_partitions_to_txn),
    ApiSpec(25, 0, 4, txn.add_offsets_to_txn),
    ApiSpec(26, 0, 5, txn.end_txn),
    ApiSpec(27, 1, 1, txn.write_txn_markers),
    ApiSpec(28, 0, 5, txn.txn_offset_commit),
    ApiSpec(29, 1, 3, acls.describe_acls),
    ApiSpec(30, 1, 3, acls.create_acls),
    ApiSpec(31, 1, 3, acls.delete_acls),
    ApiSpec(32, 1, 4, configs.describe_configs),
    ApiSpec(33, 0, 2, configs.alter_configs),
    ApiSpec(35, 1, 4, cluster.describe_log_dirs),
    ApiSpec(36, 0, 2, sasl.authenticate, pre_auth=True, barrier=True),
    ApiSpec(37, 0, 3, partitions.create_partitions),
    ApiSpec(42, 0, 2, groups.delete_groups),
    ApiSpec(43, 0, 2, leaders.elect_leaders),
    ApiSpec(44, 0, 1, configs.incremental_alter_configs),
    ApiSpec(45, 0, 1, reassignments.alter_partition_reassignments),
    ApiSpec(46, 0, 0, reassignments.list_partition_reassignments),
    ApiSpec(47, 0, 0, groups.offset_delete),
    ApiSpec(48, 0, 1, client_quotas.describe_client_quotas),
    ApiSpec(49, 0, 1, client_quotas.alter_client_quotas),
    ApiSpec(60, 0, 2, cluster.describe_cluster),
    ApiSpec(61, 0, 0, producers.describe_producers),
    ApiSpec(65, 0, 0, txn.describe_transactions),
    ApiSpec(66, 0, 1, txn.list_transactions),
    ApiSpec(68, 0, 1, consumer_groups.consumer_group_heartbeat),
    ApiSpec(69, 0, 1, consumer_groups.consumer_group_describe),
    ApiSpec(71, 0, 0, telemetry.get_telemetry_subscriptions),
    ApiSpec(72, 0, 0, telemetry.push_telemetry),
    ApiSpec(74, 0, 1, configs.list_config_resources),
    ApiSpec(75, 0, 0, metadata.describe_topic_partitions),
)

#: api key -> spec: what the connection loop dispatches on.
APIS: dict[int, ApiSpec] = {spec.api_key: spec for spec in _SPECS}
