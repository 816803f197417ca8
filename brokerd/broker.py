"""The broker: its subsystems, built explicitly by :meth:`Broker.start`, and the process lifecycle.

Handlers reach the subsystems as typed attributes of the broker (``ctx.broker``); each subsystem
has one owner module and knows nothing of the wire:

====================  =================================================  =====================
attribute             what                                               module
====================  =================================================  =====================
``configs``           Kafka broker configs, topic-config defaults        brokerd/kafka_configs.py
``logs``              partition logs, retention, DeleteRecords           brokerd/storage/
``flusher``           the group fsync (acks=all, the usage journal)      brokerd/storage/flush.py
``credentials``       SCRAM credentials, reloaded when the file changes  brokerd/auth.py
``tls``               the SASL_SSL certificate (None without one)        brokerd/tls.py
``metering``          usage journal and Prometheus metrics               brokerd/metering.py
``quotas``            client quotas and connection limits                brokerd/quotas.py
``authorizer``        ACLs (None when authorizer.enable is false)        brokerd/acls.py
``producers``         idempotent-producer ids and sequences              brokerd/idempotence.py
``internal_topics``   internal topics: creation, appends as the leader     brokerd/coordination/
``groups``            the group coordinator and committed offsets        brokerd/groups/
``transactions``      the transaction coordinator (its partitions)       brokerd/txn/
``cleaner``           compaction of compacted topics (threads)           brokerd/storage/cleaner.py
``cluster``           membership of an etcd cluster (None: alone)        brokerd/replication/
``replicas``          which partitions this broker leads (None: all)     brokerd/replication/
====================  =================================================  =====================
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brokerd.acls import Authorizer
from brokerd.admin_http import AdminServer
from brokerd.api import ApiSpec, version_table
from brokerd.auth import CredentialStore
from brokerd.coordination.internal_topics import (
    OFFSETS,
    TRANSACTIONS,
    CoordinatorLoader,
    InternalTopics,
    partition_for,
)
from brokerd.durable import atomic_write, atomic_write_json
from brokerd.groups import GroupConfig, GroupCoordinator, OffsetsStore
from brokerd.groups.config import KAFKA_NAMES
from brokerd.groups.coordinator import OFFSETS_DIR
from brokerd.groups.metrics import GroupsCollector
from brokerd.groups.topic_store import OffsetsTopicStore
from brokerd.handlers import APIS, api_versions
from brokerd.idempotence import ProducerState
from brokerd.kafka_configs import BrokerConfigs, TopicConfig, static_from_settings
from brokerd.metering import Metering
from brokerd.protocol import kio_adapter
from brokerd.quotas import Quotas
from brokerd.schemas import SchemaIds
from brokerd.server import Connection, start_listener
from brokerd.settings import Listener, Settings
from brokerd.shutdown import end_remaining_tasks
from brokerd.storage import Flusher, LogManager, LogSettings, PartitionLog, StorageError, Topic
from brokerd.storage.cleaner import CleanerConfig, LogCleaner
from brokerd.storage.compaction import bounded_decompress
from brokerd.telemetry import ClientTelemetry, SubscriptionStore
from brokerd.txn import TransactionCoordinator, TxnConfig
from brokerd.txn.coordinator import STATE_APPEND_TIMEOUT_S
from brokerd.txn.markers import MarkerSender
from brokerd.txn.verification import TxnVerifier

if TYPE_CHECKING:
    from brokerd.replication.membership import ClusterMembership
    from brokerd.replication.replicas import ReplicaManager
    from brokerd.tls import TlsContext

log = logging.getLogger("brokerd")

#: Tests only: drop the connection after every Nth idempotent append (brokerd/idempotence.py).
FAULT_SETTING = "test.fault.produce.drop.after.append"


class StartupError(Exception):
    """Fatal start-up problem; the message is one line for the operator."""


#: The most a telemetry push may decompress to (its compressed size is capped at 1 MiB).
TELEMETRY_DECOMPRESSED = 16 * 1024 * 1024


class Broker:
    """One broker process. Subsystems are ``None`` until :meth:`start` builds them."""

    def __init__(self, config: Settings) -> None:
        self.config = config  # process settings (brokerd/settings.py)
        self.node_id: int = config["node.id"]
        self.cluster_id = ""
        self.apis: dict[int, ApiSpec] = APIS
        self.api_table = tuple(version_table(APIS))
        self.logs = LogManager(
            config["data.dir"],
            LogSettings(index_interval_bytes=config["log.index.interval.bytes"]),
            topic_settings=self._topic_log_settings,
        )
        # schema ids read from the local `_schemas` log, for topics validating them (brokerd/schemas.py)
        self.schemas = SchemaIds(self.logs)
        self.credentials = CredentialStore(config["credentials.file"])
        self.credentials.on_removed.append(self._close_principals)
        self.configs: BrokerConfigs | None = None
        self.flusher: Flusher | None = None
        self.tls: TlsContext | None = None
        self.metering: Metering | None = None
        self.quotas: Quotas | None = None
        self.authorizer: Authorizer | None = None
        self.producers: ProducerState | None = None
        self.groups: GroupCoordinator | None = None
        self.telemetry: ClientTelemetry | None = None
        self.transactions: TransactionCoordinator | None = None
        # internal topics (__consumer_offsets): created on first need, written by the coordinators
        # that run on their partitions' leaders (the group coordinator through group_loader)
        self.internal_topics = InternalTopics(self)
        self.group_loader: CoordinatorLoader | None = None
        self.txn_loader: CoordinatorLoader | None = None
        self.txn_markers: MarkerSender | None = None  # the coordinator's markers to partition leaders
        self.txn_verifier: TxnVerifier | None = None  # a leader's question: is this partition in the txn?
        self.cleaner: LogCleaner | None = None
        # The replica manager's seat: alone (no coordination), a broker leads every partition it
        # has and this stays None; in a cluster, brokerd/replication/replicas.py fills it (local
        # logs follow etcd's assignment; who leads what).
        self.replicas: ReplicaManager | None = None
        # brokerd/replication/membership.py: the cluster this broker joined (coordination set), else None.
        self.cluster: ClusterMembership | None = None
        self.connections: set[Connection] = set()
        self.metadata_cache: dict[Any, Any] = {}
        self.servers: list[tuple[Listener, asyncio.AbstractServer, int]] = []
        self.admin = AdminServer()
        self.admin.routes["/healthz"] = self._healthz
        self.admin_port: int | None = None
        self.serving = False
        self._tasks: list[asyncio.Future] = []
        self._stop = asyncio.Event()
        self.stuck_tasks: list[asyncio.Task] = []  # what did not end when the stop cancelled it
        self._flex_resp: dict[tuple[int, int], bool] = {}
        self.on_serving: list = []  # callables run once the broker serves

    # --- what handlers and connections ask of the broker itself -------------------------------
    def advertised(self, listener: Listener, bound_port: int) -> tuple[str, int]:
        host = self.config["advertised.host"] or listener.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return host, bound_port

    def cluster_brokers(
        self, listener: Listener, bound_port: int, *, departed: bool = False
    ) -> list[tuple[int, str, int, str | None]]:
        """(node id, host, port, rack) of every broker a client may use on this listener; with
        ``departed``, brokers that left the cluster a moment ago too (see ClusterMembership)."""
        if self.cluster is None:
            host, port = self.advertised(listener, bound_port)
            return [(self.node_id, host, port, self.config["broker.rack"] or None)]
        brokers = self.cluster.brokers(listener.name, departed=departed)
        return [(b.node_id, b.host, b.port, b.rack) for b in brokers]

    def controller_id(self) -> int:
        return self.node_id if self.cluster is None else self.cluster.controller_id()

    def response_header_flexible(self, api_key: int, version: int) -> bool:
        key = (api_key, version)
        value = self._flex_resp.get(key)
        if value is None:
            value = self._flex_resp[key] = kio_adapter.is_flexible_response(api_key, version)
        return value

    def api_versions_unsupported(self) -> bytes:
        return api_versions.unsupported_body(self.api_table)

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str], topic_id: uuid.UUID | None = None
    ) -> Topic:
        return self.logs.create_topic(name, partitions, configs, topic_id)

    def delete_topic(self, name: str) -> None:
        self.logs.delete_topic(name)

    @property
    def _clustered(self) -> bool:
        """Started with coordination: topic configs, ACLs and quotas are the cluster's, in etcd."""
        return getattr(self.config, "coordination", None) is not None

    def _topic_log_settings(self, overrides: dict[str, str]) -> dict[str, Any]:
        assert self.configs is not None, "broker configs load before storage"
        return TopicConfig(self.configs, overrides).log_values()

    def _close_principals(self, principals: set[str]) -> None:
        for conn in list(self.connections):
            if conn.principal in principals:
                conn.close(f"credentials of {conn.principal} were removed, changed or expired")

    def _healthz(self) -> tuple[int, str, bytes]:
        if self.serving and (self.cluster is None or self.cluster.ready):
            return 200, "text/plain", b"ok\n"
        if self.serving:  # registered with etcd and caught up with its metadata only when ready
            return 503, "text/plain", b"joining the cluster\n"
        return 503, "text/plain", b"starting\n"

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Build every subsystem, in dependency order, then open the listeners."""
        t0 = time.monotonic()
        cfg = self.config
        data_dir = Path(cfg["data.dir"])
        try:
            self.logs.lock()
            self.cluster_id = self.logs.meta(cfg["cluster.id"], self.node_id)
            self.configs = BrokerConfigs(
                static_from_settings(cfg), node_id=self.node_id,
                state_path=data_dir / "configs" / "broker.json",
            )  # fmt: skip
            self.logs.load()
        except (StorageError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"cannot open data directory {cfg['data.dir']}: {exc}") from None
        try:
            self.credentials.load_initial()
        except (OSError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        self._start_tls()
        self.flusher = Flusher(cfg["log.flush.group.window.ms"], cfg["test.flush.journal"])
        self.logs.on_close_segments = self.flusher.close_later
        try:
            self.metering = Metering(data_dir, self.logs)
            self.metering.recover()
            self.quotas = Quotas(self.configs, self.metering.metrics, settings=cfg,
                                 data_dir=None if self._clustered else data_dir)
        except (OSError, ValueError) as exc:
            raise StartupError(f"metering and quota state: {exc}") from None
        self.flusher.pre_sync.append(self.metering.fsync_fds)  # usage journal fsynced first
        self.admin.routes["/metrics"] = self.metering.metrics_route
        self._start_authorizer()
        self._start_groups_and_producers()
        self._start_telemetry(data_dir)
        self._start_transactions()
        self._start_cleaner()
        await self._start_listeners()
        self._describe_started()
        self._write_runtime_files()
        await self._start_cluster()
        for _listener, server, _port in self.servers:  # clients only once ACLs and quotas are known
            await server.start_serving()
        if self.groups is not None and self.groups.legacy is not None:
            self.internal_topics.ensure(OFFSETS)  # where the former offsets file's groups go
        self.internal_topics.notify()
        interval = cfg["credentials.poll.ms"] / 1000
        if self.credentials.path:
            self._tasks.append(asyncio.ensure_future(self.credentials.watch(interval)))
        self._tasks.append(asyncio.ensure_future(self._idle_sweeper()))
        self._tasks.append(asyncio.ensure_future(self._housekeeping()))
        self.serving = True
        for callback in self.on_serving:
            callback()
        partitions = self.logs.partition_count()
        log.info(
            "brokerd node %d of cluster %s serving %d topic(s), %d partition(s) (%s start, %.0f ms, %s loop)",
            self.node_id, self.cluster_id, len(self.logs.topics), partitions,
            "clean" if self.logs.clean_start else "recovered", (time.monotonic() - t0) * 1000,
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )

    async def _start_cluster(self) -> None:
        """With coordination set: register in etcd, follow the cluster's metadata, and stand
        for controller. Runs once the listeners are bound (their ports are registered)."""
        cfg = self.config
        if getattr(cfg, "coordination", None) is None:
            return
        from brokerd.coordination.controller import LeaderRebalance
        from brokerd.coordination.records import Endpoint
        from brokerd.replication.membership import ClusterMembership, MembershipError

        endpoints = []
        for listener, _server, port in self.servers:
            host, port = self.advertised(listener, port)
            endpoints.append(Endpoint(listener.name, host, port, listener.name))
        try:
            self.cluster = ClusterMembership(
                cfg.coordination,
                node_id=self.node_id,
                rack=cfg["broker.rack"] or None,
                user=cfg["coordination.user"] or None,
                password_file=cfg["coordination.password.file"],
                session_timeout_ms=cfg["broker.session.timeout.ms"],
                heartbeat_interval_ms=cfg.heartbeat_interval_ms(),
                leader_rebalance=LeaderRebalance(
                    enabled=cfg["auto.leader.rebalance.enable"],
                    interval_s=cfg["leader.imbalance.check.interval.seconds"],
                    percentage=cfg["leader.imbalance.per.broker.percentage"],
                ),
            )
            self.cluster.on_change.append(self.metadata_cache.clear)
            await self.cluster.start(endpoints, timeout=cfg["coordination.start.timeout.ms"] / 1000)
        except MembershipError as exc:
            raise StartupError(str(exc)) from None
        self.cluster_id = self.cluster.cluster_id or self.cluster_id
        if self.producers is not None:  # producer ids unique across the cluster
            self.producers.ids = await self.cluster.start_producer_ids(floor=self.producers.ids.reserved)
        from brokerd.replication.replicas import ReplicaManager

        self.replicas = ReplicaManager(self, self.cluster)
        self.replicas.on_sync.append(self.internal_topics.notify)
        self.replicas.start()
        from brokerd.cluster_metadata import MetadataFollower, adopt_client_metrics_file, adopt_local_files

        await adopt_local_files(self)
        await adopt_client_metrics_file(self)
        follower = MetadataFollower(self, self.cluster.view)
        follower.start()
        # An authorizer without the cluster's bindings would deny every tenant request (or
        # allow them all with allow.everyone.if.no.acl.found): the listeners stay closed until
        # the cluster's ACLs, quotas and topic configs are applied here.
        timeout = cfg["coordination.start.timeout.ms"] / 1000
        try:
            await asyncio.wait_for(follower.loaded.wait(), timeout)
        except TimeoutError:
            raise StartupError(
                f"the cluster metadata (ACLs, quotas, topic configs) was not read from etcd within "
                f"{timeout:g} s; check that etcd runs"
            ) from None
        self.metadata_cache.clear()

    def _start_tls(self) -> None:
        """The SASL_SSL listener's certificate, reloaded when its files change."""
        if not any(listener.tls for listener in self.config.listeners):
            return
        from brokerd.tls import (  # only SASL_SSL brokers pay for ssl
            TlsContext,
            TlsError,
        )

        cfg = self.config
        try:
            tls = self.tls = TlsContext(cfg["tls.cert.file"], cfg["tls.key.file"], cfg["tls.min.version"])
        except TlsError as exc:
            raise StartupError(str(exc)) from None
        self._tasks.append(asyncio.ensure_future(tls.watch(cfg["tls.poll.ms"] / 1000)))

    def _start_authorizer(self) -> None:
        """Load the ACLs when authorizer.enable is true (super.users bypass them)."""
        if not self.config["authorizer.enable"]:
            return
        assert self.configs is not None
        super_users = self.configs.super_users
        try:
            self.authorizer = Authorizer(  # a cluster's ACLs are in etcd (brokerd/cluster_metadata.py)
                None if self._clustered else os.path.join(self.config["data.dir"], "acls.json"),
                super_users=super_users,
                allow_if_no_acl=self.config["allow.everyone.if.no.acl.found"],
            )
        except (OSError, ValueError, TypeError) as exc:
            raise StartupError(f"ACL store: {exc}") from None
        self.metadata_cache.clear()
        log.info("authorizer enabled: %d ACL(s), super users: %s", len(self.authorizer.acls),
                 ", ".join(sorted(super_users)) or "none")

    def _start_groups_and_producers(self) -> None:
        """Load idempotent-producer state (replaying the logs), groups and committed offsets."""
        settings = {name: self.config.get(name) for name in KAFKA_NAMES}
        try:
            group_config = GroupConfig.from_settings({k: v for k, v in settings.items() if v is not None})
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        data_dir = self.logs.data_dir
        try:
            self.producers = ProducerState(
                data_dir, expiration_ms=group_config.producer_id_expiration_ms,
                fault_every=int(self.config.get(FAULT_SETTING) or 0),
            )  # fmt: skip
            self.producers.start(self.logs.all_logs())
            self._start_group_coordinator(data_dir, group_config)
        except (OSError, ValueError) as exc:
            raise StartupError(f"group coordinator state: {exc}") from None
        assert self.metering is not None
        logs = self.logs

        def end_offset(topic: str, partition: int) -> int | None:
            plog = logs.log(topic, partition)
            return None if plog is None else plog.next_offset

        self.metering.metrics.registry.register(GroupsCollector(self.groups, end_offset))

    def _start_telemetry(self, data_dir: Path) -> None:
        """Client-metrics subscriptions (client-metrics.json) and the series clients push (KIP-714)."""
        try:
            subscriptions = SubscriptionStore(data_dir)
        except (OSError, ValueError) as exc:
            raise StartupError(f"client-metrics subscriptions: {exc}") from None
        # pushes decompress within a bound: a small push must not make the broker allocate gigabytes
        def decompress(codec: int, data: bytes) -> bytes:
            return bounded_decompress(codec, data, TELEMETRY_DECOMPRESSED)

        self.telemetry = ClientTelemetry(subscriptions, decompress=decompress)
        telemetry = self.telemetry

        def route() -> tuple[int, str, bytes]:
            body = json.dumps({"node_id": self.node_id, "clients": telemetry.snapshot()})
            return 200, "application/json", body.encode()

        self.admin.routes["/telemetry"] = route

    def _topics_for_assignment(self) -> dict[str, tuple[uuid.UUID, int]]:
        """Topic name -> (topic id, partition count): what consumer-protocol assignors divide."""
        if self.replicas is not None:
            return {name: (tid, len(rows)) for name, (tid, rows) in self.replicas.topics().items()}
        return {name: (t.id, len(t.partitions)) for name, t in self.logs.topics.items()}

    def _start_transactions(self) -> None:
        """The transaction coordinator: it coordinates the transactional ids of the partitions
        of ``__transaction_state`` this broker leads (all of them alone), loaded from their
        logs when leadership arrives."""
        assert self.producers is not None and self.groups is not None and self.flusher is not None
        self.producers.log_of = self.logs.log
        cfg = self.config
        topics = self.internal_topics
        timeout = STATE_APPEND_TIMEOUT_S

        def leader_epoch(partition: int) -> int:
            return self.txn_loader.epochs.get(partition, -1) if self.txn_loader else -1

        def append(partition: int, records: list) -> asyncio.Future:
            return topics.append(TRANSACTIONS.name, partition, records, leader_epoch=leader_epoch(partition),
                                 timeout=timeout)  # fmt: skip

        config = TxnConfig(
            max_timeout_ms=cfg["transaction.max.timeout.ms"],
            abort_interval_ms=cfg["transaction.abort.timed.out.transaction.cleanup.interval.ms"],
            id_expiration_ms=cfg["transactional.id.expiration.ms"],
            offsets_partitions=cfg["offsets.topic.num.partitions"],
        )
        self.txn_markers = MarkerSender(self)
        self.txn_verifier = TxnVerifier(self)
        self.transactions = TransactionCoordinator(
            producers=self.producers, groups=self.groups, config=config, append=append,
            send_markers=self.txn_markers.send,
            partition_count=lambda: topics.partition_count(TRANSACTIONS.name),
            offsets_partition_count=lambda: topics.partition_count(OFFSETS.name),
            leader_epoch=lambda partition: max(leader_epoch(partition), 0),
            ensure_topic=lambda: topics.ensure(TRANSACTIONS),
        )  # fmt: skip
        try:
            self.transactions.start()
        except (OSError, ValueError) as exc:
            raise StartupError(f"transaction coordinator state: {exc}") from None
        self.txn_loader = CoordinatorLoader(topics, TRANSACTIONS, self.transactions)

    def _start_group_coordinator(self, data_dir: str, group_config: GroupConfig) -> None:
        """The group coordinator over ``__consumer_offsets``: it serves the groups of the
        partitions this broker leads, loaded from their logs when leadership arrives."""
        topics = self.internal_topics
        timeout = self.config["offsets.commit.timeout.ms"] / 1000

        def partition_of(group_id: str) -> int:
            return partition_for(group_id, topics.partition_count(OFFSETS.name) or 1)

        def append(partition: int, records: list, producer: tuple[int, int] | None = None) -> asyncio.Future:
            epoch = self.group_loader.epochs.get(partition, -1) if self.group_loader else -1
            return topics.append(
                OFFSETS.name, partition, records, leader_epoch=epoch, timeout=timeout, producer=producer
            )

        self.groups = GroupCoordinator(
            data_dir, group_config, node_id=self.node_id, topics=self._topics_for_assignment,
            store=OffsetsTopicStore(partition_of, append), partition_of=partition_of,
        )  # fmt: skip
        legacy_store = OffsetsStore(Path(data_dir) / OFFSETS_DIR, fsync=False)
        if legacy_store.path.exists():  # groups kept in the broker's own file by earlier versions
            legacy = legacy_store.load()
            legacy_store.close_sync()
            if legacy.groups or legacy.offsets:
                self.groups.legacy = legacy
                self._tasks.append(asyncio.ensure_future(self._retire_legacy_offsets(legacy_store.path)))
            else:
                legacy_store.path.rename(legacy_store.path.with_name(legacy_store.path.name + ".imported"))
        self.groups.start_nowait()
        self.group_loader = CoordinatorLoader(topics, OFFSETS, self.groups)
        groups = self.groups

        def marker(plog: PartitionLog, producer_id: int, commit: bool, offset: int) -> None:
            # a marker in __consumer_offsets decides the offsets committed in the transaction
            if plog.topic == OFFSETS.name:
                groups.transaction_marker(plog.partition, producer_id, commit, offset)

        assert self.producers is not None
        self.producers.marker_listeners.append(marker)

    async def _retire_legacy_offsets(self, path: Path) -> None:
        """Once every group of the former offsets file is in __consumer_offsets (and acknowledged
        there), rename the file so that it is never imported again."""
        groups = self.groups
        assert groups is not None
        while groups.legacy is not None and (groups.legacy.groups or groups.legacy.offsets):
            await asyncio.sleep(1)
        await groups.store.flush()
        path.rename(path.with_name(path.name + ".imported"))
        groups.legacy = None
        log.info("the broker's former offsets file is in __consumer_offsets now; renamed it")

    def _start_cleaner(self) -> None:
        """The log cleaner's threads (compacted topics), with the producer state it keeps."""
        assert self.configs is not None and self.producers is not None and self.metering is not None
        configs = self.configs
        sequences = self.producers.sequences

        def config() -> CleanerConfig:
            return CleanerConfig(
                enable=configs.get("log.cleaner.enable"),
                threads=configs.get("log.cleaner.threads"),
                io_max_bytes_per_second=configs.get("log.cleaner.io.max.bytes.per.second"),
                dedupe_buffer_size=configs.get("log.cleaner.dedupe.buffer.size"),
                io_buffer_load_factor=configs.get("log.cleaner.io.buffer.load.factor"),
                backoff_ms=configs.get("log.cleaner.backoff.ms"),
                kill_at=self.config["test.cleaner.kill.at"],
            )

        logs = self.logs
        producers = self.producers

        def last_stable(plog: PartitionLog) -> int:
            # nothing at or past the LSO is cleaned: an open transaction's outcome is unknown
            hw = plog.next_offset
            if self.replicas is not None:
                led = self.replicas.high_watermark(plog.topic, plog.partition)
                hw = hw if led is None else led
            return producers.last_stable_offset(plog, hw)

        self.cleaner = LogCleaner(
            logs.all_logs,
            config,
            loop=asyncio.get_running_loop(),
            producer_last_offsets=lambda topic, partition: sequences.last_offsets((topic, partition)),
            uncleanable_bound=last_stable,
            aborted_transactions=producers.aborted_between,
            forget_aborted=producers.forget_aborted,
            close_segments=lambda segments: logs.on_close_segments(segments),  # as retention
            alive=lambda plog: logs.log(plog.topic, plog.partition) is plog,
        )
        self.metering.metrics.cleaner = self.cleaner
        self.cleaner.start()

    async def _start_listeners(self) -> None:
        cfg = self.config
        for listener in cfg.listeners:
            try:
                server = await start_listener(self, listener)
            except OSError as exc:
                url = f"{listener.name}://{listener.host}:{listener.port}"
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"listener {url}: port {listener.port} is already in use; stop the other process "
                        "or choose another port"
                    ) from None
                raise StartupError(f"listener {url}: cannot bind: {exc.strerror}; check the host") from None
            port = server.sockets[0].getsockname()[1]
            self.servers.append((listener, server, port))
            log.info("listening on %s://%s:%d", listener.name, listener.host, port)
        if cfg.admin:
            host, port = cfg.admin
            try:
                self.admin_port = await self.admin.start(host, port)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"admin listener {host}:{port}: port {port} is already in use; choose another port"
                    ) from None
                raise StartupError(f"admin listener {host}:{port}: cannot bind: {exc.strerror}") from None
            log.info("admin listener on http://%s:%d", host, self.admin_port)

    def _describe_started(self) -> None:
        """The broker configs DescribeConfigs reports as STATIC_BROKER_CONFIG once bound."""

        def url(name: str, host: str, port: int) -> str:
            return f"{name}://{f'[{host}]' if ':' in host else host}:{port}"

        self.configs.set_started({
            "listeners": ",".join(url(lis.name, lis.host, port) for lis, _s, port in self.servers),
            "advertised.listeners": ",".join(
                url(lis.name, *self.advertised(lis, port)) for lis, _s, port in self.servers),
            "log.dirs": os.path.abspath(self.logs.data_dir),
            "node.id": self.node_id,
        })

    def _write_runtime_files(self) -> None:
        doc = {
            "pid": os.getpid(),
            "listeners": {listener.name: port for listener, _s, port in self.servers},
            "admin": self.admin_port,
        }
        # They describe this process only: atomic (no torn reads), not worth an fsync.
        atomic_write_json(os.path.join(self.logs.data_dir, "listeners.json"), doc, durable=False)
        pidfile = self.config["pid.file"]
        if pidfile:
            atomic_write(pidfile, f"{os.getpid()}\n", durable=False)

    async def _idle_sweeper(self) -> None:
        idle = self.config["connections.max.idle.ms"] / 1000
        while True:
            await asyncio.sleep(min(idle / 2, 30))
            cutoff = time.monotonic() - idle
            for conn in list(self.connections):
                if conn.last_active < cutoff:
                    conn.close("idle for longer than connections.max.idle.ms")

    async def _housekeeping(self) -> None:
        """Size and time retention, and the usage journal's rotation, every retention check interval."""
        assert self.configs is not None and self.metering is not None
        while True:
            await asyncio.sleep(self.configs.get("log.retention.check.interval.ms") / 1000.0)
            try:
                self.logs.apply_retention()
                self.metering.housekeeping()
            except Exception:
                log.exception("retention pass failed")

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()
            self.stuck_tasks = await end_remaining_tasks()

    @staticmethod
    async def _bounded(what: str, stopping, timeout: float = 15.0) -> None:
        """A part that does not stop in time is left behind (the process exits anyway): a stop
        must end before a supervisor's SIGKILL, which would cost a recovery at the next start."""
        try:
            await asyncio.wait_for(stopping, timeout)
        except TimeoutError:
            log.warning("stopping: %s did not end within %.0f s; going on", what, timeout)

    async def stop(self) -> None:
        if self.cluster is not None and self.cluster.ready and self.config["controlled.shutdown.enable"]:
            # Leaderships (the group coordinators' with them) move to other in-sync replicas while
            # this broker still answers, so clients see NOT_LEADER_OR_FOLLOWER / NOT_COORDINATOR
            # and go to the new leaders, not a dead socket.
            started = time.monotonic()
            timeout = self.config["controlled.shutdown.timeout.ms"] / 1000
            try:
                moved = await asyncio.wait_for(self.cluster.controlled_shutdown(timeout), timeout + 1)
            except Exception as exc:  # etcd unreachable: stop anyway, as an uncontrolled stop
                log.warning("controlled shutdown failed: %s", exc)
                moved = False
            log.info("controlled shutdown: leaderships %s in %.0f ms", "moved" if moved else "not all moved",
                     (time.monotonic() - started) * 1000)  # fmt: skip
        self.serving = False
        if self.replicas is not None:
            await self._bounded("the replica manager", self.replicas.stop())
        if self.cluster is not None:  # leave first, so that leaderships move at once
            await self._bounded("leaving the cluster", self.cluster.stop())
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.cleaner is not None:  # a pass stops before its commit point, or completes its swap
            await asyncio.to_thread(self.cleaner.stop)
        for _listener, server, _port in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        for _listener, server, _port in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        await self.admin.close()
        if self.txn_loader is not None:
            await self.txn_loader.stop()
        if self.transactions is not None:
            await self.transactions.close()
        for channels in (self.txn_markers, self.txn_verifier):
            if channels is not None:
                await channels.close()
        if self.producers is not None:
            await self.producers.stop()
        if self.group_loader is not None:
            await self.group_loader.stop()
        if self.groups is not None:
            await self._bounded("the group coordinator", self.groups.close())
        if self.metering is not None:
            self.metering.close()
        if self.flusher is not None:
            self.flusher.close()
        if self.logs.locked:
            self.logs.close(clean=True)
        pidfile = self.config["pid.file"]
        if pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)
        log.info("brokerd stopped")
