"""Micro-benchmark of the pure mvcc library (no server): puts/s and single-key gets/s.

Run: .venv/bin/python -m bench.mvcc_micro [--keys N] [--per-batch M]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from etcdpy.mvcc import Backend, KVStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--per-batch", type=int, default=100, help="txns per LMDB commit")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--sync-each-commit", action="store_true", help="fdatasync every commit")
    args = ap.parse_args()
    rng = random.Random(1)
    keys = [b"/registry/pods/default/pod-%08d" % i for i in range(args.keys)]
    value = rng.randbytes(args.value_size)

    with tempfile.TemporaryDirectory() as d:
        store = KVStore(
            Backend(
                f"{d}/member/snap/db", map_size=4 * 1024**3, sync_each_commit=args.sync_each_commit
            )
        )

        t0 = time.perf_counter()
        n = 0
        while n < args.ops:
            with store.batch():
                for _ in range(min(args.per_batch, args.ops - n)):
                    with store.write(n) as tw:
                        tw.put(keys[n % args.keys], value)
                    n += 1
        dt = time.perf_counter() - t0
        print(f"put, one txn each, {args.per_batch} txns per commit: {n / dt:,.0f} puts/s")

        t0 = time.perf_counter()
        with store.write(n) as tw:
            for i in range(args.ops):
                tw.put(keys[i % args.keys], value)
        dt = time.perf_counter() - t0
        print(f"put, {args.ops} in one txn: {args.ops / dt:,.0f} puts/s")

        picks = [keys[rng.randrange(args.keys)] for _ in range(args.ops)]
        t0 = time.perf_counter()
        for k in picks:
            store.range(k)
        dt = time.perf_counter() - t0
        print(f"range single key: {len(picks) / dt:,.0f} gets/s")

        t0 = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            r = store.range(b"/registry/pods/", b"/registry/pods0", limit=500)
        dt = time.perf_counter() - t0
        print(f"range prefix of {r.count} keys, limit 500: {rounds * 500 / dt:,.0f} kvs/s")

        t0 = time.perf_counter()
        store.compact(store.current_revision)
        dt = time.perf_counter() - t0
        print(f"compact of {2 * args.ops} revisions: {dt:.2f} s")

        t0 = time.perf_counter()
        store.close()
        store = KVStore(Backend(f"{d}/member/snap/db", map_size=4 * 1024**3))
        dt = time.perf_counter() - t0
        print(f"reopen (restore index of {len(store.index)} keys): {dt:.3f} s")
        store.close()


if __name__ == "__main__":
    main()
