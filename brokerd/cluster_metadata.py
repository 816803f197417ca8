"""A clustered broker's subsystems follow the cluster metadata in etcd: ACL bindings (the
authorizer), client quotas (the quota store) and topic configs (the local logs' settings).

Whichever broker took an admin write wrote it to etcd (brokerd/coordination/metadata.py); every
broker's watched view then carries it here, so a binding created through one broker is enforced
on all, and a retention, max.message.bytes or cleanup.policy change made through one applies on
every replica. A broker alone keeps these in its own files instead.
"""

from __future__ import annotations

import logging
from typing import Any

from brokerd.acls import Acl
from brokerd.coordination.view import ClusterState, ClusterView

log = logging.getLogger("brokerd.cluster")


class MetadataFollower:
    def __init__(self, broker: Any, view: ClusterView) -> None:
        self.broker = broker
        self.view = view
        self._acls_seen = -1
        self._quotas_seen = -1

    def start(self) -> None:
        self.view.listeners.append(self.sync)
        self.sync(self.view.state)

    def sync(self, state: ClusterState) -> None:
        if not self.view.caught_up.is_set():
            return  # a partial read must not drop a binding or a quota
        broker = self.broker
        if broker.authorizer is not None and state.acls_serial != self._acls_seen:
            broker.authorizer.replace(_acls(state))
            broker.metadata_cache.clear()  # authorized operations are part of cached answers
            self._acls_seen = state.acls_serial
        if broker.quotas is not None and state.quotas_serial != self._quotas_seen:
            broker.quotas.store.replace_dynamic(dict(state.quotas.values()))
            self._quotas_seen = state.quotas_serial
        logs = broker.logs
        for name, record in state.topics.items():
            local = logs.topics.get(name)
            if local is not None and str(local.id) == record.topic_id and local.configs != record.configs:
                try:
                    logs.set_topic_configs(local, record.configs)
                except OSError as exc:  # the next change retries; the old settings stay meanwhile
                    log.error("cannot apply the configs of topic %s: %s", name, exc)
                else:
                    log.info("topic %s configs now %s", name, record.configs)


def _acls(state: ClusterState) -> set[Acl]:
    out = set()
    for row in state.acls.values():
        try:
            out.add(Acl(*row))
        except TypeError:  # only brokerd writes these; a row it cannot read is skipped
            log.error("unreadable ACL binding in the cluster metadata: %r", row)
    return out
