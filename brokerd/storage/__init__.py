"""Partition logs on disk. Knows record batches and files, nothing of the wire protocol."""

from brokerd.storage.flush import Flusher
from brokerd.storage.log import LogSettings, OffsetOutOfRange, PartitionLog
from brokerd.storage.manager import LogManager, StorageError, Topic

__all__ = [
    "Flusher",
    "LogManager",
    "LogSettings",
    "OffsetOutOfRange",
    "PartitionLog",
    "StorageError",
    "Topic",
]
