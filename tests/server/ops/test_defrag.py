"""The defragmented copy catches up with writes made while it was being written."""

from __future__ import annotations

from pathlib import Path

from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.kvstore import KVStore
from etcdpy.server.ops.defrag import catch_up


def put(kv: KVStore, key: bytes, value: bytes) -> None:
    with kv.batch(), kv.write() as txn:
        txn.put(key, value)


def test_copy_catches_up_and_swaps_in_place(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "db", map_size=64 * 1024**2)
    kv = KVStore(backend)
    for i in range(200):
        put(kv, b"k%03d" % i, b"x" * 500)
    with kv.batch(), kv.write() as txn:
        txn.delete_range(b"k", b"l")
    kv.compact(kv.current_revision)
    while kv.compaction_pending:
        kv.compaction_step()
    copy = tmp_path / "db.defrag"
    backend.copy_to(copy, compact=True)
    # Writes after the copy was taken: new revisions, and a small bucket changed.
    for i in range(5):
        put(kv, b"late%d" % i, b"y")
    with backend.batch() as tx:
        tx.put(bk.ALARM, b"a", b"")
    with backend.batch() as tx:
        tx.delete(bk.ALARM, b"a")
        tx.put(bk.LEASE, b"l1", b"lease")
    before_hash = kv.hash()
    size_before = backend.size()

    assert catch_up(backend, copy) == 5
    backend.replace_file(copy)
    kv.backend_replaced()

    assert kv.hash() == before_hash
    assert backend.size() < size_before
    got = kv.range(b"late0", b"late9")
    assert [k.key for k in got.kvs] == [b"late%d" % i for i in range(5)]
    put(kv, b"after", b"z")  # the swapped-in file takes writes
    assert kv.range(b"after").kvs[0].value == b"z"
    with backend.read() as tx:
        assert list(tx.items(bk.LEASE)) == [(b"l1", b"lease")]
        assert list(tx.items(bk.ALARM)) == []
    backend.close()
