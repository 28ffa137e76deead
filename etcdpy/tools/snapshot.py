"""`etcdpy snapshot restore | status`, in the manner of etcdutl.

A snapshot file is what `etcdctl snapshot save` wrote from etcdpy: the backend (an LMDB file)
followed by the SHA-256 of it, as etcd's Snapshot stream ends.

restore makes a new data directory that starts a new cluster: the key space, leases and
revisions of the snapshot, no raft log, no cluster id, members or alarms (the member starts
with the given --name/--initial-cluster, which restore checks), and the consistent index reset
so that the new cluster's log applies from its first entry.

Messages are etcdctl 3.4's (``etcdctl snapshot restore|status``): its errors word for word, and
restore's ``restoring snapshot`` / ``restored snapshot`` log lines on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import lmdb

from etcdpy.config import ConfigError, go_quote, parse_initial_cluster
from etcdpy.gofmt import go_bytes, go_path_error, humanize_bytes
from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.kvstore import CONSISTENT_INDEX_KEY, KVStore

SHA_SIZE = hashlib.sha256().digest_size
COPY_CHUNK = 1 << 20


class SnapshotError(Exception):
    pass


def _has_hash(size: int) -> bool:
    # etcd's test: a database file is a whole number of 512-byte sectors; a trailing digest
    # makes it 32 bytes more.
    return size % 512 == SHA_SIZE


def _open(snapshot: Path) -> io.BufferedReader:
    try:
        return snapshot.open("rb")
    except OSError as exc:
        raise SnapshotError(go_path_error("open", exc)) from None


def _open_backend(db: Path) -> Backend:
    try:
        return Backend(db)
    except lmdb.Error:
        raise SnapshotError("invalid database") from None  # bbolt's word for a foreign file


def copy_verified(snapshot: Path, dest: Path, skip_hash_check: bool) -> int:
    """Copies the database part of ``snapshot`` to ``dest``; checks the trailing digest."""
    with _open(snapshot) as src, dest.open("wb") as out:
        size = os.fstat(src.fileno()).st_size
        has_hash = _has_hash(size)
        if not has_hash and not skip_hash_check:
            raise SnapshotError("snapshot missing hash but --skip-hash-check=false")
        db_size = size - SHA_SIZE if has_hash else size
        digest = hashlib.sha256()
        left = db_size
        while left > 0:
            chunk = src.read(min(COPY_CHUNK, left))
            if not chunk:
                raise SnapshotError(f"snapshot {snapshot} is truncated")
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
        trailer = src.read(SHA_SIZE) if has_hash else b""
    if has_hash and not skip_hash_check and digest.digest() != trailer:
        raise SnapshotError(f"expected sha256 {go_bytes(trailer)}, got {go_bytes(digest.digest())}")
    return db_size


def restore(
    snapshot: Path,
    data_dir: Path,
    name: str,
    initial_cluster: str,
    skip_hash_check: bool = False,
    started: Callable[[], None] | None = None,
) -> None:
    """``started`` is called once the arguments are checked, before any file is touched."""
    try:
        cluster = parse_initial_cluster(initial_cluster)
    except ConfigError as exc:
        raise SnapshotError(str(exc)) from None
    if name not in cluster:
        raise SnapshotError(
            f"couldn't find local name {go_quote(name)} in the initial cluster configuration"
        )
    if data_dir.exists():
        raise SnapshotError(f"data-dir {go_quote(str(data_dir))} exists")
    if started is not None:
        started()
    src = _open(snapshot)  # before anything is created: a missing file leaves no data dir
    src.close()
    snap_dir = data_dir / "member" / "snap"
    snap_dir.mkdir(parents=True)
    try:
        db = snap_dir / "db"
        copy_verified(snapshot, db, skip_hash_check)
        backend = _open_backend(db)
        try:
            with backend.batch() as tx:
                # The old cluster's id, members and alarms go: the member bootstraps a new
                # cluster from its --initial-cluster, as a fresh member does.
                for bucket in (bk.MEMBERS, bk.MEMBERS_REMOVED, bk.CLUSTER, bk.ALARM):
                    for key, _value in list(tx.items(bucket)):
                        tx.delete(bucket, key)
                tx.put(bk.META, CONSISTENT_INDEX_KEY, (0).to_bytes(8, "big"))
        finally:
            backend.close()
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise


def status(snapshot: Path) -> dict[str, int]:
    """etcdutl's snapshot status: hash, revision, total keys (every bucket), total size."""
    try:
        snapshot.stat()
    except OSError as exc:
        raise SnapshotError(go_path_error("stat", exc)) from None
    with tempfile.TemporaryDirectory(prefix="etcdpy-snapshot-") as tmp:
        db = Path(tmp) / "db"
        copy_verified(snapshot, db, skip_hash_check=True)
        backend = _open_backend(db)
        try:
            kv = KVStore(backend)
            h, rev = kv.hash()
            with backend.read() as tx:
                total_keys = sum(sum(1 for _ in tx.items(b)) for b in bk.BUCKETS)
            kv.close()
        finally:
            backend.close()
        return {
            "hash": h,
            "revision": rev,
            "totalKey": total_keys,
            "totalSize": db.stat().st_size,
        }


