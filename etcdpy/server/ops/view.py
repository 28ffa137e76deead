"""What /metrics and /health read from a running EtcdServer (no hooks: plain attribute reads).

``ViewedMember`` is what is read; the server is one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from etcdpy import ETCD_API_VERSION
from etcdpy.membership.changes import MemberIdentity
from etcdpy.mvcc.backend import Backend
from etcdpy.observability.metrics import ServerState
from etcdpy.raft.types import StateType
from etcdpy.server.ops.defrag import DefragHost


class ViewedMember(MemberIdentity, DefragHost, Protocol):
    """The member's state the metrics and health endpoints read (an EtcdServer's). Its lease
    driver, which exists only once the member has started, is read if it is there."""

    @property
    def role(self) -> StateType: ...

    @property
    def commit_index(self) -> int: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def pending_proposals(self) -> int: ...


def cluster_version() -> str:
    """The cluster version etcd reports: major.minor.0 of the version we speak for."""
    major, minor = ETCD_API_VERSION.split(".")[:2]
    return f"{major}.{minor}.0"


class EtcdServerView:
    def __init__(self, server: ViewedMember) -> None:
        self._server = server

    def metrics_snapshot(self) -> ServerState:
        s = self._server
        me = s.cluster.members.get(s.member_id)
        backend = s.backend
        kv = s.kv
        return ServerState(
            member_id=s.member_id,
            leader_id=s.leader_id,
            is_leader=s.role == StateType.LEADER,
            is_learner=me is not None and me.is_learner,
            committed_index=s.commit_index,
            applied_index=s.applied_index,
            pending_proposals=s.pending_proposals,
            quota_backend_bytes=s.config.quota_bytes or 0,
            db_size=backend.size(),
            db_size_in_use=backend.size_in_use(),
            keys=kv.index.live_keys,  # as etcd's keysGauge: keys that exist now
            current_revision=kv.current_revision,
            compact_revision=kv.compact_revision,
            server_version=ETCD_API_VERSION,
            # etcd labels the metric with major.minor (version.Cluster), /version says x.y.0
            cluster_version=cluster_version().rsplit(".", 1)[0],
            open_read_transactions=_open_readers(backend),
            leases_expired=getattr(getattr(s, "leases", None), "revoked_expired", 0),
            mvcc_ops=_sum_ops(kv.counts.snapshot(), s.metrics.frontend_mvcc),
            **_with_frontends(watcher_counts(kv), s.metrics.frontend_watchers.values()),
        )


def _sum_ops(core: list[int], frontends: list[int]) -> tuple[int, int, int, int, int]:
    ranges, puts, deletes, txns, put_bytes = (a + b for a, b in zip(core, frontends, strict=True))
    return ranges, puts, deletes, txns, put_bytes


def _with_frontends(counts: dict[str, int], frontends: Iterable[tuple[int, int]]) -> dict[str, int]:
    """The core's watcher counts plus those of the front-end processes' watch streams."""
    if counts:
        for watchers, slow in frontends:
            counts["watchers"] += watchers
            counts["slow_watchers"] += slow
    return counts


def watcher_counts(kv: object) -> dict[str, int]:
    """Watcher counts of a watchable store (a plain KVStore has none)."""
    synced = getattr(kv, "synced", None)
    unsynced = getattr(kv, "unsynced", None)
    victims = getattr(kv, "victims", None)
    if synced is None or unsynced is None or victims is None:
        return {}
    slow = len(unsynced) + len(victims)
    return {"watchers": len(synced) + slow, "slow_watchers": slow}


def _open_readers(backend: Backend) -> int:
    try:
        return int(backend.env.info()["num_readers"])
    except Exception:  # a closed or swapping environment
        return 0
