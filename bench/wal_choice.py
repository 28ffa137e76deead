"""Why the raft log has its own WAL: the same durable saves into three candidate stores.

A save is what a Ready asks of the log: a hard state plus ``per_save`` entries of 100 bytes,
durable before the call returns. Candidates, each in a fresh directory:

- ``wal``: etcdpy's WAL (etcdpy.wal.log: CRC-chained records, preallocated segments, one
  fdatasync per save);
- ``lmdb``: one LMDB write transaction per save (entries keyed by index, the hard state under
  one key), committed with sync on, as the raft log would be kept in the MVCC backend's engine;
- ``sqlite``: Python's sqlite3 in WAL journal mode with ``synchronous=FULL``, one transaction
  per save.

Prints saves/s, entries/s and the CPU spent per save (process time), for 1 and 64 entries per
save. Run it on the disk the server uses (``--dir``; /tmp may be a RAM disk)::

    .venv/bin/python -m bench.wal_choice [--dir DIR] [--seconds S]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from etcdpy.raft import codec
from etcdpy.raft.types import Entry, EntryType, HardState
from etcdpy.wal.log import WAL

ENTRY_BYTES = 100
Save = Callable[[HardState, list[Entry]], None]


@contextmanager
def wal_store(path: Path) -> Iterator[Save]:
    wal = WAL.create(path / "wal", b"bench")

    def save(hard_state: HardState, entries: list[Entry]) -> None:
        wal.save(hard_state, entries, sync=True)

    try:
        yield save
    finally:
        wal.close()


@contextmanager
def lmdb_store(path: Path) -> Iterator[Save]:
    env = lmdb.open(str(path / "lmdb"), map_size=1 << 30, sync=True, metasync=True)

    def save(hard_state: HardState, entries: list[Entry]) -> None:
        with env.begin(write=True) as txn:
            for entry in entries:
                txn.put(struct.pack(">Q", entry.index), codec.encode_entry(entry))
            txn.put(b"hardstate", codec.encode_hard_state(hard_state))

    try:
        yield save
    finally:
        env.close()


@contextmanager
def sqlite_store(path: Path) -> Iterator[Save]:
    db = sqlite3.connect(path / "raft.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE state (k INTEGER PRIMARY KEY, data BLOB)")

    def save(hard_state: HardState, entries: list[Entry]) -> None:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO entries VALUES (?, ?)",
            [(entry.index, codec.encode_entry(entry)) for entry in entries],
        )
        db.execute(
            "INSERT OR REPLACE INTO state VALUES (0, ?)", (codec.encode_hard_state(hard_state),)
        )
        db.execute("COMMIT")

    try:
        yield save
    finally:
        db.close()


STORES = {"wal": wal_store, "lmdb": lmdb_store, "sqlite": sqlite_store}


def measure(store: str, base: Path, per_save: int, seconds: float) -> tuple[float, float]:
    """(saves per second, CPU microseconds per save)."""
    tmp = Path(tempfile.mkdtemp(prefix="wal-choice-", dir=base))
    try:
        with STORES[store](tmp) as save:
            payload = b"x" * ENTRY_BYTES
            next_index = 1
            saves = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            while time.perf_counter() - wall0 < seconds:
                batch = [
                    Entry(term=1, index=i, type=EntryType.NORMAL, data=payload)
                    for i in range(next_index, next_index + per_save)
                ]
                next_index += per_save
                save(HardState(term=1, vote=1, commit=next_index - 1), batch)
                saves += 1
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
        return saves / wall, cpu / saves * 1e6
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(f"durable saves in {args.dir} ({ENTRY_BYTES}-byte entries, hard state in every save)")
    header = ("store", "entries/save", "saves/s", "entries/s", "CPU us/save")
    print(f"{header[0]:8s} {header[1]:>12s} {header[2]:>10s} {header[3]:>11s} {header[4]:>12s}")
    for per_save in (1, 64):
        for store in STORES:
            rate, cpu = measure(store, args.dir, per_save, args.seconds)
            print(f"{store:8s} {per_save:12d} {rate:10,.0f} {rate * per_save:11,.0f} {cpu:12,.0f}")


if __name__ == "__main__":
    main()
