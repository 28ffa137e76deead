"""KVStore against etcd's revision rules, over a real LMDB directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.mvcc import (
    Backend,
    CompactedError,
    FutureRevError,
    KVStore,
    StoreClosedError,
    TxnInProgressError,
)
from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.kvstore import (
    CONSISTENT_INDEX_KEY,
    FINISHED_COMPACT_KEY,
    SCHEDULED_COMPACT_KEY,
)
from etcdpy.mvcc.revision import decode, encode, is_tombstone
from etcdpy.pb.mvccpb.kv_pb2 import Event, KeyValue


def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "member" / "snap" / "db")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KVStore]:
    s = KVStore(Backend(db_path(tmp_path), map_size=64 * 1024**2))
    yield s
    if not s.backend.closed:
        s.close()


def reopen(s: KVStore, path: str) -> KVStore:
    s.close()
    return KVStore(Backend(path, map_size=64 * 1024**2))


def put(s: KVStore, key: bytes, value: bytes, lease: int = 0) -> int:
    with s.write() as tw:
        tw.put(key, value, lease)
    return s.current_revision


def delete(s: KVStore, key: bytes, end: bytes | None = None) -> list[KeyValue]:
    with s.write() as tw:
        return tw.delete_range(key, end)


def kv_tuple(kv: KeyValue) -> tuple[bytes, bytes, int, int, int, int]:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def key_bucket(s: KVStore) -> list[bytes]:
    with s.backend.read() as tx:
        return [k for k, _ in tx.items(bk.KEY)]


def test_fresh_store_revisions(store: KVStore) -> None:
    assert store.current_revision == 1
    assert store.compact_revision == -1
    assert store.consistent_index == 0
    r = store.range(b"a", b"\0")
    assert (r.kvs, r.count, r.rev) == ([], 0, 1)


def test_first_put_gets_revision_2(store: KVStore) -> None:
    assert put(store, b"foo", b"bar", lease=7) == 2
    (kv,) = store.range(b"foo").kvs
    assert kv_tuple(kv) == (b"foo", b"bar", 2, 2, 1, 7)
    assert put(store, b"foo", b"baz") == 3
    (kv,) = store.range(b"foo").kvs
    assert kv_tuple(kv) == (b"foo", b"baz", 2, 3, 2, 0)  # lease is the put's, not inherited


def test_txn_with_several_ops_is_one_revision_with_sub_revisions(store: KVStore) -> None:
    put(store, b"c", b"0")  # rev 2
    with store.write() as tw:
        assert tw.put(b"a", b"1") is None
        assert tw.put(b"b", b"2") is None
        prev = tw.put(b"a", b"3")
        assert prev is not None and kv_tuple(prev) == (b"a", b"1", 3, 3, 1, 0)
        deleted = tw.delete_range(b"c")
        assert [kv_tuple(kv) for kv in deleted] == [(b"c", b"0", 2, 2, 1, 0)]
        assert tw.rev == 3
        events = tw.end()
    assert store.current_revision == 3
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (Event.PUT, b"a", 3),
        (Event.PUT, b"b", 3),
        (Event.PUT, b"a", 3),
        (Event.DELETE, b"c", 3),
    ]
    assert kv_tuple(events[2].kv) == (b"a", b"3", 3, 3, 2, 0)
    assert events[2].prev_kv.value == b"1"
    assert events[3].prev_kv.value == b"0"
    keys = key_bucket(store)
    assert [(decode(k), is_tombstone(k)) for k in keys] == [
        ((2, 0), False),
        ((3, 0), False),
        ((3, 1), False),
        ((3, 2), False),
        ((3, 3), True),
    ]
    # The stored tombstone holds just the key, as etcd's.
    with store.backend.read() as tx:
        assert (
            tx.get(bk.KEY, encode(3, 3, tombstone=True)) == KeyValue(key=b"c").SerializeToString()
        )


def test_delete_of_missing_key_takes_no_revision(store: KVStore) -> None:
    put(store, b"a", b"1")
    with store.write() as tw:
        assert tw.delete_range(b"zz") == []
        assert tw.delete_range(b"b", b"c") == []
        assert tw.rev == 2
        assert tw.end() == []
    assert store.current_revision == 2
    with store.write() as tw:
        pass
    assert store.current_revision == 2


def test_delete_range_and_recreate(store: KVStore) -> None:
    for k in [b"a", b"b", b"c", b"d"]:
        put(store, k, k)  # revs 2..5
    deleted = delete(store, b"b", b"d")  # rev 6
    assert [kv.key for kv in deleted] == [b"b", b"c"]
    assert store.current_revision == 6
    assert [kv.key for kv in store.range(b"", b"\0").kvs] == [b"a", b"d"]
    assert [kv.key for kv in store.range(b"", b"\0", rev=5).kvs] == [b"a", b"b", b"c", b"d"]
    put(store, b"b", b"again")  # rev 7
    (kv,) = store.range(b"b").kvs
    assert kv_tuple(kv) == (b"b", b"again", 7, 7, 1, 0)  # a new generation starts at version 1


def test_txn_reads_its_own_writes(store: KVStore) -> None:
    put(store, b"a", b"1")
    with store.write() as tw:
        assert tw.range(b"a").kvs[0].value == b"1"
        tw.put(b"a", b"2")
        tw.put(b"b", b"3")
        r = tw.range(b"a", b"\0")
        assert [kv.value for kv in r.kvs] == [b"2", b"3"]
        assert r.rev == 3
        # Outside the txn nothing is visible yet.
        assert store.range(b"a").kvs[0].value == b"1"
        assert store.range(b"b").count == 0
        tw.delete_range(b"a")
        assert tw.range(b"a").count == 0
        with pytest.raises(FutureRevError):
            tw.range(b"a", rev=4)
    assert store.range(b"a").count == 0
    assert store.range(b"b").kvs[0].value == b"3"


def test_put_then_delete_in_one_txn(store: KVStore) -> None:
    with store.write() as tw:
        tw.put(b"a", b"1")
        deleted = tw.delete_range(b"a")
        assert [kv.value for kv in deleted] == [b"1"]
        events = tw.end()
    assert [e.type for e in events] == [Event.PUT, Event.DELETE]
    assert store.current_revision == 2
    assert store.range(b"a").count == 0
    assert store.range(b"a", rev=2).count == 0


def test_range_limit_count_and_keys_only(store: KVStore) -> None:
    for i in range(10):
        put(store, b"k%d" % i, b"v%d" % i)
    r = store.range(b"k", b"l", limit=3)
    assert [kv.key for kv in r.kvs] == [b"k0", b"k1", b"k2"]
    assert r.count == 10  # all matches, not just the returned ones
    assert r.rev == 11
    r = store.range(b"k", b"l", count_only=True)
    assert (r.kvs, r.count) == ([], 10)
    r = store.range(b"k3", count_only=True)
    assert (r.kvs, r.count) == ([], 1)
    r = store.range(b"k", b"l", keys_only=True, limit=2)
    assert [(kv.key, kv.value, kv.version) for kv in r.kvs] == [(b"k0", b"", 1), (b"k1", b"", 1)]
    r = store.range(b"k", b"l", limit=100)
    assert len(r.kvs) == 10
    r = store.range(b"k5", b"\0", rev=7)  # k5 was written at rev 7
    assert [kv.key for kv in r.kvs] == [b"k5"]


def test_range_revision_errors(store: KVStore) -> None:
    for i in range(5):
        put(store, b"a", b"%d" % i)  # revs 2..6
    with pytest.raises(FutureRevError):
        store.range(b"a", rev=7)
    assert store.range(b"a", rev=3).kvs[0].value == b"1"
    store.compact(4)
    assert store.compact_revision == 4
    with pytest.raises(CompactedError):
        store.range(b"a", rev=3)
    # At the compaction revision itself the data is complete (etcd allows it).
    assert store.range(b"a", rev=4).kvs[0].value == b"2"
    assert store.range(b"a").kvs[0].value == b"4"


def test_compaction_errors_and_effect(store: KVStore) -> None:
    for i in range(5):
        put(store, b"a", b"%d" % i)  # revs 2..6
    put(store, b"b", b"x")  # 7
    delete(store, b"b")  # 8
    with pytest.raises(FutureRevError):
        store.compact(9)
    store.compact(5)
    with pytest.raises(CompactedError):
        store.compact(5)
    with pytest.raises(CompactedError):
        store.compact(3)
    assert [decode(k) for k in key_bucket(store)] == [(5, 0), (6, 0), (7, 0), (8, 0)]
    store.compact(8)
    # b's tombstone ends its only generation: nothing of b is kept.
    assert [decode(k) for k in key_bucket(store)] == [(6, 0)]
    assert store.index.key_index(b"b") is None
    with store.backend.read() as tx:
        assert decode(tx.get(bk.META, SCHEDULED_COMPACT_KEY) or b"") == (8, 0)
        assert decode(tx.get(bk.META, FINISHED_COMPACT_KEY) or b"") == (8, 0)


def test_compaction_runs_in_chunks(tmp_path: Path) -> None:
    s = KVStore(Backend(db_path(tmp_path), map_size=64 * 1024**2), compaction_batch_limit=10)
    for i in range(55):
        put(s, b"k%d" % (i % 5), b"v%d" % i)
    s.begin_compaction(50)
    assert s.compaction_pending
    steps = 1
    while not s.compaction_step():
        steps += 1
    assert steps == 5  # 49 revisions <= 50, 10 per chunk (the last chunk is short)
    assert not s.compaction_pending
    assert len(key_bucket(s)) == 5 + 6  # one survivor per key at 50, plus revisions 51..56
    for i in range(5):
        assert s.range(b"k%d" % i, rev=50).count == 1
    s.close()


def test_restart_restores_everything(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    with s.write(consistent_index=10) as tw:
        tw.put(b"a", b"1", lease=5)
        tw.put(b"b", b"2")
    with s.write(consistent_index=11) as tw:
        tw.put(b"a", b"3", lease=5)
    delete(s, b"b")  # rev 4
    put(s, b"b", b"4")  # rev 5
    put(s, b"c", b"5")  # rev 6
    s.compact(3)
    s.set_consistent_index(12)
    before = {rev: s.range(b"", b"\0", rev=rev) for rev in range(3, 7)}
    hash_before = s.hash_kv()
    full_hash = s.hash()
    s = reopen(s, path)
    assert s.current_revision == 6
    assert s.compact_revision == 3
    assert s.consistent_index == 12
    for rev, want in before.items():
        got = s.range(b"", b"\0", rev=rev)
        assert [kv_tuple(kv) for kv in got.kvs] == [kv_tuple(kv) for kv in want.kvs], rev
    with pytest.raises(CompactedError):
        s.range(b"a", rev=2)
    assert s.hash_kv() == hash_before
    assert s.hash() == full_hash
    assert s.lease_keys() == {5: [b"a"]}
    # Writing continues with the next revision and the right versions.
    with s.write() as tw:
        tw.put(b"a", b"6")
    (kv,) = s.range(b"a").kvs
    assert kv_tuple(kv) == (b"a", b"6", 2, 7, 3, 0)
    s.close()


def test_restart_after_compacting_everything_keeps_the_revision(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    put(s, b"a", b"1")
    delete(s, b"a")  # rev 3
    s.compact(3)
    assert key_bucket(s) == []
    s = reopen(s, path)
    assert s.current_revision == 3
    assert put(s, b"a", b"2") == 4
    s.close()


def test_restart_finishes_an_interrupted_compaction(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    s = KVStore(Backend(path, map_size=64 * 1024**2), compaction_batch_limit=3)
    for i in range(20):
        put(s, b"k", b"%d" % i)  # revs 2..21
    s.begin_compaction(15)
    s.compaction_step()
    s.backend.close()  # "crash" with the compaction half done
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    assert s.compact_revision == 15
    assert s.current_revision == 21
    assert [decode(k).main for k in key_bucket(s)] == list(range(15, 22))
    with s.backend.read() as tx:
        assert decode(tx.get(bk.META, FINISHED_COMPACT_KEY) or b"") == (15, 0)
    s.close()


def test_batch_groups_txns_into_one_commit(store: KVStore) -> None:
    with store.batch():
        with store.write(1) as tw:
            tw.put(b"a", b"1")
        with store.write(2) as tw:
            tw.put(b"b", b"2")
        assert store.current_revision == 3
        assert store.range(b"b").kvs[0].value == b"2"  # reads see the open batch
        # Another reader of the file does not see anything yet.
        txn = store.backend.begin_read()
        assert txn.get(encode(2, 0), db=store.backend.db(bk.KEY)) is None
        txn.abort()
    txn = store.backend.begin_read()
    assert txn.get(encode(3, 0), db=store.backend.db(bk.KEY)) is not None
    assert txn.get(CONSISTENT_INDEX_KEY, db=store.backend.db(bk.META)) == (2).to_bytes(8, "big")
    txn.abort()


def test_failed_batch_leaves_the_store_closed_and_reopen_recovers(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    put(s, b"a", b"1")
    with pytest.raises(RuntimeError, match="boom"), s.batch():
        with s.write(9) as tw:
            tw.put(b"a", b"2")
        raise RuntimeError("boom")
    with pytest.raises(StoreClosedError):
        s.range(b"a")
    s.backend.close()
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    assert s.current_revision == 2
    assert s.range(b"a").kvs[0].value == b"1"
    assert s.consistent_index == 0
    s.close()


def test_failed_txn_without_changes_keeps_the_store_usable(store: KVStore) -> None:
    with pytest.raises(ValueError), store.write() as tw:
        tw.range(b"a")
        raise ValueError("bad request")
    assert put(store, b"a", b"1") == 2


def test_one_write_txn_at_a_time(store: KVStore) -> None:
    tw = store.write()
    with pytest.raises(TxnInProgressError):
        store.write()
    tw.end()
    with pytest.raises(StoreClosedError):
        tw.put(b"a", b"b")
    store.write().end()


def test_hash_kv(tmp_path: Path) -> None:
    a = KVStore(Backend(str(tmp_path / "a" / "db"), map_size=64 * 1024**2))
    b = KVStore(Backend(str(tmp_path / "b" / "db"), map_size=64 * 1024**2))
    for s in (a, b):
        for i in range(6):
            put(s, b"k%d" % (i % 3), b"v%d" % i)
    assert a.hash_kv() == b.hash_kv()
    h4, compact_rev = a.hash_kv(4)
    assert compact_rev == -1
    put(a, b"k0", b"other")
    put(b, b"k0", b"different")
    assert a.hash_kv() != b.hash_kv()
    assert a.hash_kv(4) == (h4, -1)  # history up to 4 did not change
    a.compact(5)
    with pytest.raises(CompactedError):
        a.hash_kv(5)
    with pytest.raises(FutureRevError):
        a.hash_kv(99)
    assert a.hash_kv(7)[1] == 5
    a.close()
    b.close()


def test_backend_buckets_and_sizes(store: KVStore) -> None:
    be = store.backend
    others = [name for name in bk.BUCKETS if name not in (bk.KEY, bk.META)]
    assert len(others) == 8
    with be.batch() as tx:
        for name in others:
            tx.put(name, b"probe", name)
    with be.read() as tx:
        assert [tx.get(name, b"probe") for name in others] == others
    for i in range(200):
        put(store, b"k%d" % i, b"x" * 1000)
    assert be.size() >= be.size_in_use() > 200 * 1000


def test_key_bucket_out_of_order_write_raises(store: KVStore) -> None:
    with store.backend.batch() as tx:
        tx.put(bk.KEY, b"\xff" * 17, b"junk")  # sorts after every real revision
    with pytest.raises(RuntimeError, match="not after"), store.write() as tw:
        tw.put(b"a", b"1")


def test_events_since(store: KVStore) -> None:
    put(store, b"a", b"1")  # 2
    with store.write() as tw:  # 3
        tw.put(b"b", b"2")
        tw.delete_range(b"a")
    put(store, b"c", b"3")  # 4
    evs = store.events_since(3)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in evs] == [
        (Event.PUT, b"b", 3),
        (Event.DELETE, b"a", 3),
        (Event.PUT, b"c", 4),
    ]
    assert [e.kv.key for e in store.events_since(0)] == [b"a", b"b", b"a", b"c"]
    assert [e.kv.key for e in store.events_since(2, end_rev=4)] == [b"a", b"b", b"a"]
    # The limit never splits a revision.
    assert [e.kv.key for e in store.events_since(2, limit=2)] == [b"a", b"b", b"a"]
    assert store.events_since(5) == []
    store.compact(3)
    with pytest.raises(CompactedError):
        store.events_since(2)
    assert [e.kv.key for e in store.events_since(3)] == [b"b", b"c"]  # 3's tombstone is gone


def test_another_process_reads_the_file(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    put(s, b"shared", b"value")
    script = (
        "import sys\n"
        "from etcdpy.mvcc import Backend, KVStore\n"
        "s = KVStore(Backend(sys.argv[1], map_size=64 * 1024**2, readonly=True))\n"
        "print(s.current_revision, s.range(b'shared').kvs[0].value.decode())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, path], check=True, capture_output=True, text=True
    )
    assert out.stdout.split() == ["2", "value"]
    put(s, b"shared", b"still writable")  # the writer is not blocked by the reader
    s.close()


def test_failed_txn_with_changes_closes_the_store(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    put(s, b"a", b"1")
    with pytest.raises(ValueError), s.write() as tw:
        tw.put(b"a", b"2")
        raise ValueError("half-applied request")
    with pytest.raises(StoreClosedError):
        s.write()
    s.backend.close()
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    assert (s.current_revision, s.range(b"a").kvs[0].value) == (2, b"1")
    s.close()


def test_copy_is_a_consistent_openable_snapshot(tmp_path: Path) -> None:
    s = KVStore(Backend(db_path(tmp_path), map_size=64 * 1024**2))
    for i in range(50):
        put(s, b"k%d" % (i % 7), b"v%d" % i)
    s.compact(40)
    copy_path = str(tmp_path / "copy.db")
    s.backend.copy_to(copy_path)
    put(s, b"after", b"copy")  # not in the copy
    c = KVStore(Backend(copy_path, map_size=64 * 1024**2))
    assert (c.current_revision, c.compact_revision) == (51, 40)
    assert c.hash_kv(51) == s.hash_kv(51)
    assert c.range(b"after").count == 0
    c.close()
    s.close()


CRASH_WRITER = """
import sys
from etcdpy.mvcc import Backend, KVStore
s = KVStore(Backend(sys.argv[1], map_size=64 * 1024**2))
ci = 0
while True:
    with s.batch():
        for _ in range(10):
            ci += 1
            with s.write(ci) as tw:
                tw.put(b"k%06d" % ci, b"v%d" % ci)
    print(ci, flush=True)
"""


def test_kill_9_loses_no_committed_batch(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, path], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        reported = [int(proc.stdout.readline()) for _ in range(30)]
        proc.kill()  # SIGKILL, in the middle of some later batch
        proc.wait()
    s = KVStore(Backend(path, map_size=64 * 1024**2))
    ci = s.consistent_index
    assert ci >= reported[-1]
    assert ci % 10 == 0  # whole batches only
    assert s.current_revision == ci + 1  # one revision per write, the first is 2
    r = s.range(b"k", b"l")
    assert [kv.key for kv in r.kvs] == [b"k%06d" % i for i in range(1, ci + 1)]
    s.close()
