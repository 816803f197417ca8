"""Groups whose members speak both protocols: the coordinator's part of an online migration.

Classic requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) to a consumer group that has
members are served by its classic members (Kafka's ``classicGroup*ToConsumerGroup``), whatever
``group.consumer.migration.policy`` says; the policy decides only whether a group changes type
while it has members: *upgrade* when a consumer-protocol member joins a classic group,
*downgrade* when the last consumer-protocol member leaves and only classic members remain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from brokerd.groups import migration
from brokerd.groups.config import GroupConfig
from brokerd.groups.consumer import ClassicJoin, ConsumerGroup, ConsumerProtocol, HeartbeatError
from brokerd.groups.group import (
    CONSUMER_PROTOCOL_TYPE,
    Group,
    GroupState,
    JoinResult,
    SyncResult,
    new_member_id,
)
from brokerd.groups.store import write_error

log = logging.getLogger("brokerd.groups")
E = ErrorCode


class MixedGroups:
    """Mixed into :class:`~brokerd.groups.coordinator.GroupCoordinator`."""

    config: GroupConfig
    consumer: ConsumerProtocol
    _groups: dict[str, Group]
    _consumer_writes: dict[str, asyncio.Future[None]]
    _loop: asyncio.AbstractEventLoop | None
    _now: Callable[[], int]
    _cancel_timers: Callable[[Group], None]
    _reschedule_heartbeat: Callable[..., None]
    _prepare_rebalance: Callable[[Group, str], None]
    _track: Callable[[asyncio.Future[None]], None]
    store: Any  # the coordinator's GroupStore

    # ==== changing the group's type ===========================================================

    def _upgrade(self, group: Group) -> ConsumerGroup | None:
        """A classic group with members becomes a consumer group (its classic members kept in
        it), or None when ``group.consumer.migration.policy`` or the group does not allow it."""
        why = None
        if not migration.upgrade_enabled(self.config.consumer_migration_policy):
            why = "the online upgrade is disabled"
        elif group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            why = "the group does not use the consumer embedded protocol"
        elif len(group.members) > self.config.consumer_max_size:
            why = "its size exceeds the consumer group maximum size"
        if why is not None:
            log.info(
                "group %s: cannot upgrade the classic group to a consumer group: %s", group.group_id, why
            )
            return None
        try:
            consumer = migration.consumer_group_from_classic(group, self.consumer.topics())
        except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
            log.warning(
                "group %s: cannot upgrade, malformed embedded consumer protocol: %s", group.group_id, exc
            )
            return None
        # Members parked in a join or a sync rejoin, into the consumer group.
        for member in list(group.members.values()):
            group.complete_join(member, JoinResult(E.rebalance_in_progress, member.member_id))
            member.complete_sync(SyncResult(E.rebalance_in_progress))
            member.cancel_heartbeat()
        self._cancel_timers(group)
        group.members.clear()
        group.static_members.clear()
        group.pending_members.clear()
        group.pending_sync_members.clear()
        group.supported_protocols.clear()
        group.num_awaiting_join = 0
        group.generation_id = 0
        group.protocol_name = group.leader_id = group.subscribed_topics = None
        group.previous_state, group.state = group.state, GroupState.EMPTY
        group.consumer = consumer
        assert self._loop is not None
        self.consumer.start(self._loop, [consumer])
        log.info(
            "group %s: converted the classic group to a consumer group at epoch %d (%d classic members)",
            group.group_id, consumer.group_epoch, len(consumer.members),
        )  # fmt: skip
        return consumer

    def _downgrade(self, consumer: ConsumerGroup, leaving: str, *, rebalance: bool = True) -> bool:
        """Before ``leaving`` is removed: if only classic members would remain and the policy
        allows it, the group becomes a classic group of them and rebalances (True). Without
        ``leaving`` (a classic static member replaced the last consumer-protocol one) it stays
        stable: nobody's assignment changes."""
        group = self._groups.get(consumer.group_id)
        if (
            group is None
            or group.consumer is not consumer
            or not migration.only_classic_remain(consumer, leaving)
        ):
            return False
        if not migration.downgrade_enabled(self.config.consumer_migration_policy):
            log.info(
                "group %s: cannot downgrade the consumer group: the online downgrade is disabled",
                group.group_id,
            )
            return False
        if sum(1 for m in consumer.members if m != leaving) > self.config.max_size:
            return False
        members = migration.classic_members_from_consumer(consumer, leaving, self.consumer.topics())
        self.consumer.stop([consumer])
        group.consumer = None
        group.generation_id = consumer.group_epoch
        group.protocol_type = CONSUMER_PROTOCOL_TYPE
        group.leader_id = None
        for member in members:
            group.add(member, None)
        group.protocol_name = group.select_protocol()
        group.subscribed_topics = group.compute_subscribed_topics()
        group.previous_state, group.state = group.state, GroupState.STABLE
        group.state_timestamp_ms = self._now()
        for member in members:
            self._reschedule_heartbeat(group, member)
        document = group.to_document()
        document["tombstone_members"] = sorted(consumer.persisted_members | set(consumer.members))
        self._track(self.store.put_group(group.group_id, document))
        log.info(
            "group %s: converted the consumer group to a classic group at generation %d (%s left)",
            group.group_id, group.generation_id, leaving,
        )  # fmt: skip
        if rebalance:
            self._prepare_rebalance(group, f"downgrade of group {group.group_id} from consumer to classic")
        return True

    # ==== classic requests to a consumer group ================================================

    def _classic_join_to_consumer(
        self, group: Group, req: Any, respond: Callable[[JoinResult], None]
    ) -> None:
        """JoinGroup of a classic member into a consumer group: answered once the group's new
        state is durable, as a follower's response (the coordinator assigns, not a leader)."""
        consumer = group.consumer
        assert consumer is not None
        unknown = req.member_id == ""
        member_id = req.member_id or new_member_id(req.client_id, req.instance_id)
        if not req.protocols:
            return respond(JoinResult(E.inconsistent_group_protocol, req.member_id))
        try:
            subscription = migration.parse_subscription(req.protocols[0][1])
        except (ValueError, UnicodeDecodeError):
            return respond(JoinResult(E.inconsistent_group_protocol, req.member_id))
        topics = self.consumer.topics()
        join = ClassicJoin(
            member_id,
            unknown,
            req.instance_id,
            req.protocol_type,
            req.protocols,
            req.session_ms,
            req.rebalance_ms,
            subscription.topics,
            migration.by_topic_id(subscription.owned, topics),
            subscription.rack_id,
            req.client_id,
            req.client_host,
            require_known_id=unknown and req.instance_id is None and req.api_version >= 4,
        )
        replaced = consumer.members.get(consumer.static_members.get(req.instance_id or "", ""))
        try:
            member = self.consumer.classic_join(consumer, join)
        except HeartbeatError as exc:
            member_id = member_id if exc.error is E.member_id_required else req.member_id
            return respond(JoinResult(exc.error, member_id))
        assert member.classic is not None
        if replaced is not None and replaced.classic is None and replaced.member_id != member.member_id:
            # the last consumer-protocol member may have been replaced by this classic one
            self._downgrade(consumer, "", rebalance=False)
        result = JoinResult(
            E.none,
            member.member_id,
            member.member_epoch,
            CONSUMER_PROTOCOL_TYPE,
            member.classic.names()[0],
            "",
        )
        write = self._consumer_writes.pop(group.group_id, None)
        if write is None:
            return respond(result)

        def durable(f: asyncio.Future[None]) -> None:
            error = write_error(f)
            respond(result if error is None else JoinResult(error, member.member_id))

        write.add_done_callback(durable)

    def _classic_sync_to_consumer(
        self,
        group: Group,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> SyncResult:
        consumer = group.consumer
        assert consumer is not None
        try:
            assigned = self.consumer.classic_sync(
                consumer, member_id, instance_id, generation_id, protocol_type, protocol_name
            )
        except HeartbeatError as exc:
            return SyncResult(exc.error)
        member = consumer.members[member_id]
        assert member.classic is not None
        return SyncResult(
            E.none,
            protocol_type or CONSUMER_PROTOCOL_TYPE,
            protocol_name or member.classic.names()[0],
            migration.assignment_bytes(assigned, self.consumer.topics()),
        )

    def _classic_leave_from_consumer(
        self, consumer: ConsumerGroup, members: Iterable[tuple[str, str | None]]
    ) -> list[tuple[str, str | None, ErrorCode]]:
        out = []
        for member_id, instance_id in members:
            current_id = consumer.static_members.get(instance_id or "") if member_id == "" else member_id
            member = consumer.members.get(current_id or "")
            if member is None or member.classic is None:
                out.append((member_id, instance_id, E.unknown_member_id))
            elif instance_id is not None and member.instance_id != instance_id:
                out.append((member_id, instance_id, E.fenced_instance_id))
            else:
                log.info("group %s: classic member %s left the group", consumer.group_id, member.member_id)
                self.consumer.remove(consumer, member.member_id)
                out.append((member_id, instance_id, E.none))
        return out
