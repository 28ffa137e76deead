"""The one error hierarchy of the raft core.

Callers catch :class:`RaftError` (or a subclass) and map it to their own errors once, at the edge.
The messages match etcd's raft package, because operators grep logs for them.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error the raft core raises on purpose."""


class ProposalDroppedError(RaftError):
    """A proposal was not appended: no leader, a leader transfer, or the uncommitted limit."""

    def __init__(self, message: str = "raft proposal dropped") -> None:
        super().__init__(message)


class StepLocalMsgError(RaftError):
    """A local-only message (HUP, BEAT, ...) was given to ``RawNode.step``."""

    def __init__(self, message: str = "raft: cannot step raft local message") -> None:
        super().__init__(message)


class StepPeerNotFoundError(RaftError):
    """A response arrived from a node that is not in the configuration."""

    def __init__(self, message: str = "raft: cannot step as peer not found") -> None:
        super().__init__(message)


class CompactedError(RaftError):
    """The requested index is older than the first index kept in storage."""

    def __init__(self, message: str = "requested index is unavailable due to compaction") -> None:
        super().__init__(message)


class SnapOutOfDateError(RaftError):
    """The snapshot to apply or create is older than the one storage already has."""

    def __init__(
        self, message: str = "requested index is older than the existing snapshot"
    ) -> None:
        super().__init__(message)


class UnavailableError(RaftError):
    """The requested index is past the last index in storage."""

    def __init__(self, message: str = "requested entry at index is unavailable") -> None:
        super().__init__(message)


class SnapshotTemporarilyUnavailableError(RaftError):
    """The application cannot produce a snapshot right now; the leader retries later."""

    def __init__(self, message: str = "snapshot is temporarily unavailable") -> None:
        super().__init__(message)


class ConfigError(RaftError):
    """The raft configuration is invalid (raised by ``Config.validate``)."""
