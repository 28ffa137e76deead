"""How long a defragmentation holds writes, for a database of --mib MiB.

Fills a KVStore, deletes half of the keys and compacts (so there is something to give back),
then defragments as the server does while a writer keeps putting: the compacted copy is written
in a thread, and the time writes are held (catch-up + file swap) is measured.

    python -m bench.defrag_hold --mib 1024
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.kvstore import KVStore
from etcdpy.server.ops.defrag import catch_up, copy_and_sync

VALUE = b"v" * 64 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--writes-per-second", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="defrag-bench-", dir="/tmp") as tmp:
        backend = Backend(Path(tmp) / "db", map_size=4 * args.mib * 1024**2 + 256 * 1024**2)
        kv = KVStore(backend)
        keys = args.mib * 1024 * 1024 // len(VALUE)
        t = time.perf_counter()
        for start in range(0, keys, 100):
            with kv.batch(), kv.write() as txn:
                for i in range(start, min(start + 100, keys)):
                    txn.put(b"key%08d" % i, VALUE)
        with kv.batch(), kv.write() as txn:
            for i in range(0, keys, 2):
                txn.delete_range(b"key%08d" % i)
        kv.compact(kv.current_revision)
        while kv.compaction_pending:
            kv.compaction_step()
        backend.sync()
        print(f"filled {backend.size() / 2**20:.0f} MiB in {time.perf_counter() - t:.1f}s")

        copy = Path(tmp) / "db.defrag"
        copy_started = time.perf_counter()
        copier = threading.Thread(target=copy_and_sync, args=(backend, copy))
        copier.start()
        written = 0
        small = b"w" * 1024
        while copier.is_alive():
            with kv.batch(), kv.write() as txn:
                txn.put(b"late%08d" % written, small)
            written += 1
            time.sleep(1 / args.writes_per_second)
        copier.join()
        copy_took = time.perf_counter() - copy_started
        held_from = time.perf_counter()
        added = catch_up(backend, copy)
        caught_up = time.perf_counter() - held_from
        backend.replace_file_keeping_old(copy, backend.path + ".old")
        kv.backend_replaced()
        held = time.perf_counter() - held_from
        print(
            f"copy {copy_took:.2f}s with {written} writes going on; writes held "
            f"{held * 1000:.1f} ms (catch-up of {added} revisions {caught_up * 1000:.1f} ms); "
            f"size after {backend.size() / 2**20:.0f} MiB"
        )
        backend.close()


if __name__ == "__main__":
    main()
