"""A clustered broker's subsystems follow the cluster metadata in etcd: ACL bindings (the
authorizer), client quotas (the quota store), client-metrics subscriptions (the telemetry
service) and topic configs (the local logs' settings).

Whichever broker took an admin write wrote it to etcd (brokerd/coordination/metadata.py); every
broker's watched view then carries it here, so a binding created through one broker is enforced
on all, and a retention, max.message.bytes or cleanup.policy change made through one applies on
every replica. A broker alone keeps these in its own files instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from brokerd.acls import Acl
from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.view import ClusterState, ClusterView
from brokerd.quotas import make_entity
from brokerd.telemetry import subscriptions

log = logging.getLogger("brokerd.cluster")


class MetadataFollower:
    def __init__(self, broker: Any, view: ClusterView) -> None:
        self.broker = broker
        self.view = view
        self._acls_seen = -1
        self._quotas_seen = -1
        self._client_metrics_seen = -1
        # set once a caught-up view was applied: until then the authorizer holds no binding and
        # the quota store no dynamic quota, so the broker serves no client before it
        self.loaded = asyncio.Event()

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
        if broker.telemetry is not None and state.client_metrics_serial != self._client_metrics_seen:
            broker.telemetry.subscriptions.follow(state.client_metrics)
            self._client_metrics_seen = state.client_metrics_serial
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
        self.loaded.set()


def _acls(state: ClusterState) -> set[Acl]:
    out = set()
    for row in state.acls.values():
        try:
            out.add(Acl(*row))
        except TypeError:  # only brokerd writes these; a row it cannot read is skipped
            log.error("unreadable ACL binding in the cluster metadata: %r", row)
    return out


async def adopt_local_files(broker: Any) -> None:
    """A broker that ran before its cluster held ACLs and quotas in etcd kept them in
    ``acls.json`` and ``quotas.json``: the first such broker to start brings them into etcd
    (once per cluster), so that an upgraded cluster keeps enforcing them. The files are then
    renamed (``.adopted``): etcd is the only store from here on."""
    data_dir = Path(broker.logs.data_dir)
    acl_file, quota_file = data_dir / "acls.json", data_dir / "quotas.json"
    if not acl_file.exists() and not quota_file.exists():
        return
    try:
        rows = json.loads(acl_file.read_text()).get("acls", []) if acl_file.exists() else []
        entries = json.loads(quota_file.read_text()).get("entries", []) if quota_file.exists() else []
        quotas = [(make_entity(row["entity"].items()), {k: float(v) for k, v in row["values"].items()})
                  for row in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read this broker's own ACL or quota file (%s); not adopted", exc)
        return
    try:
        adopted = await broker.cluster.writes.adopt([list(r) for r in rows], quotas)
    except (CoordinationError, TimeoutError) as exc:
        log.warning("the ACLs and quotas of this broker's own files were not brought into the cluster "
                    "yet (%s); the next start tries again", exc)
        return
    for path in (acl_file, quota_file):
        if path.exists():
            os.replace(path, path.with_name(path.name + ".adopted"))
    if adopted:
        log.info("brought %d ACL binding(s) and %d quota entity(ies) from this broker's files into the "
                 "cluster", len(rows), len(quotas))
    else:
        log.info("the cluster held its ACLs and quotas already; this broker's own files are set aside")


async def adopt_client_metrics_file(broker: Any) -> None:
    """A broker that ran alone kept its client-metrics subscriptions in ``client-metrics.json``:
    once it runs in a cluster, the first such broker brings them into etcd (once per cluster;
    a later start, or another broker's file, finds the cluster's marker and writes nothing). The
    file is then renamed (``.adopted``): etcd is the only store from here on."""
    path = Path(broker.logs.data_dir) / subscriptions.FILE
    if not path.exists():
        return
    try:
        raw = json.loads(path.read_text())
        kept = {str(name): subscriptions.validated(str(name), configs) for name, configs in raw.items()}
    except (OSError, ValueError, AttributeError) as exc:  # SubscriptionError is a ValueError
        log.error("cannot read this broker's own client-metrics file (%s); not adopted", exc)
        return
    try:
        adopted = await broker.cluster.writes.adopt_client_metrics({n: c for n, c in kept.items() if c})
    except (CoordinationError, TimeoutError) as exc:
        log.warning("the client-metrics subscriptions of this broker's own file were not brought into "
                    "the cluster yet (%s); the next start tries again", exc)
        return
    os.replace(path, path.with_name(path.name + ".adopted"))
    if adopted:
        log.info("brought %d client-metrics subscription(s) from this broker's file into the cluster",
                 len(kept))
    else:
        log.info("the cluster adopted client-metrics subscriptions already; this broker's file is set aside")