def _print_status(st: dict[str, int], write_out: str) -> None:
    if write_out == "json":
        print(json.dumps(st, separators=(",", ":")))
        return
    row = [
        f"{st['hash']:x}",
        str(st["revision"]),
        str(st["totalKey"]),
        humanize_bytes(st["totalSize"]),
    ]
    if write_out == "table":
        head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]
        widths = [max(len(a), len(b)) + 2 for a, b in zip(head, row, strict=True)]
        line = "+" + "+".join("-" * w for w in widths) + "+"
        print(line)
        print("|" + "|".join(h.center(w) for h, w in zip(head, widths, strict=True)) + "|")
        print(line)
        print("|" + "|".join(f" {c} ".rjust(w) for c, w in zip(row, widths, strict=True)) + "|")
        print(line)
        return
    print(", ".join(row))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="etcdpy snapshot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("restore", help="restore a snapshot into a new data directory")
    r.add_argument("filename", type=Path)
    r.add_argument("--data-dir", type=Path, default=None, help="default: <name>.etcd")
    r.add_argument("--name", default="default")
    r.add_argument("--initial-cluster", default="default=http://localhost:2380")
    r.add_argument("--initial-cluster-token", default="etcd-cluster")
    r.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380")
    r.add_argument("--skip-hash-check", action="store_true")
    s = sub.add_parser("status", help="hash, revision, keys and size of a snapshot file")
    s.add_argument("filename", type=Path)
    s.add_argument("-w", "--write-out", choices=("simple", "table", "json"), default="simple")
    args = parser.parse_args(list(argv))
    try:
        if args.command == "restore":
            data_dir = args.data_dir or Path(f"{args.name}.etcd")
            _restore_logged(args.filename, data_dir, args)
        else:
            _print_status(status(args.filename), args.write_out)
    except SnapshotError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Error: {go_path_error('', exc)}", file=sys.stderr)
        return 1
    return 0


def _restore_logged(snapshot: Path, data_dir: Path, args: argparse.Namespace) -> None:
    """restore, with etcdctl's two info lines on stderr around it."""
    from etcdpy.observability.logging import configure_logging, get_logger

    configure_logging()
    log = get_logger("etcdpy.tools.snapshot")
    fields = {
        "path": str(snapshot),
        "wal-dir": str(data_dir / "member" / "wal"),
        "data-dir": str(data_dir),
        "snap-dir": str(data_dir / "member" / "snap"),
    }
    restore(
        snapshot,
        data_dir,
        args.name,
        args.initial_cluster,
        args.skip_hash_check,
        started=lambda: log.info("restoring snapshot", **fields),
    )
    log.info("restored snapshot", **fields)
