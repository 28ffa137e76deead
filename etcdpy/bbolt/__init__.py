"""A reader of bbolt files (etcd's backend database and its ``etcdctl snapshot save`` files),
written from the format's facts in bbolt's Go source (page.go, db.go, bucket.go): the two meta
pages, branch and leaf pages, overflow pages, nested and inline buckets. Read-only; the file is
memory-mapped, never loaded whole. ``reader.py`` holds the code.

May import: nothing but the etcdpy package itself.
"""

from etcdpy.bbolt.reader import (
    BoltError,
    BoltFile,
    Bucket,
    has_sha256_trailer,
    strip_sha256_trailer,
    verify_sha256_trailer,
)

__all__ = [
    "BoltError",
    "BoltFile",
    "Bucket",
    "has_sha256_trailer",
    "strip_sha256_trailer",
    "verify_sha256_trailer",
]
