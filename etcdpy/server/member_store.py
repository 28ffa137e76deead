"""Membership kept in the backend: member records, removed ids and the cluster id.

The records live in the same LMDB file as the keys, written in the apply transaction of the
entry that changed them, so a backend shipped with a raft snapshot carries the membership of
its index. Applying a change is idempotent (an add is an upsert, a remove a delete that also
remembers the id), because a restarted member replays the log tail over a backend that may
already hold the effect of those entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend, Tx
from etcdpy.server.membership import Member

CLUSTER_ID_KEY = b"clusterID"


def _key(member_id: int) -> bytes:
    return member_id.to_bytes(8, "big")


@dataclass(slots=True)
class StoredMembership:
    cluster_id: int
    members: list[Member] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)


def load(backend: Backend) -> StoredMembership | None:
    """What the backend holds, or None for a backend that was never bootstrapped."""
    with backend.read() as tx:
        raw_id = tx.get(bk.CLUSTER, CLUSTER_ID_KEY)
        members = [Member.from_json(v) for _k, v in tx.items(bk.MEMBERS)]
        removed = {int.from_bytes(k, "big") for k, _v in tx.items(bk.MEMBERS_REMOVED)}
    if raw_id is None:
        if not members:
            return None
        return StoredMembership(0, members, removed)  # written before the id was kept
    return StoredMembership(int.from_bytes(raw_id, "big"), members, removed)


def save_all(tx: Tx, cluster_id: int, members: Iterable[Member], removed: Iterable[int]) -> None:
    tx.put(bk.CLUSTER, CLUSTER_ID_KEY, cluster_id.to_bytes(8, "big"))
    for m in members:
        tx.put(bk.MEMBERS, _key(m.id), m.to_json())
    for member_id in removed:
        tx.put(bk.MEMBERS_REMOVED, _key(member_id), b"removed")


def put_member(tx: Tx, member: Member) -> None:
    tx.put(bk.MEMBERS, _key(member.id), member.to_json())


def remove_member(tx: Tx, member_id: int) -> None:
    tx.delete(bk.MEMBERS, _key(member_id))
    tx.put(bk.MEMBERS_REMOVED, _key(member_id), b"removed")
