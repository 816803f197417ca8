"""Auto-creation of topics in a cluster (``auto.create.topics.enable``), as Kafka's
AutoTopicCreationManager: a Metadata request for an unknown topic answers LEADER_NOT_AVAILABLE
at once and the topic is created in the background, with ``num.partitions`` partitions and the
cluster's default replication factor (``default.replication.factor`` when set, else 3 once
three brokers are registered). The client asks again and finds it.

The broker writes the topic to etcd itself, as it does for CreateTopics
(``coordination.metadata``: any registered broker writes topics by compare-and-set). One
creation per topic name is in flight at a time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.metadata import TopicExistsError
from brokerd.coordination.placement import PlacementError

log = logging.getLogger("brokerd.replication")


class TopicAutoCreator:
    def __init__(self, replicas: Any) -> None:
        self.replicas = replicas  # the ReplicaManager: the cluster's settings and metadata writer
        self._creating: dict[str, asyncio.Task] = {}

    def request(self, name: str) -> None:
        """Have ``name`` created in the background (once while a creation runs)."""
        running = self._creating.get(name)
        if running is not None and not running.done():
            return
        task = asyncio.ensure_future(self._create(name))
        self._creating[name] = task
        task.add_done_callback(lambda _t: self._creating.pop(name, None))

    async def stop(self) -> None:
        for task in list(self._creating.values()):
            task.cancel()
        self._creating.clear()

    async def _create(self, name: str) -> None:
        replicas = self.replicas
        partitions = replicas.broker.config["num.partitions"]
        rf = replicas.default_replication_factor()
        try:
            await replicas.membership.writes.create_topic(name, partitions, rf)
        except TopicExistsError:
            return
        except (CoordinationError, PlacementError, TimeoutError, ValueError) as exc:
            # The client's next Metadata request tries again.
            log.warning("auto-creating topic %s failed: %s", name, exc)
            return
        log.info("auto-created topic %s (%d partitions, replication factor %d)", name, partitions, rf)
