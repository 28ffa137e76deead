"""Membership kept in the backend: member records, removed ids and the cluster id.

The records live in the same LMDB file as the keys, written in the apply transaction of the
entry that changed them, so a backend shipped with a raft snapshot carries the membership of
its index. Applying a change is idempotent (an add is an upsert, a remove a delete that also
remembers the id), because a restarted member replays the log tail over a backend that may
already hold the effect of those entries.

Two more records make the replay of conf changes repeat what their first application did:
the indexes of conf changes refused at apply time (raft must skip them again), and, for a
member that joined with a member list fetched from a peer, the index that list was taken at
(conf changes up to it are already in the list and are not re-validated).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from etcdpy.membership.members import Member
from etcdpy.mvcc import backend as bk
from etcdpy.mvcc.backend import Backend, Tx

CLUSTER_ID_KEY = b"clusterID"
# Conf changes refused at apply time, one key per entry index (in the cluster bucket).
REJECTED_PREFIX = b"rejectedConfChange/"
# The applied index of the member list a joining member fetched from a peer.
MEMBERSHIP_INDEX_KEY = b"membershipIndex"


def _key(member_id: int) -> bytes:
    return member_id.to_bytes(8, "big")


@dataclass(slots=True)
class StoredMembership:
    cluster_id: int
    members: list[Member] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)  # indexes of refused conf changes
    membership_index: int = 0  # conf changes up to here are already in ``members``


def load(backend: Backend) -> StoredMembership | None:
    """What the backend holds, or None for a backend that was never bootstrapped."""
    with backend.read() as tx:
        raw_id = tx.get(bk.CLUSTER, CLUSTER_ID_KEY)
        members = [Member.from_json(v) for _k, v in tx.items(bk.MEMBERS)]
        removed = {int.from_bytes(k, "big") for k, _v in tx.items(bk.MEMBERS_REMOVED)}
        rejected: set[int] = set()
        membership_index = 0
        for key, value in tx.items(bk.CLUSTER):
            if key.startswith(REJECTED_PREFIX):
                rejected.add(int.from_bytes(key[len(REJECTED_PREFIX) :], "big"))
            elif key == MEMBERSHIP_INDEX_KEY:
                membership_index = int.from_bytes(value, "big")
    if raw_id is None:
        if not members:
            return None
        # written before the id was kept
        return StoredMembership(0, members, removed, rejected, membership_index)
    cluster_id = int.from_bytes(raw_id, "big")
    return StoredMembership(cluster_id, members, removed, rejected, membership_index)


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


def put_rejected(tx: Tx, index: int) -> None:
    """The conf change at ``index`` was refused when applied (raft applied it as a no-op)."""
    tx.put(bk.CLUSTER, REJECTED_PREFIX + index.to_bytes(8, "big"), b"")


def save_join_point(tx: Tx, membership_index: int, rejected: Iterable[int]) -> None:
    """What a joining member learnt with the member list: the index it was taken at, and the
    conf changes refused before it."""
    tx.put(bk.CLUSTER, MEMBERSHIP_INDEX_KEY, membership_index.to_bytes(8, "big"))
    for index in rejected:
        put_rejected(tx, index)
