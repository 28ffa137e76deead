"""etcdpy.bbolt's reader on real bbolt files: an ``etcdctl snapshot save`` of a real etcd 3.4 and
that member's own backend (``member/snap/db``), a bbolt file with nested and inline buckets made
by bbolt itself (testdata/make_nested.go), and bad input: each a BoltError, never a crash or a
hang."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb
import pytest

from etcdpy.bbolt import BoltError, BoltFile, Bucket, strip_sha256_trailer, verify_sha256_trailer
from etcdpy.bbolt.reader import BRANCH_PAGE, FREELIST_PAGE, LEAF_PAGE, fnv64a
from etcdpy.pb.authpb import auth_pb2
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.pb.mvccpb import kv_pb2
from etcdpy.testing.processes import etcd_member
from tests.external_tools import require_tool

TESTDATA = Path(__file__).parent / "testdata"
ETCD_BUCKETS = [
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
    b"cluster",
    b"key",
    b"lease",
    b"members",
    b"members_removed",
    b"meta",
]
BIG = 3 * 4096 + 100  # a value over three pages: overflow pages


@dataclass(frozen=True)
class EtcdFiles:
    snapshot: Path  # etcdctl snapshot save, with etcd's sha256 trailer
    data_db: Path  # the stopped member's own member/snap/db
    puts: list[tuple[bytes, bytes]]  # in revision order (the first put is revision 2)
    lease_id: int


@pytest.fixture(scope="module")
def etcd_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdFiles]:
    require_tool("etcd")
    require_tool("etcdctl")
    tmp = tmp_path_factory.mktemp("bbolt")
    member = etcd_member(tmp)
    member.start()
    try:
        puts: list[tuple[bytes, bytes]] = []
        for i in range(400):  # enough leaf pages in the key bucket for a branch page
            puts.append((b"k/%04d" % i, b"v" * (i % 97)))
        for i in range(3):
            puts.append((b"big/%d" % i, bytes([65 + i]) * (BIG + i)))
        with member.client_channel() as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for key, value in puts:
                kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
            lease = rpc_pb2_grpc.LeaseStub(channel)
            grant = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600), timeout=5)
            kv.Put(rpc_pb2.PutRequest(key=b"leased", value=b"l", lease=grant.ID), timeout=5)
            puts.append((b"leased", b"l"))
            auth = rpc_pb2_grpc.AuthStub(channel)
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", password="pw"), timeout=5)
        snapshot = tmp / "snapshot.db"
        subprocess.run(
            ["etcdctl", "--endpoints", member.endpoint, "snapshot", "save", str(snapshot)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    finally:
        member.stop()
    yield EtcdFiles(snapshot, member.data_dir / "member" / "snap" / "db", puts, grant.ID)


def _check_etcd_db(db: BoltFile, files: EtcdFiles) -> None:
    assert db.page_size == 4096
    assert db.buckets() == ETCD_BUCKETS
    revisions = [kv_pb2.KeyValue.FromString(v) for _k, v in db.items(b"key")]
    assert [(kv.key, kv.value) for kv in revisions] == files.puts
    assert [kv.mod_revision for kv in revisions] == list(range(2, 2 + len(files.puts)))
    assert revisions[-1].lease == files.lease_id
    # the key bucket's keys are the revisions: 8 bytes main, "_", 8 bytes sub
    first_key = next(iter(db.items(b"key")))[0]
    assert first_key == struct.pack(">Q", 2) + b"_" + struct.pack(">Q", 0)
    meta = dict(db.items(b"meta"))
    assert struct.unpack(">Q", meta[b"consistent_index"])[0] > len(files.puts)
    leases = dict(db.items(b"lease"))
    assert list(leases) == [struct.pack(">q", files.lease_id)]
    users = [auth_pb2.User.FromString(v) for _k, v in db.items(b"authUsers")]
    assert [u.name for u in users] == [b"alice"]
    # the key bucket is a real tree: a branch root over leaves, with overflow pages
    key_root = db.bucket(b"key").root
    assert db.page(key_root).flags == BRANCH_PAGE
    assert db.bucket(b"alarm").inline
    key_bucket = db.bucket(b"key")
    assert all(key_bucket.get(k) == v for k, v in db.items(b"key"))


@pytest.mark.integration
def test_etcdctl_snapshot(etcd_files: EtcdFiles) -> None:
    size = etcd_files.snapshot.stat().st_size
    with BoltFile.open(etcd_files.snapshot) as db:
        assert db.trailing == 32  # etcd's sha256 after the last page
        assert db.size == size - 32
        assert db.txid > 0
        assert db.meta.checksum == db.meta.computed != 0  # FNV-64a, as bbolt's meta.sum64
        assert db.freelist() is None  # etcd 3.4 runs bbolt with NoFreelistSync
        _check_etcd_db(db, etcd_files)
    assert verify_sha256_trailer(etcd_files.snapshot) is True


@pytest.mark.integration
def test_the_members_own_db(etcd_files: EtcdFiles) -> None:
    assert verify_sha256_trailer(etcd_files.data_db) is None
    with BoltFile.open(etcd_files.data_db) as db:
        _check_etcd_db(db, etcd_files)


@pytest.mark.integration
def test_strip_sha256_trailer(etcd_files: EtcdFiles, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copyfile(etcd_files.snapshot, copy)
    assert strip_sha256_trailer(copy) is True
    assert strip_sha256_trailer(copy) is False
    with BoltFile.open(copy) as db:
        assert db.trailing == 0
        _check_etcd_db(db, etcd_files)
    shutil.copyfile(etcd_files.snapshot, copy)
    _flip(copy, 5 * 4096 + 100)
    assert verify_sha256_trailer(copy) is False
    with pytest.raises(BoltError, match="sha256"):
        strip_sha256_trailer(copy)


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    path = tmp_path / "nested.db"
    path.write_bytes(gzip.decompress((TESTDATA / "nested.db.gz").read_bytes()))
    return path


def test_nested_and_inline_buckets(nested: Path) -> None:
    with BoltFile.open(nested) as db:
        free = db.freelist()  # bbolt's default: the freelist is written
        assert free is not None and all(2 <= page < db.meta.pgid for page in free)
        assert db.buckets() == [b"empty", b"top"]
        assert list(db.items(b"empty")) == []
        assert db.bucket(b"empty").inline
        top = db.bucket(b"top")
        assert list(top.items()) == [(b"a", b"1"), (b"z", b"26")]
        assert top.buckets() == [b"big", b"small"]
        big = top.bucket(b"big")
        assert not big.inline and db.page(big.root).flags == BRANCH_PAGE
        items = list(big.items())
        expected = [(b"k%04d" % i, b"v" * (i % 50)) for i in range(500)]
        assert items == sorted([*expected, (b"huge", b"h" * 10000)])
        assert big.get(b"huge") == b"h" * 10000 and big.get(b"nope") is None
        assert all(big.get(key) == value for key, value in items)  # descents through branches
        assert big.get(b"deep") is None and big.find(b"deep") is not None
        assert big.buckets() == [b"deep"]
        deep = big.bucket(b"deep")
        assert deep.inline and list(deep.items()) == [(b"d", b"e")]
        assert list(top.bucket(b"small").items()) == [(b"x", b"y")]
        with pytest.raises(KeyError):
            top.bucket(b"a")  # a key, not a bucket
        with pytest.raises(KeyError):
            db.bucket(b"nope")


# Bad input: each a BoltError with a clear message.


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def _read_all(db: BoltFile) -> None:
    def walk(bucket: Bucket, depth: int) -> None:
        for _entry in bucket.entries():
            pass
        assert depth < 10
        for name in bucket.buckets():
            walk(bucket.bucket(name), depth + 1)

    walk(db.root, 0)
    db.freelist()


def _open_and_read(path: Path) -> None:
    with BoltFile.open(path) as db:
        _read_all(db)


def test_truncated(nested: Path) -> None:
    data = nested.read_bytes()
    with BoltFile.open(nested) as db:
        size = db.size
    for length in (size - 4096, size // 2, 8192, 4096, 100, 10, 0):
        nested.write_bytes(data[:length])
        with pytest.raises(BoltError, match=r"truncated|not a bbolt file|invalid"):
            _open_and_read(nested)
    nested.write_bytes(data[: size - 1])
    with pytest.raises(BoltError, match=r"truncated: the meta says \d+ pages"):
        _open_and_read(nested)


def test_both_metas_flipped(nested: Path) -> None:
    _flip(nested, 16 + 48)  # meta 0's txid: the checksum no longer matches
    _open_and_read(nested)  # meta 1 is still good
    _flip(nested, 4096 + 16 + 48)
    with pytest.raises(BoltError, match=r"both meta pages are invalid: .*checksum"):
        _open_and_read(nested)


def test_bad_version(nested: Path) -> None:
    _patch(nested, 16 + 4, struct.pack("<I", 3))
    _patch(nested, 4096 + 16 + 4, struct.pack("<I", 3))
    with pytest.raises(BoltError, match="version 3"):
        _open_and_read(nested)


def test_random_file(tmp_path: Path) -> None:
    path = tmp_path / "random"
    path.write_bytes(random.Random(7).randbytes(65536))
    with pytest.raises(BoltError, match="not a bbolt file"):
        _open_and_read(path)


def test_an_lmdb_file(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "env"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for i in range(100):
            txn.put(b"key%d" % i, b"value" * i)
    env.close()
    with pytest.raises(BoltError, match="not a bbolt file"):
        _open_and_read(tmp_path / "env" / "data.mdb")


def _first_branch_element(db: BoltFile, bucket: Bucket) -> int:
    """The file offset of the first element of ``bucket``'s root (a branch page)."""
    assert db.page(bucket.root).flags == BRANCH_PAGE
    return bucket.root * db.page_size + 16


