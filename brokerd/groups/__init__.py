"""Group coordinator (classic protocol) and durable committed offsets.

Wire-independent: the handlers in ``brokerd/handlers/groups.py`` translate requests into calls on
:class:`GroupCoordinator` and its results back into responses.
"""

from brokerd.groups.config import GroupConfig
from brokerd.groups.coordinator import (
    CommitEntry,
    FetchedOffset,
    GroupCoordinator,
    GroupDescription,
    GroupListing,
    GroupMetrics,
    LeaveMemberResult,
    MemberDescription,
)
from brokerd.groups.group import GroupState, JoinMember, JoinResult, SyncResult
from brokerd.groups.store import OffsetAndMetadata, OffsetsStore, StoreError

__all__ = [
    "CommitEntry",
    "FetchedOffset",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupMetrics",
    "GroupState",
    "JoinMember",
    "JoinResult",
    "LeaveMemberResult",
    "MemberDescription",
    "OffsetAndMetadata",
    "OffsetsStore",
    "StoreError",
    "SyncResult",
]
