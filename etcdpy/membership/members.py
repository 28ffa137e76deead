"""Cluster membership: member and cluster ids computed as etcd computes them, and member records.

etcd derives a member's id from its sorted peer URLs and the cluster token (plus a timestamp for
members added at run time), and the cluster id from the sorted member ids. Computing them the same
way means an etcdpy member bootstrapped with the same flags as an etcd member reports the same ids,
which keeps responses comparable in differential tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from etcdpy import errors
from etcdpy.raft.types import ConfChangeType

# At most this many learners at once (etcd's maxLearners).
MAX_LEARNERS = 1


def compute_member_id(
    peer_urls: Sequence[str], cluster_token: str, unix_time: int | None = None
) -> int:
    material = "".join(sorted(peer_urls)) + cluster_token
    if unix_time is not None:
        material += str(unix_time)
    return int.from_bytes(hashlib.sha1(material.encode()).digest()[:8], "big")


def compute_cluster_id(member_ids: Iterable[int]) -> int:
    material = b"".join(m.to_bytes(8, "big") for m in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(material).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    def to_json(self) -> bytes:
        record = {
            "id": self.id,
            "name": self.name,
            "peerURLs": list(self.peer_urls),
            "clientURLs": list(self.client_urls),
            "isLearner": self.is_learner,
        }
        return json.dumps(record, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Member:
        record = json.loads(data)
        return cls(
            id=int(record["id"]),
            name=str(record.get("name", "")),
            peer_urls=tuple(record.get("peerURLs", ())),
            client_urls=tuple(record.get("clientURLs", ())),
            is_learner=bool(record.get("isLearner", False)),
        )


@dataclass(slots=True)
class Cluster:
    """The members this node knows of, keyed by id (iterated in id order)."""

    cluster_id: int
    members: dict[int, Member] = field(default_factory=dict)

    def add(self, member: Member) -> None:
        self.members[member.id] = member

    def remove(self, member_id: int) -> None:
        self.members.pop(member_id, None)

    def set_client_urls(self, member_id: int, client_urls: Sequence[str]) -> None:
        member = self.members.get(member_id)
        if member is not None:
            self.members[member_id] = replace(member, client_urls=tuple(client_urls))

    def sorted_members(self) -> list[Member]:
        return [self.members[m] for m in sorted(self.members)]


def bootstrap_members(initial_cluster: dict[str, list[str]], cluster_token: str) -> list[Member]:
    """The members of a new cluster, from ``--initial-cluster`` (name -> peer URLs)."""
    members = [
        Member(compute_member_id(urls, cluster_token), name, tuple(sorted(urls)))
        for name, urls in initial_cluster.items()
    ]
    return sorted(members, key=lambda m: m.id)


def validate_conf_change(
    members: Mapping[int, Member],
    removed: Container[int],
    kind: ConfChangeType,
    node_id: int,
    context: Mapping[str, Any],
) -> errors.EtcdError | None:
    """etcd's ValidateConfigurationChange: is one change still valid against ``members``?

    Run when the change is applied, on every member against the same membership, so a change
    that was valid when proposed but lost a race (two adds of one peer URL, a second remove
    of one member, a promote of a member already promoted) is refused identically everywhere.
    ``context`` is the change's context (see changes._configure); bootstrap entries carry
    none and are always valid. Returns the error the proposer gets, or None.
    """
    if node_id in removed:
        return errors.MemberNotFound()  # etcd: membership.ErrIDRemoved
    if kind in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
        if context.get("promote"):
            member = members.get(node_id)
            if member is None:
                return errors.MemberNotFound()
            if not member.is_learner:
                return errors.MemberNotLearner()
            return None
        record = context.get("member")
        if record is None:
            return None  # a bootstrap entry: the member is known from --initial-cluster
        if node_id in members:
            return errors.MemberExist()
        if _urls_taken(members, record.get("peerURLs", ()), except_id=None):
            return errors.PeerURLExist()
        if record.get("isLearner") and sum(m.is_learner for m in members.values()) >= MAX_LEARNERS:
            return errors.TooManyLearners()
        return None
    if kind == ConfChangeType.REMOVE_NODE:
        return None if node_id in members else errors.MemberNotFound()
    if kind == ConfChangeType.UPDATE_NODE:
        if node_id not in members:
            return errors.MemberNotFound()
        record = context.get("member") or {}
        if _urls_taken(members, record.get("peerURLs", ()), except_id=node_id):
            return errors.PeerURLExist()
    return None


def _urls_taken(members: Mapping[int, Member], urls: Iterable[str], except_id: int | None) -> bool:
    wanted = set(urls)
    return any(m.id != except_id and wanted.intersection(m.peer_urls) for m in members.values())
