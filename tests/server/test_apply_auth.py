"""Applied requests are checked as the user their header names (etcd's authApplierV3): the
answer is etcd's error and nothing is written; with auth off nothing is checked."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator

import pytest

from etcdpy import errors
from etcdpy.auth.info import AuthInfo
from etcdpy.lease.lessor import Lessor
from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.kvstore import KVStore
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.applier import Applier
from tests.server.fake_auth import READ, WRITE, FakeAuth


class Member:
    def __init__(self, kv: KVStore, applier: Applier, auth: FakeAuth) -> None:
        self.kv, self.applier, self.auth = kv, applier, auth
        self.index = 0

    def apply(self, user: str | None, **request: object) -> object:
        self.index += 1
        req = internalpb.InternalRaftRequest(**request)  # type: ignore[arg-type]
        req.header.ID = self.index
        if user is not None:
            req.header.username = user
            req.header.auth_revision = self.auth.revision
        return self.applier.apply(req, self.index)

    def value(self, key: bytes) -> bytes | None:
        kvs = self.kv.range(key, None).kvs
        return kvs[0].value if kvs else None


@pytest.fixture
def member() -> Iterator[Member]:
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(tmp + "/db")
        kv = KVStore(backend)
        lessor = Lessor(backend, time.monotonic)
        applier = Applier(kv, lessor)
        auth = FakeAuth()
        auth.grant("alice", READ, b"a", b"b")
        auth.grant("alice", WRITE, b"a", b"b")
        auth.grant("bob", WRITE, b"w")  # write only
        applier.auth = auth  # type: ignore[assignment]  # the fake, as AuthChecker
        yield Member(kv, applier, auth)
        backend.close()


def _put(key: bytes, prev_kv: bool = False, lease: int = 0) -> pb.PutRequest:
    return pb.PutRequest(key=key, value=b"v", prev_kv=prev_kv, lease=lease)


def test_a_permitted_put_is_written(member: Member) -> None:
    assert isinstance(member.apply("alice", put=_put(b"a1")), pb.PutResponse)
    assert member.value(b"a1") == b"v"


@pytest.mark.parametrize(
    ("user", "error"),
    [
        ("alice", errors.PermissionDenied),
        (None, errors.UserEmpty),
        ("bob", errors.PermissionDenied),
    ],
)
def test_a_put_refused_writes_nothing(
    member: Member, user: str | None, error: type[errors.EtcdError]
) -> None:
    revision = member.kv.current_revision
    assert isinstance(member.apply(user, put=_put(b"z")), error)
    assert member.kv.current_revision == revision


def test_prev_kv_needs_read(member: Member) -> None:
    assert isinstance(member.apply("bob", put=_put(b"w")), pb.PutResponse)
    refused = member.apply("bob", put=_put(b"w", prev_kv=True))
    assert isinstance(refused, errors.PermissionDenied)
    delete = pb.DeleteRangeRequest(key=b"w", prev_kv=True)
    assert isinstance(member.apply("bob", delete_range=delete), errors.PermissionDenied)
    assert member.value(b"w") == b"v"


def test_a_stale_auth_revision_is_old(member: Member) -> None:
    req = internalpb.InternalRaftRequest(put=_put(b"a1"))
    req.header.username, req.header.auth_revision = "alice", member.auth.revision - 1
    assert isinstance(member.applier.apply(req, 1), errors.AuthOldRevision)
    assert errors.AuthOldRevision.message == "etcdserver: revision of auth store is old"


def test_txn_checks_every_compare_and_both_branches(member: Member) -> None:
    then_ok = pb.RequestOp(request_put=_put(b"a1"))
    forbidden = pb.RequestOp(request_put=_put(b"z"))
    compare_ok = pb.Compare(key=b"a1", target=pb.Compare.VERSION, version=0)
    compare_forbidden = pb.Compare(key=b"z", target=pb.Compare.VERSION, version=0)
    for txn in (
        pb.TxnRequest(compare=[compare_ok], success=[then_ok], failure=[forbidden]),
        pb.TxnRequest(compare=[compare_forbidden], success=[then_ok]),
        pb.TxnRequest(success=[pb.RequestOp(request_txn=pb.TxnRequest(success=[forbidden]))]),
    ):
        assert isinstance(member.apply("alice", txn=txn), errors.PermissionDenied)
    assert member.value(b"a1") is None
    ok = pb.TxnRequest(compare=[compare_ok], success=[then_ok])
    assert isinstance(member.apply("alice", txn=ok), pb.TxnResponse)


def test_lease_revoke_needs_write_on_every_attached_key(member: Member) -> None:
    member.apply("root", lease_grant=pb.LeaseGrantRequest(ID=7, TTL=60))
    member.apply("root", put=_put(b"a1", lease=7))
    member.apply("root", put=_put(b"z", lease=7))
    revoke = pb.LeaseRevokeRequest(ID=7)
    assert isinstance(member.apply("alice", lease_revoke=revoke), errors.PermissionDenied)
    # attaching a key of hers to a lease that holds a key she may not write: refused too
    assert isinstance(member.apply("alice", put=_put(b"a2", lease=7)), errors.PermissionDenied)
    assert isinstance(member.apply("root", lease_revoke=revoke), pb.LeaseRevokeResponse)
    assert member.value(b"z") is None


def test_compaction_needs_a_logged_in_user(member: Member) -> None:
    compaction = pb.CompactionRequest(revision=1)
    assert isinstance(member.apply(None, compaction=compaction), errors.UserEmpty)
    # any user: the Kubernetes API server compacts as the user it logs in as
    assert isinstance(member.apply("alice", compaction=compaction), pb.CompactionResponse)


def test_auth_off_checks_nothing(member: Member) -> None:
    member.auth.enabled = False
    checks = member.auth.checks
    assert isinstance(member.apply(None, put=_put(b"z")), pb.PutResponse)
    assert member.auth.checks == checks


def test_header_without_user_is_nobody() -> None:
    from etcdpy.server.apply_auth import header_info

    assert header_info(internalpb.InternalRaftRequest()) is None
    req = internalpb.InternalRaftRequest()
    req.header.username, req.header.auth_revision = "u", 3
    assert header_info(req) == AuthInfo("u", 3)
