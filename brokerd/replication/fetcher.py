"""Follower fetchers: a broker copies the partitions it follows from their leaders with
Kafka's Fetch at v15 (ReplicaState: its node id and broker epoch, so that the leader adds
it back to an ISR only as the incarnation now registered, KIP-903), one task per leader.

Before fetching in a new leader epoch, a follower finds where its log and the leader's
diverge (OffsetForLeaderEpoch for its latest epoch, KIP-101/279) and truncates there, never
to its high watermark alone. Fetched batches are appended with the leader's offsets and
leader epochs unchanged, and each new epoch goes into the follower's epoch cache.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from typing import Any

from brokerd.kafka_configs import TOPIC_CONFIG_DEFS, ConfigError, throttled_replicas
from brokerd.protocol import kio_adapter
from brokerd.records import StampedBatch, iter_headers
from brokerd.replication.client import BrokerConnection, BrokerUnavailable

log = logging.getLogger("brokerd.replication")

MS = datetime.timedelta(milliseconds=1)
FETCH_VERSION = 15  # ReplicaState (KIP-903); topics by id (KIP-516)
EPOCH_VERSION = 4
RETRY_SECONDS = 0.2
THROTTLED_REPLICAS = "follower.replication.throttled.replicas"
RECONNECT_SECONDS = 0.01  # after a lost connection: a refusal now tells the leader died


class LeaderFetcher:
    """Fetches every partition this broker follows from one leader."""

    def __init__(self, manager: Any, leader_id: int) -> None:
        self.manager = manager
        self.leader_id = leader_id
        self.node_id = manager.node_id
        self.wake = asyncio.Event()
        self.conn: BrokerConnection | None = None
        self.synced_epochs: dict[tuple[str, int], int] = {}  # leader epoch truncation was done for
        # where a leader's batch straddled this log's end, by partition: (leader epoch, its base)
        self.diverged_at: dict[tuple[str, int], tuple[int, int]] = {}
        self._closing: asyncio.Future | None = None
        self._lost_last = False  # the last failure was a lost connection
        # when the connection to the leader broke or was refused, until a fetch succeeds again
        self.unreachable_since: float | None = None
        self.task = asyncio.create_task(self._run(), name=f"fetcher-{self.node_id}-from-{leader_id}")

    def cancel(self) -> None:
        self.task.cancel()  # the task closes its connection as it ends

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=5)

    def _connection(self) -> BrokerConnection | None:
        address = self.manager.leader_address(self.leader_id)
        if address is None:
            return None
        conn = self.conn
        if conn is None or (conn.host, conn.port, conn.sasl_plain, conn.ca_file) != address:
            if conn is not None:
                self._closing = asyncio.ensure_future(conn.close())
            self.conn = BrokerConnection(
                address.host,
                address.port,
                client_id=f"brokerd-{self.node_id}-replica",
                sasl_plain=address.sasl_plain,
                ca_file=address.ca_file,
            )
        return self.conn

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            if self.conn is not None:
                await self.conn.close()

    async def _loop(self) -> None:
        while True:
            partitions = self.manager.followed_from(self.leader_id)
            conn = self._connection()
            if not partitions or conn is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                for key, state in partitions.items():
                    if self.synced_epochs.get(key) == state.leader_epoch:
                        continue
                    if await self._truncate(conn, key, state):
                        self.synced_epochs[key] = state.leader_epoch
                await self._fetch(conn)
                self._lost_last = False
                if self.unreachable_since is not None:
                    self.unreachable_since = None
                    self.manager.leader_reachability_changed()
            except BrokerUnavailable as exc:
                log.debug("fetch from broker %d: %s", self.leader_id, exc)
                if (exc.lost or exc.refused) and self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
                    self.manager.leader_reachability_changed()
                if exc.refused:
                    self.manager.leader_refused(self.leader_id)
                # Reconnect at once after a connection broke (once: a leader that keeps
                # closing connections is retried at the normal pace).
                reconnect_now = exc.lost and not self._lost_last
                self._lost_last = exc.lost
                await asyncio.sleep(RECONNECT_SECONDS if reconnect_now else RETRY_SECONDS)
                continue
            except Exception:  # a bug in one round must not stop replication for good
                log.exception("follower fetch from broker %d failed", self.leader_id)
                await asyncio.sleep(RETRY_SECONDS)

    async def _truncate(self, conn: BrokerConnection, key: tuple[str, int], state) -> bool:
        """Truncate where this log and the leader's diverge; False when the partition moved on
        while the leader was asked (it is tried again in its new state)."""
        name, index = key
        plog = self.manager.broker.logs.log(name, index)
        cache = self.manager.epoch_cache(name, index)
        if plog is None or cache is None:
            return True
        latest = cache.latest_epoch
        if latest < 0:
            if plog.next_offset > plog.start_offset:
                # Data without epochs: nothing tells where it diverges, so copy it all again.
                self.manager.broker.logs.truncate(plog, plog.start_offset)
                self.manager.broker.producers.truncated(plog)
            return True
        mod = kio_adapter.request_module(23, EPOCH_VERSION)
        request = kio_adapter.request_class(23, EPOCH_VERSION)(
            replica_id=self.node_id,
            topics=(
                mod.OffsetForLeaderTopic(
                    topic=name,
                    partitions=(
                        mod.OffsetForLeaderPartition(
                            partition=index, current_leader_epoch=state.leader_epoch, leader_epoch=latest
                        ),
                    ),
                ),
            ),
        )
        log_end = plog.next_offset
        answer = (await conn.request(request)).topics[0].partitions[0]
        if answer.error_code:
            raise BrokerUnavailable(f"OffsetForLeaderEpoch {name}-{index}: error {answer.error_code}")
        now = self.manager.membership.view.state.partitions.get(key)
        if (
            now is None
            or (now.leader, now.leader_epoch) != (self.leader_id, state.leader_epoch)
            or self.manager.broker.logs.log(name, index) is not plog
            or (plog.next_offset, cache.latest_epoch) != (log_end, latest)
        ):
            return False  # this broker may lead the partition now: its log is not to be cut
        if answer.leader_epoch < 0:
            end = plog.start_offset  # the leader knows none of our epochs
        elif answer.leader_epoch == latest:
            end = answer.end_offset
        else:  # our logs agree up to the end of an older epoch: where ours ended it, at most
            _epoch, ours = cache.end_offset_for(answer.leader_epoch, plog.next_offset)
            end = min(answer.end_offset, ours)
        diverged = self.diverged_at.pop(key, None)
        if diverged is not None and diverged[0] == state.leader_epoch:
            end = min(end, diverged[1])
        if end < plog.next_offset:
            log.info("%s-%d: truncating from %d to %d before following leader epoch %d",
                     name, index, plog.next_offset, end, state.leader_epoch)  # fmt: skip
            self.manager.broker.logs.truncate(plog, end)
            self.manager.broker.producers.truncated(plog)
        cache.truncate_from_end(plog.next_offset)
        return True

    async def _fetch(self, conn: BrokerConnection) -> None:
        mod = kio_adapter.request_module(1, FETCH_VERSION)
        cluster = self.manager.membership.view.state
        session = self.manager.membership.session
        if session is None or not session.epoch:
            await asyncio.sleep(RETRY_SECONDS)
            return
        topics: dict[str, list] = {}
        names: dict[uuid.UUID, str] = {}
        sent: dict[tuple[str, int], tuple[int, int, Any]] = {}  # leader epoch, fetch offset, log
        quota = self.manager.follower_quota
        hold = quota.exceeded()  # throttled replicas wait while their bytes are ahead of the rate
        throttled: set[tuple[str, int]] = set()
        held = False
        # What the view says now (truncation awaited the leader): a partition in a leader
        # epoch it has not been truncated for waits for the next round.
        for (name, index), state in self.manager.followed_from(self.leader_id).items():
            plog = self.manager.broker.logs.log(name, index)
            topic = cluster.topics.get(name)
            if plog is None or topic is None or self.synced_epochs.get((name, index)) != state.leader_epoch:
                continue
            if quota.limited and self._throttled(topic, index):
                if hold:
                    held = True
                    continue
                throttled.add((name, index))
            sent[(name, index)] = (state.leader_epoch, plog.next_offset, plog)
            names[uuid.UUID(topic.topic_id)] = name
            topics.setdefault(name, []).append(
                kio_adapter.build(
                    mod.FetchPartition,
                    partition=index,
                    current_leader_epoch=state.leader_epoch,
                    fetch_offset=plog.next_offset,
                    last_fetched_epoch=-1,
                    log_start_offset=plog.start_offset,
                    partition_max_bytes=min(8 << 20, quota.rate) if (name, index) in throttled else 8 << 20,
                )
            )
        if not topics:
            await asyncio.sleep(min(RETRY_SECONDS, quota.seconds_until_allowed()) if held else RETRY_SECONDS)
            return
        ids = {name: topic_id for topic_id, name in names.items()}
        request = kio_adapter.build(
            kio_adapter.request_class(1, FETCH_VERSION),
            replica_state=mod.ReplicaState(replica_id=self.node_id, replica_epoch=session.epoch),
            max_wait=500 * MS,
            min_bytes=1,
            max_bytes=32 << 20,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=tuple(mod.FetchTopic(topic_id=ids[n], partitions=tuple(p)) for n, p in topics.items()),
            forgotten_topics_data=(),
            rack_id="",
        )
        response = await conn.request(request, timeout=10)
        backoff = False
        for topic in response.responses:
            name = names.get(topic.topic_id)
            for part in topic.partitions:
                if part.error_code or name is None:
                    backoff = True  # a leadership change the view has not shown yet, most often
                    continue
                if not self._still_fetching((name, part.partition_index), sent):
                    continue
                if (name, part.partition_index) in throttled:
                    quota.record(len(part.records or b""))
                try:
                    self.manager.follower_append(name, part.partition_index, part.records or b"",
                                                 part.high_watermark, part.log_start_offset)  # fmt: skip
                except StraddlingBatch as exc:
                    self._diverged((name, part.partition_index), sent[(name, part.partition_index)][0], exc)
        if backoff:
            await asyncio.sleep(RETRY_SECONDS)

    def _diverged(self, key: tuple[str, int], leader_epoch: int, exc: StraddlingBatch) -> None:
        """The leader's answer shows this log diverged from its own: nothing of it is appended,
        and the partition goes through truncation again before its next fetch, cut at the
        latest to where the leader's straddling batch begins (the leader holds that batch, so
        the follower copies it whole, and never skips past records it lacks)."""
        log.warning("%s-%d: the fetch answer from broker %d in leader epoch %d has %s: the logs "
                    "diverged; truncating again before fetching", key[0], key[1], self.leader_id,
                    leader_epoch, exc)  # fmt: skip
        self.synced_epochs.pop(key, None)
        self.diverged_at[key] = (leader_epoch, exc.base)

    def _throttled(self, topic, index: int) -> bool:
        """Whether this broker's replica of the partition is throttled (the topic's
        follower.replication.throttled.replicas names it, or is '*')."""
        raw = topic.configs.get(THROTTLED_REPLICAS)
        if not raw:
            return False
        try:
            pairs = throttled_replicas(TOPIC_CONFIG_DEFS[THROTTLED_REPLICAS].parse(raw))
        except ConfigError:
            return False
        return pairs is None or (index, self.node_id) in pairs

    def _still_fetching(self, key: tuple[str, int], sent: dict) -> bool:
        """Whether an answer may be appended: the partition is still followed from this leader
        in the leader epoch the fetch named, and its log still ends where the fetch started.
        The view moves on while a fetch is out (the controller moves a dead leader's
        partitions one by one, so this fetcher outlives some of them): this broker may lead the
        partition now and have appended to it, or have truncated it for a new leader epoch,
        and what the old leader sent would land at the wrong offsets (Kafka's fetcher drops
        such answers the same way)."""
        if key not in sent:
            return False
        epoch, fetch_offset, plog = sent[key]
        state = self.manager.membership.view.state.partitions.get(key)
        if (
            state is None
            or state.leader != self.leader_id
            or state.leader_epoch != epoch
            or self.synced_epochs.get(key) != epoch
            or self.manager.broker.logs.log(*key) is not plog
            or plog.next_offset != fetch_offset
        ):
            log.info("%s-%d: dropping a fetch answer from broker %d for leader epoch %d at offset %d: "
                     "the partition moved on meanwhile", key[0], key[1], self.leader_id, epoch,
                     fetch_offset)  # fmt: skip
            return False
        return True


class StraddlingBatch(Exception):
    """A fetched batch starts below the follower's log end and runs past it. In logs that agree
    the follower's end is a batch boundary of the leader's log, so the two logs diverged
    (Kafka's follower append fails the same way, UnexpectedAppendOffsetException): appending
    the batches after it would leave a hole, skipping it would lose its records."""

    def __init__(self, base: int, last: int, epoch: int, log_end: int) -> None:
        super().__init__(f"batch {base}-{last} of leader epoch {epoch} straddles the log end {log_end}")
        self.base, self.last, self.epoch, self.log_end = base, last, epoch, log_end


def batches_of(
    records: bytes, next_offset: int
) -> tuple[bytes, list[StampedBatch], int, list[tuple[int, int]]]:
    """The whole batches of a fetched ``records`` that start at or after ``next_offset``: (their
    bytes, the batches as the log appends them, how far they move the log end, and each
    batch's (leader epoch, base offset)). Raises StraddlingBatch for a batch that starts
    below ``next_offset`` and ends at or past it."""
    batches: list[StampedBatch] = []
    epochs: list[tuple[int, int]] = []
    start = end = None
    last = next_offset - 1
    view = memoryview(records)
    for pos, base, size, last_offset, max_ts, _attrs in iter_headers(view):
        if last_offset < next_offset:
            continue  # wholly here already (a fetch that raced an append); never rewritten
        if base < next_offset:
            epoch = int.from_bytes(view[pos + 12 : pos + 16], "big", signed=True)
            raise StraddlingBatch(base, last_offset, epoch, next_offset)
        if start is None:
            start = pos
        end = pos + size
        batches.append(StampedBatch(base, size, max_ts))
        epochs.append((int.from_bytes(view[pos + 12 : pos + 16], "big", signed=True), base))
        last = last_offset
    data = bytes(view[start:end]) if start is not None else b""
    return data, batches, last + 1 - next_offset, epochs
