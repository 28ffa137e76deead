"""etcd's multi-version key-value store (mvcc), as a pure library over LMDB.

May import: pb, etcdpy (nothing else: a pure library).
"""

from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.errors import (
    CompactedError,
    FutureRevError,
    MVCCError,
    RevisionNotFoundError,
    StoreClosedError,
    TxnInProgressError,
)
from etcdpy.mvcc.kvstore import KVStore, RangeResult, TxnWrite
from etcdpy.mvcc.revision import Revision

__all__ = [
    "Backend",
    "CompactedError",
    "FutureRevError",
    "KVStore",
    "MVCCError",
    "RangeResult",
    "Revision",
    "RevisionNotFoundError",
    "StoreClosedError",
    "TxnInProgressError",
    "TxnWrite",
]