def test_a_loop(nested: Path) -> None:
    with BoltFile.open(nested) as db:
        big = db.bucket(b"top").bucket(b"big")
        element = _first_branch_element(db, big)
        root = big.root
    _patch(nested, element + 8, struct.pack("<Q", root))  # the first child is the root itself
    with pytest.raises(BoltError, match="a loop"):
        _open_and_read(nested)


def test_a_page_of_the_wrong_type(nested: Path) -> None:
    with BoltFile.open(nested) as db:
        big = db.bucket(b"top").bucket(b"big")
        element = _first_branch_element(db, big)
        child: int = struct.unpack_from("<Q", nested.read_bytes(), element + 8)[0]
        assert db.page(child).flags == LEAF_PAGE
        page_size = db.page_size
    _patch(nested, child * page_size + 8, struct.pack("<H", FREELIST_PAGE))
    with pytest.raises(BoltError, match="is a freelist page, want branch or leaf"):
        _open_and_read(nested)


def test_a_page_out_of_range(nested: Path) -> None:
    with BoltFile.open(nested) as db:
        element = _first_branch_element(db, db.bucket(b"top").bucket(b"big"))
    _patch(nested, element + 8, struct.pack("<Q", 1 << 40))
    with pytest.raises(BoltError, match="out of range"):
        _open_and_read(nested)


