"""Micro-benchmarks of the raft log's durable path: WAL appends with fsync, and the codec.

    .venv/bin/python -m bench.wal_micro [--dir DIR] [--seconds S]

The WAL goes to a fresh directory under DIR (default: the current directory, so that it lands
on the same disk the server would use; /tmp may be a RAM disk). Figures are printed, not
asserted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from etcdpy.raft import codec
from etcdpy.raft.types import Entry, EntryType, HardState, Message, MessageType
from etcdpy.wal.log import WAL

ENTRY_BYTES = 100


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls of ``fn`` per second, over about ``seconds``."""
    calls = 0
    batch = 1
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed
        batch = min(batch * 2, 100_000)


def bench_wal(base: Path, per_save: int, sync: bool, seconds: float) -> tuple[float, float]:
    """(saves per second, entries per second) with ``per_save`` entries and a hard state per
    save, like a Ready from a busy leader."""
    tmp = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=base))
    try:
        wal = WAL.create(tmp / "wal", b"bench")
        payload = b"x" * ENTRY_BYTES
        next_index = 1

        def one_save() -> None:
            nonlocal next_index
            batch = [
                Entry(term=1, index=i, type=EntryType.NORMAL, data=payload)
                for i in range(next_index, next_index + per_save)
            ]
            next_index += per_save
            wal.save(HardState(term=1, vote=1, commit=next_index - 1), batch, sync=sync)

        saves = rate(one_save, seconds)
        wal.close()
        return saves, saves * per_save
    finally:
        shutil.rmtree(tmp)


def bench_replay(base: Path, count: int) -> float:
    """Entries per second read back by ``WAL.open`` + ``read_all`` (a restart)."""
    tmp = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=base))
    try:
        payload = b"x" * ENTRY_BYTES
        with WAL.create(tmp / "wal", b"bench") as wal:
            for first in range(1, count + 1, 1000):
                batch = [Entry(1, i, EntryType.NORMAL, payload) for i in range(first, first + 1000)]
                wal.save(HardState(1, 1, first + 999), batch, sync=False)
        start = time.perf_counter()
        wal = WAL.open(tmp / "wal", None)
        _, _, entries = wal.read_all()
        elapsed = time.perf_counter() - start
        wal.close()
        assert len(entries) == count
        return count / elapsed
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    seconds: float = args.seconds

    print(f"WAL in {args.dir} ({ENTRY_BYTES}-byte entries, hard state in every save)")
    for per_save, sync in [(1, True), (64, True), (1, False), (64, False)]:
        saves, entries = bench_wal(args.dir, per_save, sync, seconds)
        mode = "fdatasync" if sync else "no sync  "
        print(
            f"  {per_save:3d} entries/save, {mode}: "
            f"{saves:10,.0f} saves/s {entries:12,.0f} entries/s"
        )

    replayed = bench_replay(args.dir, 200_000)
    print(f"  replay (open + read_all of 200,000 entries): {replayed:,.0f} entries/s")

    entry = Entry(term=3, index=12345, type=EntryType.NORMAL, data=b"x" * ENTRY_BYTES)
    entry_buf = codec.encode_entry(entry)
    app = Message(
        MessageType.APP,
        to=2,
        from_=1,
        term=3,
        log_term=3,
        index=12344,
        entries=tuple(
            Entry(term=3, index=12345 + i, type=EntryType.NORMAL, data=b"x" * ENTRY_BYTES)
            for i in range(64)
        ),
        commit=12300,
    )
    heartbeat = Message(MessageType.HEARTBEAT, to=2, from_=1, term=3, commit=12300)
    app_buf = codec.encode_message(app)
    hb_buf = codec.encode_message(heartbeat)
    batch = [heartbeat] * 100
    batch_buf = codec.encode_messages(batch)

    print("codec (calls/s)")
    cases: list[tuple[str, Callable[[], object]]] = [
        ("encode Entry (100 B)", lambda: codec.encode_entry(entry)),
        ("decode Entry (100 B)", lambda: codec.decode_entry(entry_buf)),
        ("encode Message HEARTBEAT", lambda: codec.encode_message(heartbeat)),
        ("decode Message HEARTBEAT", lambda: codec.decode_message(hb_buf)),
        ("encode Message APP x64 entries", lambda: codec.encode_message(app)),
        ("decode Message APP x64 entries", lambda: codec.decode_message(app_buf)),
        ("encode batch of 100 HEARTBEATs", lambda: codec.encode_messages(batch)),
        ("decode batch of 100 HEARTBEATs", lambda: codec.decode_messages(batch_buf)),
    ]
    for name, fn in cases:
        print(f"  {name:32s} {rate(fn, seconds / 2):12,.0f}")


if __name__ == "__main__":
    main()
