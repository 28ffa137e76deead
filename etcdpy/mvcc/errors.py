"""Errors of the multi-version store.

The server maps them once, at the edge, to etcd's messages
(``etcdserver: mvcc: required revision has been compacted`` and
``etcdserver: mvcc: required revision is a future revision``).
"""

from __future__ import annotations


class MVCCError(Exception):
    """Base of every error raised by etcdpy.mvcc."""


class CompactedError(MVCCError):
    """The requested revision is older than the compacted revision."""

    def __init__(self, message: str = "mvcc: required revision has been compacted") -> None:
        super().__init__(message)


class FutureRevError(MVCCError):
    """The requested revision is newer than the current revision."""

    def __init__(self, message: str = "mvcc: required revision is a future revision") -> None:
        super().__init__(message)


class RevisionNotFoundError(MVCCError, KeyError):
    """The key has no live version at the requested revision."""


class StoreClosedError(MVCCError):
    """The store is closed, or was left unusable by a failed write transaction."""


class TxnInProgressError(MVCCError):
    """A second write transaction was opened while one is still open."""
