"""Prometheus collector for consumer groups: groups by state, members, committed offsets, lag."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from brokerd.groups.coordinator import GroupCoordinator

EndOffset = Callable[[str, int], "int | None"]


class GroupsCollector:
    """Register on a CollectorRegistry; computed at scrape time from the coordinator's state."""

    def __init__(self, coordinator: GroupCoordinator, end_offset: EndOffset) -> None:
        self.coordinator = coordinator
        self.end_offset = end_offset

    def collect(self) -> Iterable[Any]:
        coord = self.coordinator
        if not coord.active:
            return
        snapshot = coord.metrics()
        states = GaugeMetricFamily("kastle_consumer_groups", "Consumer groups by state", labels=["state"])
        for state, n in sorted(snapshot.groups_by_state.items()):
            states.add_metric([state], n)
        yield states
        members = GaugeMetricFamily(
            "kastle_consumer_group_members", "Members of each consumer group", labels=["group"]
        )
        for group, n in sorted(snapshot.members_by_group.items()):
            members.add_metric([group], n)
        yield members
        committed = GaugeMetricFamily(
            "kastle_consumer_group_committed_offset",
            "Committed offset of each group on each partition",
            labels=["group", "topic", "partition"],
        )
        lag = GaugeMetricFamily(
            "kastle_consumer_group_lag",
            "Log end offset minus the group's committed offset, per partition",
            labels=["group", "topic", "partition"],
        )
        for group, topic, partition, offset in coord.committed_offsets():
            labels = [group, topic, str(partition)]
            committed.add_metric(labels, offset)
            end = self.end_offset(topic, partition)
            if end is not None:
                lag.add_metric(labels, max(end - offset, 0))
        yield committed
        yield lag