def test_random_damage_is_a_bolt_error_or_a_read(nested: Path) -> None:
    """Random bytes over the data pages, over page headers, or in the metas' root, freelist and
    high-water mark (with good checksums): a read or a BoltError, never anything else."""
    data = nested.read_bytes()
    with BoltFile.open(nested) as db:
        size, page_size = db.size, db.page_size
    rng = random.Random(20)
    outcomes = {"read": 0, "error": 0}
    for i in range(300):
        damaged = bytearray(data)
        if i % 3 == 0:
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(2 * page_size, size)] = rng.randrange(256)
        elif i % 3 == 1:
            for _ in range(rng.randint(1, 4)):
                page = rng.randrange(2, size // page_size)
                damaged[page * page_size + rng.randrange(64)] = rng.randrange(256)
        else:
            field = rng.choice([16, 32, 40])  # root, freelist, pgid
            value = rng.choice([0, 1, 2, 3, 17, 1 << 40, rng.randrange(1 << 64)])
            for meta in (0, page_size):
                struct.pack_into("<Q", damaged, meta + 16 + field, value)
                checksum = fnv64a(bytes(damaged[meta + 16 : meta + 16 + 56]))
                struct.pack_into("<Q", damaged, meta + 16 + 56, checksum)
        nested.write_bytes(bytes(damaged))
        try:
            _open_and_read(nested)
            outcomes["read"] += 1
        except BoltError:
            outcomes["error"] += 1
    assert outcomes["read"] > 0 and outcomes["error"] > 0
    os.unlink(nested)
