"""Membership records in the backend: round trip, idempotent changes, the cluster id."""

from __future__ import annotations

from pathlib import Path

from etcdpy.membership import store as member_store
from etcdpy.membership.members import Member, compute_member_id
from etcdpy.mvcc.backend import Backend


def _member(name: str, port: int, learner: bool = False) -> Member:
    url = f"http://127.0.0.1:{port}"
    return Member(compute_member_id([url], "tok"), name, (url,), (), learner)


def test_fresh_backend_has_no_membership(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "db", map_size=64 * 1024**2)
    try:
        assert member_store.load(backend) is None
    finally:
        backend.close()


def test_membership_round_trips_and_changes_are_idempotent(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "db", map_size=64 * 1024**2)
    a, b, c = _member("a", 1), _member("b", 2), _member("c", 3, learner=True)
    try:
        with backend.batch() as tx:
            member_store.save_all(tx, 0xC1, [a, b], [])
        with backend.batch() as tx:
            member_store.put_member(tx, c)
            member_store.put_member(tx, c)  # a replayed add changes nothing
            member_store.remove_member(tx, b.id)
            member_store.remove_member(tx, b.id)  # nor does a replayed remove
        stored = member_store.load(backend)
        assert stored is not None
        assert stored.cluster_id == 0xC1
        assert sorted(m.id for m in stored.members) == sorted([a.id, c.id])
        assert stored.removed == {b.id}
        assert next(m for m in stored.members if m.id == c.id).is_learner
    finally:
        backend.close()
