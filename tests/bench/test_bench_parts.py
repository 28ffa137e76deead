"""bench/: the null server's store semantics and the results table."""

from __future__ import annotations

from bench.null_server import MemoryKV
from bench.run import RSS_NAME, format_results
from etcdpy.pb.etcdserverpb import rpc_pb2

C = rpc_pb2.Compare


def test_memory_kv_keeps_etcd_revision_bookkeeping() -> None:
    store = MemoryKV()
    assert store.put(b"a", b"1", 0, 2) is None
    prev = store.put(b"a", b"2", 0, 3)
    assert prev is not None and prev.value == b"1"
    (kv,) = store.range(b"a", b"")
    assert (kv.create_revision, kv.mod_revision, kv.version) == (2, 3, 2)
    store.put(b"c", b"x", 0, 4)
    assert [k.key for k in store.range(b"a", b"\0")] == [b"a", b"c"]
    assert [k.key for k in store.range(b"b", b"c")] == []


def test_memory_kv_compare() -> None:
    store = MemoryKV()
    store.put(b"k", b"v", 0, 5)
    assert store.compare(C(key=b"k", target=C.MOD, result=C.EQUAL, mod_revision=5))
    assert not store.compare(C(key=b"k", target=C.MOD, result=C.EQUAL, mod_revision=0))
    assert store.compare(C(key=b"missing", target=C.MOD, result=C.EQUAL, mod_revision=0))
    assert store.compare(C(key=b"k", target=C.VALUE, result=C.NOT_EQUAL, value=b"w"))
    assert store.compare(C(key=b"k", target=C.VERSION, result=C.GREATER, version=0))
    assert store.compare(C(key=b"k", target=C.CREATE, result=C.LESS, create_revision=6))


def test_results_table_ratios_and_skips() -> None:
    table = format_results(
        {
            "put, 64 clients": {"etcd": 10000.0, "null": 4000.0, "etcdpy": 2000.0},
            RSS_NAME: {"etcd": 40.0, "null": 50.0, "etcdpy": "did not start"},
        }
    )
    put_row = next(line for line in table.splitlines() if line.startswith("put, 64"))
    assert put_row.split()[-2:] == ["0.20x", "0.50x"]
    rss_row = next(line for line in table.splitlines() if line.startswith("RSS"))
    assert "skipped" in rss_row and rss_row.split()[-2:] == ["-", "-"]
