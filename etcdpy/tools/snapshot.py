"""`etcdpy snapshot restore | status`, in the manner of etcdutl.

A snapshot file is what `etcdctl snapshot save` wrote from etcdpy: the backend (an LMDB file)
followed by the SHA-256 of it, as etcd's Snapshot stream ends.

restore makes a new data directory that starts a new cluster: the key space, leases and
revisions of the snapshot, no raft log, no cluster id, members or alarms (the member starts
with the given --name/--initial-cluster, which restore checks), and the consistent index reset
so that the new cluster's log applies from its first entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

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


def copy_verified(snapshot: Path, dest: Path, skip_hash_check: bool) -> int:
    """Copies the database part of ``snapshot`` to ``dest``; checks the trailing digest."""
    size = snapshot.stat().st_size
    has_hash = _has_hash(size)
    if not has_hash and not skip_hash_check:
        raise SnapshotError("snapshot missing hash but --skip-hash-check=false")
    db_size = size - SHA_SIZE if has_hash else size
    digest = hashlib.sha256()
    with snapshot.open("rb") as src, dest.open("wb") as out:
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
        raise SnapshotError(
            f"expected sha256 {trailer.hex()}, got {digest.hexdigest()}: snapshot is corrupt"
        )
    return db_size


def _parse_cluster(text: str) -> dict[str, list[str]]:
    cluster: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise SnapshotError(f"invalid --initial-cluster entry {part!r}")
        cluster.setdefault(name, []).append(url)
    return cluster


def restore(
    snapshot: Path,
    data_dir: Path,
    name: str,
    initial_cluster: str,
    skip_hash_check: bool = False,
) -> None:
    cluster = _parse_cluster(initial_cluster)
    if name not in cluster:
        raise SnapshotError(
            f"couldn't find local name {name!r} in the initial cluster configuration"
        )
    if data_dir.exists():
        raise SnapshotError(f"data-dir {str(data_dir)!r} exists")
    snap_dir = data_dir / "member" / "snap"
    snap_dir.mkdir(parents=True)
    try:
        db = snap_dir / "db"
        copy_verified(snapshot, db, skip_hash_check)
        backend = Backend(db)
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
    with tempfile.TemporaryDirectory(prefix="etcdpy-snapshot-") as tmp:
        db = Path(tmp) / "db"
        copy_verified(snapshot, db, skip_hash_check=True)
        backend = Backend(db)
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


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def _print_status(st: dict[str, int], write_out: str) -> None:
    if write_out == "json":
        print(json.dumps(st, separators=(",", ":")))
        return
    row = [
        f"{st['hash']:x}",
        str(st["revision"]),
        str(st["totalKey"]),
        _human_bytes(st["totalSize"]),
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
            restore(args.filename, data_dir, args.name, args.initial_cluster, args.skip_hash_check)
            print(f"restored snapshot {args.filename} into {data_dir}", file=sys.stderr)
        else:
            _print_status(status(args.filename), args.write_out)
    except (SnapshotError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0
