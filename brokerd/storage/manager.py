"""Topics and their partition logs under one data directory.

Layout::

    DATA_DIR/meta.properties          cluster.id and node.id (as Kafka keeps them)
    DATA_DIR/topics.json              durable topic metadata: name, id, partitions, configs
    DATA_DIR/log-start-offsets.json   log start offsets DeleteRecords moved inside a segment
    DATA_DIR/<topic>-<partition>/     segments: <base>.log, <base>.index, <base>.timeindex
    DATA_DIR/.clean-shutdown          present only between a clean stop and the next start
    DATA_DIR/.lock                    flock held while a broker uses the directory
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from brokerd.durable import atomic_write, atomic_write_json, fsync_dir
from brokerd.storage.log import LogSettings, PartitionLog

log = logging.getLogger("brokerd.storage")

TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")

class StorageError(Exception):
    pass


class DataDirLocked(StorageError):
    pass


def validate_topic_name(name: str) -> str | None:
    """An error message, or None if the name is legal."""
    if not name:
        return "Topic name is empty"
    if name in (".", ".."):
        return f"Topic name cannot be {name!r}"
    if not TOPIC_RE.match(name):
        return f"Topic name {name!r} is illegal: use up to 249 of [a-zA-Z0-9._-]"
    return None


@dataclass(slots=True)
class Topic:
    name: str
    id: uuid.UUID
    configs: dict[str, str]
    settings: LogSettings
    partitions: list[PartitionLog] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"id": str(self.id), "partitions": len(self.partitions), "configs": self.configs}


class LogManager:
    def __init__(
        self,
        data_dir: str,
        defaults: LogSettings,
        topic_settings: Callable[[dict[str, str]], dict[str, Any]] | None = None,
    ) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.defaults = defaults
        # A topic's configs -> the LogSettings values they give (the broker's topic-config
        # defaults under its overrides); None: every topic uses ``defaults``.
        self.topic_settings = topic_settings
        self.topics: dict[str, Topic] = {}
        self.by_id: dict[uuid.UUID, Topic] = {}
        self.generation = 0  # bumped on every topic change (metadata cache key)
        self._lock_fd = -1
        self.clean_start = False
        self.on_close_segments = None  # set by the flusher owner to defer fd closes

    # --- start / stop -------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        """Whether this process holds the data directory (between :meth:`lock` and :meth:`close`)."""
        return self._lock_fd >= 0

    def lock(self) -> None:
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.data_dir}: {exc.strerror}") from None
        if not os.access(self.data_dir, os.W_OK):
            raise StorageError(f"data directory {self.data_dir} is not writable; fix its permissions")
        fd = os.open(os.path.join(self.data_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.data_dir} is in use by another brokerd; "
                "stop it or use another --data-dir"
            ) from None
        self._lock_fd = fd

    def meta(self, cluster_id: str, node_id: int) -> str:
        """Read or create meta.properties; returns the cluster id."""
        path = os.path.join(self.data_dir, "meta.properties")
        props: dict[str, str] = {}
        if os.path.exists(path):
            with open(path) as fh:
                for line in fh:
                    key, sep, value = line.strip().partition("=")
                    if sep and not key.startswith("#"):
                        props[key] = value
        stored = props.get("cluster.id")
        if stored and cluster_id and stored != cluster_id:
            raise StorageError(
                f"data directory belongs to cluster {stored}, not {cluster_id}; use a fresh --data-dir"
            )
        cid = stored or cluster_id or _random_cluster_id()
        if not stored or props.get("node.id") != str(node_id):
            atomic_write(path, f"version=1\ncluster.id={cid}\nnode.id={node_id}\n")
        return cid

    def load(self) -> None:
        marker = os.path.join(self.data_dir, ".clean-shutdown")
        self.clean_start = os.path.exists(marker)
        for entry in os.scandir(self.data_dir):
            if entry.is_dir() and entry.name.endswith("-delete"):
                shutil.rmtree(entry.path, ignore_errors=True)
        path = os.path.join(self.data_dir, "topics.json")
        doc = {"topics": {}}
        if os.path.exists(path):
            with open(path) as fh:
                doc = json.load(fh)
        for name, info in doc.get("topics", {}).items():
            configs = dict(info.get("configs", {}))
            topic = Topic(name, uuid.UUID(info["id"]), configs, self.settings_for(configs))
            for p in range(int(info["partitions"])):
                topic.partitions.append(
                    PartitionLog.open(name, p, self._pdir(name, p), topic.settings, clean=self.clean_start)
                )
            self.topics[name] = topic
            self.by_id[topic.id] = topic
        self._load_start_offsets()
        if self.clean_start:
            os.unlink(marker)
            fsync_dir(self.data_dir)
        self.generation += 1

    def close(self, *, clean: bool) -> None:
        for topic in self.topics.values():
            for plog in topic.partitions:
                plog.active.seal()
                if clean:
                    for seg in plog.segments:
                        for fd in seg.fds():
                            os.fsync(fd)
                plog.close()
        if clean:
            with open(os.path.join(self.data_dir, ".clean-shutdown"), "w") as fh:
                fh.write("clean\n")
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(self.data_dir)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- topics -------------------------------------------------------------------------
    def settings_for(self, configs: dict[str, str]) -> LogSettings:
        settings = dataclasses.replace(self.defaults)
        if self.topic_settings is not None:
            for attr, value in self.topic_settings(configs).items():
                setattr(settings, attr, value)
        return settings

    def refresh_settings(self, topic: Topic) -> None:
        """Re-apply a topic's configs to its LogSettings, in place (its partitions share them)."""
        fresh = self.settings_for(topic.configs)
        for f in dataclasses.fields(LogSettings):
            setattr(topic.settings, f.name, getattr(fresh, f.name))

    def set_topic_configs(self, topic: Topic, configs: dict[str, str]) -> None:
        """Store a topic's config overrides durably and apply them."""
        topic.configs = dict(configs)
        self._save()
        self.refresh_settings(topic)

    def _pdir(self, name: str, partition: int) -> str:
        return os.path.join(self.data_dir, f"{name}-{partition}")

    def _save(self) -> None:
        doc = {"topics": {name: t.to_json() for name, t in self.topics.items()}}
        atomic_write_json(os.path.join(self.data_dir, "topics.json"), doc, indent=1, sort_keys=True)

    def refresh_all_settings(self) -> None:
        """The broker's topic-config defaults changed: re-apply every topic's configs."""
        for topic in self.topics.values():
            self.refresh_settings(topic)

    def partition_count(self) -> int:
        """Partitions of the tenant's topics: what a plan's partition cap counts. Internal topics
        (``__consumer_offsets``, ``__transaction_state``: Kafka names them with ``__``) are the
        cluster's own bookkeeping and do not count."""
        return sum(len(t.partitions) for name, t in self.topics.items() if not name.startswith("__"))

    def add_partitions(self, topic: Topic, count: int) -> None:
        """Grow ``topic`` to ``count`` partitions, durably (topics.json)."""
        for p in range(len(topic.partitions), count):
            pdir = self._pdir(topic.name, p)
            if os.path.exists(pdir):  # leftovers of a crash between mkdir and save
                shutil.rmtree(pdir)
            topic.partitions.append(PartitionLog.open(topic.name, p, pdir, topic.settings, clean=True))
        self._save()
        self.generation += 1

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def log(self, name: str, partition: int) -> PartitionLog | None:
        topic = self.topics.get(name)
        if topic is None or not 0 <= partition < len(topic.partitions):
            return None
        return topic.partitions[partition]

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: dict[str, str] | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> Topic:
        """``topic_id``: the cluster's id for the topic (a replica's copy keeps it), else a new one."""
        configs = dict(configs or {})
        topic = Topic(name, topic_id or uuid.uuid4(), configs, self.settings_for(configs))
        for p in range(partitions):
            pdir = self._pdir(name, p)
            if os.path.exists(pdir):  # leftovers of a crash between mkdir and save
                shutil.rmtree(pdir)
            topic.partitions.append(PartitionLog.open(name, p, pdir, topic.settings, clean=True))
        self.topics[name] = topic
        self.by_id[topic.id] = topic
        fsync_dir(self.data_dir)
        self._save()
        self.generation += 1
        log.info("created topic %s with %d partition(s)", name, partitions)
        return topic

    def delete_topic(self, name: str) -> None:
        topic = self.topics.pop(name)
        self.by_id.pop(topic.id, None)
        self._save()
        self.generation += 1
        suffix = uuid.uuid4().hex
        for plog in topic.partitions:
            plog.wake_waiters()
            segments = list(plog.segments)
            if self.on_close_segments is not None:
                self.on_close_segments(segments)
            else:
                for seg in segments:
                    seg.close()
            src = plog.dir
            if os.path.exists(src):
                os.rename(src, f"{src}.{suffix}-delete")
        for plog in topic.partitions:
            shutil.rmtree(f"{plog.dir}.{suffix}-delete", ignore_errors=True)
        log.info("deleted topic %s", name)

    def all_logs(self):
        for topic in self.topics.values():
            yield from topic.partitions

    # --- deleting from the head: retention and DeleteRecords -------------------------------
    def apply_retention(self, now_ms: int | None = None) -> int:
        """One pass of size and time retention over every partition; returns segments deleted."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        deleted = 0
        for topic in list(self.topics.values()):
            s = topic.settings
            for plog in topic.partitions:
                if plog.cleaning:
                    continue  # a cleaner pass owns the sealed segments; retention runs next time
                # cleanup.policy=compact alone keeps old segments (the cleaner shrinks them)
                n = plog.segments_to_retain_away(s.retention_ms, s.retention_bytes, now_ms) if s.delete else 0
                n = max(n, plog.advance_start_offset(plog.start_offset))  # DeleteRecords deferred
                if n:
                    deleted += self._delete_segments(plog, n)
        return deleted

    def delete_records(self, plog: PartitionLog, offset: int) -> int:
        """Move the log start offset up to ``offset`` (DeleteRecords); returns the low watermark."""
        if offset > plog.start_offset:
            n = plog.advance_start_offset(offset)
            self._save_start_offsets()
            if n and not plog.cleaning:  # else the next retention run deletes them
                self._delete_segments(plog, n)
        return plog.start_offset

    def truncate(self, plog: PartitionLog, offset: int) -> int:
        """Cut a partition's log back to ``offset`` (a follower's divergent tail); returns the
        new log end offset."""
        before = plog.next_offset
        self._drop_segments(plog.truncate_to(offset))
        if plog.next_offset < before:
            log.info("truncated %s-%d from %d to %d", plog.topic, plog.partition, before, plog.next_offset)
        return plog.next_offset

    def _drop_segments(self, doomed: list) -> None:
        if self.on_close_segments is not None:
            self.on_close_segments(doomed)  # in-flight reads and the flusher may still hold them
        else:
            for seg in doomed:
                seg.close()
        for seg in doomed:
            for path in (seg.path, seg.index_path, seg.timeindex_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _delete_segments(self, plog: PartitionLog, n: int) -> int:
        doomed = plog.detach_oldest_segments(n)
        if not doomed:
            return 0
        self._drop_segments(doomed)
        log.info("retention: deleted %d segment(s) of %s-%d; log start offset %d",
                 len(doomed), plog.topic, plog.partition, plog.start_offset)
        return len(doomed)

    def _start_offsets_path(self) -> str:
        return os.path.join(self.data_dir, "log-start-offsets.json")

    def _load_start_offsets(self) -> None:
        path = self._start_offsets_path()
        if not os.path.exists(path):
            return
        with open(path) as fh:
            saved = json.load(fh)
        for key, offset in saved.items():
            name, _, part = key.rpartition(":")
            plog = self.log(name, int(part))
            if plog is not None and plog.start_offset < offset <= plog.next_offset:
                plog.start_offset = offset

    def _save_start_offsets(self) -> None:
        doc = {
            f"{topic.name}:{plog.partition}": plog.start_offset
            for topic in self.topics.values()
            for plog in topic.partitions
            if plog.segments and plog.start_offset > plog.segments[0].base
        }
        atomic_write_json(self._start_offsets_path(), doc)


def _random_cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
