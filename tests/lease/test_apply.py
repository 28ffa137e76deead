"""Lease requests through the Applier: keys attach and detach with puts, revoke deletes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etcdpy import errors
from etcdpy.lease.lessor import Lessor
from etcdpy.mvcc import Backend, KVStore
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.applier import Applier


class Member:
    """A store, a lessor and an applier, applying requests at increasing indexes."""

    def __init__(self, path: Path) -> None:
        self.backend = Backend(str(path), map_size=64 * 1024**2)
        self.kv = KVStore(self.backend)
        self.now = 0.0
        self.lessor = Lessor(self.backend, lambda: self.now, min_ttl=2)
        self.lessor.restore(self.kv.lease_keys())
        self.applier = Applier(self.kv, self.lessor)
        self.index = self.kv.consistent_index

    def apply(self, **fields: Any) -> Any:
        self.index += 1
        with self.kv.batch():
            return self.applier.apply(internalpb.InternalRaftRequest(**fields), self.index)

    def put(self, key: bytes, lease: int = 0, **fields: Any) -> Any:
        return self.apply(put=pb.PutRequest(key=key, value=b"v", lease=lease, **fields))

    def keys(self, lease_id: int) -> set[bytes]:
        lease = self.lessor.lookup(lease_id)
        assert lease is not None
        return lease.keys

    def close(self) -> None:
        self.kv.close()


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Member]:
    m = Member(tmp_path / "db")
    yield m
    m.close()


def grant(member: Member, lease_id: int, ttl: int = 10) -> Any:
    return member.apply(lease_grant=pb.LeaseGrantRequest(ID=lease_id, TTL=ttl))


def test_grant_answers_the_lease_and_refuses_a_taken_id(member: Member) -> None:
    resp = grant(member, 5, ttl=1)
    assert (resp.ID, resp.TTL) == (5, 2)
    assert isinstance(grant(member, 5), errors.LeaseExist)
    too_large = member.apply(lease_grant=pb.LeaseGrantRequest(ID=6, TTL=9_000_000_001))
    assert isinstance(too_large, errors.LeaseTTLTooLarge)


def test_put_with_an_unknown_lease_is_refused_without_a_write(member: Member) -> None:
    rev = member.kv.current_revision
    assert isinstance(member.put(b"k", lease=77), errors.LeaseNotFound)
    txn = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"k", lease=77))])
    assert isinstance(member.apply(txn=txn), errors.LeaseNotFound)
    assert member.kv.current_revision == rev


def test_puts_move_keys_between_leases(member: Member) -> None:
    grant(member, 1)
    grant(member, 2)
    member.put(b"k", lease=1)
    assert member.keys(1) == {b"k"}
    member.put(b"k", lease=1, ignore_value=True)
    member.put(b"k", ignore_lease=True)  # keeps lease 1
    assert member.keys(1) == {b"k"}
    assert member.kv.range(b"k", None).kvs[0].lease == 1
    member.put(b"k", lease=2)
    assert (member.keys(1), member.keys(2)) == (set(), {b"k"})
    member.put(b"k")  # a put without a lease detaches
    assert member.keys(2) == set()
    assert member.kv.range(b"k", None).kvs[0].lease == 0


def test_delete_detaches(member: Member) -> None:
    grant(member, 1)
    member.put(b"a", lease=1)
    member.put(b"b", lease=1)
    member.apply(delete_range=pb.DeleteRangeRequest(key=b"a"))
    assert member.keys(1) == {b"b"}


def test_revoke_deletes_every_attached_key_in_one_revision(member: Member) -> None:
    grant(member, 1)
    for key in (b"c", b"a", b"b"):
        member.put(key, lease=1)
    member.put(b"other")
    rev = member.kv.current_revision
    resp = member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=1))
    assert resp.header.revision == rev + 1
    assert [kv.key for kv in member.kv.range(b"", b"\0").kvs] == [b"other"]
    events = member.kv.events_since(rev + 1)
    assert [(ev.type, ev.kv.key) for ev in events] == [(1, b"a"), (1, b"b"), (1, b"c")]
    assert isinstance(member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=1)), errors.LeaseNotFound)


def test_revoke_of_a_lease_without_keys_makes_no_revision(member: Member) -> None:
    grant(member, 1)
    rev = member.kv.current_revision
    member.apply(lease_revoke=pb.LeaseRevokeRequest(ID=1))
    assert member.kv.current_revision == rev


def test_leases_keys_and_checkpoints_survive_a_restart(tmp_path: Path) -> None:
    first = Member(tmp_path / "db")
    grant(first, 1, ttl=60)
    grant(first, 2, ttl=60)
    first.put(b"k1", lease=1)
    first.put(b"k2", lease=2)
    first.apply(lease_revoke=pb.LeaseRevokeRequest(ID=2))
    cp = pb.LeaseCheckpointRequest(checkpoints=[pb.LeaseCheckpoint(ID=1, remaining_TTL=25)])
    first.apply(lease_checkpoint=cp)
    first.close()

    again = Member(tmp_path / "db")
    try:
        assert 2 not in again.lessor
        assert again.keys(1) == {b"k1"}
        again.lessor.promote()
        assert again.lessor.time_to_live(1)[1] == 25
    finally:
        again.close()
