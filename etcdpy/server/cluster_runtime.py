"""What a member of a multi-member cluster does beyond the one-member server.

``ClusterRuntime`` is owned by ``EtcdServer`` and is its peer side: it bootstraps or joins the
membership, runs the peer transport (etcdpy.peer.transport), steps what peers send into raft,
applies membership changes (ConfChange entries whose context carries the member record, as
etcd's), publishes this member's name and client URLs through the log (etcd's publish), takes
raft snapshots every ``--snapshot-count`` applied entries, ships and restores backend files
with snapshots, and fails waiting requests with ``etcdserver: no leader`` when no leader has
been known for an election timeout. What it needs of the member is ``ClusterHost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from etcdpy import ETCD_API_VERSION, errors
from etcdpy.config import EnvKnobs
from etcdpy.membership import store as member_store
from etcdpy.membership.changes import MembershipHost, learner_ready_error
from etcdpy.membership.members import (
    Cluster,
    Member,
    bootstrap_members,
    compute_cluster_id,
    validate_conf_change,
)
from etcdpy.mvcc.backend import Backend
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.membershippb import membership_pb2 as memberpb
from etcdpy.peer.probe import PeerProber
from etcdpy.peer.tls import PeerTLS, load_peer_tls
from etcdpy.peer.transport import PeerFaults, PeerTransport, peer_rpc
from etcdpy.raft.errors import RaftError
from etcdpy.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotStatus,
    StateType,
)
from etcdpy.server.ops.maintenance import Maintenance
from etcdpy.server.read_index import LinearizableReads
from etcdpy.wal.raft_storage import DurableRaftStorage

log = structlog.get_logger(__name__)

PUBLISH_RETRY_SECONDS = 0.5
# A removed member waits this long before it stops, so its last acknowledgements go out.
REMOVED_STOP_DELAY = 1.0
SNAPSHOT_DB_SUFFIX = ".snap.db"


class JoinError(Exception):
    """A member started with --initial-cluster-state existing cannot join."""


class ClusterHost(MembershipHost, Protocol):
    """What the peer side needs of the member (an EtcdServer), beyond what a membership change
    needs: the ids and membership it sets at start and on a snapshot, the stores it snapshots
    and swaps, the applied index, the waiters it resolves or fails, the log (publish)."""

    member_id: int
    cluster: Cluster

    @property
    def role(self) -> StateType: ...

    @property
    def knobs(self) -> EnvKnobs: ...

    @property
    def peer_faults(self) -> PeerFaults | None: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def storage(self) -> DurableRaftStorage: ...

    @property
    def maintenance(self) -> Maintenance: ...

    @property
    def reads(self) -> LinearizableReads: ...

    @property
    def applied_index(self) -> int: ...

    def refresh_learner(self) -> None: ...

    def replace_backend(self, db_path: Path) -> None: ...

    def resolve_waiter(self, request_id: int, result: Any) -> None: ...

    def fail_waiters(self, exc: errors.EtcdError) -> None: ...

    async def propose(self, req: internalpb.InternalRaftRequest) -> Any: ...


class ClusterRuntime:
    def __init__(self, server: ClusterHost) -> None:
        self.server = server
        self.removed: set[int] = set()
        # Conf changes refused at apply (entry indexes) and, on a member that joined, the index
        # its fetched member list was taken at: what a replay needs to repeat the first apply.
        self.rejected: set[int] = set()
        self.membership_index = 0
        self.transport: PeerTransport | None = None
        self._peer_tls: PeerTLS | None = None
        self.prober: PeerProber | None = None
        self.conf_state: ConfState | None = None
        self.snapshot_index = 0
        self.snapshot_count = server.config.snapshot_count
        self._snap_dbs: dict[int, Path] = {}
        self._no_leader_since: float | None = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        # Set once this member's name and client URLs are applied: clients are served from then
        # on (etcd's ReadyNotify), so no client ever sees a member without its client URLs.
        self.published = asyncio.Event()
        self._leader_known = asyncio.Event()  # set when a leader becomes known
        self._stopping = False
        self._forward: list[Entry] = []
        self._forward_scheduled = False
        self.on_removed_stop: Any = None  # set by run.py: stops the process

    @property
    def peer_tls(self) -> PeerTLS:
        """The TLS of connections to peers (loaded once; etcdpy.peer.tls)."""
        if self._peer_tls is None:
            self._peer_tls = load_peer_tls(self.server.config)
        return self._peer_tls

    # -- membership at start ----------------------------------------------------------------

    async def init_membership(self) -> None:
        """Load, bootstrap or fetch (joining) the membership; set the server's ids."""
        s = self.server
        cfg = s.config
        stored = member_store.load(s.backend)
        own_urls = sorted(str(u) for u in cfg.initial_advertise_peer_urls)
        joined_at: int | None = None
        if stored is not None:
            members, self.removed = stored.members, stored.removed
            self.rejected, self.membership_index = stored.rejected, stored.membership_index
            cluster_id = stored.cluster_id or compute_cluster_id(m.id for m in members)
            mine = [m for m in members if m.name == cfg.name] or [
                m for m in members if sorted(m.peer_urls) == own_urls
            ]
            if not mine:
                # Removed members are gone from the list: recognise them by the WAL's id.
                raise errors.MemberNotFound()
            member_id = mine[0].id
        elif cfg.initial_cluster_state == "existing":
            cluster_id, members, self.removed, joined_at = await self._fetch_from_peers(own_urls)
            self.membership_index = joined_at
            mine = [m for m in members if sorted(m.peer_urls) == own_urls]
            if not mine:
                raise JoinError(
                    "error validating peerURLs: member has not been added to the cluster "
                    f"(peer URLs {','.join(own_urls)}); run 'etcdctl member add' first"
                )
            member_id = mine[0].id
            members = [
                m if m.id != member_id else Member(m.id, cfg.name, m.peer_urls, (), m.is_learner)
                for m in members
            ]
        else:
            initial = {name: [str(u) for u in urls] for name, urls in cfg.cluster.items()}
            members = bootstrap_members(initial, cfg.initial_cluster_token)
            cluster_id = compute_cluster_id(m.id for m in members)
            member_id = next(m.id for m in members if m.name == cfg.name)
        if stored is None or not stored.cluster_id:
            with s.backend.batch() as tx:
                member_store.save_all(tx, cluster_id, members, self.removed)
                if joined_at is not None:
                    member_store.save_join_point(tx, joined_at, self.rejected)
        s.member_id = member_id
        s.cluster = Cluster(cluster_id)
        for member in members:
            s.cluster.add(member)
        s.cluster.set_client_urls(member_id, [str(u) for u in cfg.advertise_client_urls])
        s.refresh_learner()

    async def _fetch_from_peers(
        self, own_urls: list[str]
    ) -> tuple[int, list[Member], set[int], int]:
        """The cluster id, members and removed ids a peer knows, and the applied index they
        are at (its refused conf changes go to ``self.rejected``)."""
        cfg = self.server.config
        urls = sorted(
            str(u) for urls in cfg.cluster.values() for u in urls if str(u) not in own_urls
        )
        if not urls:
            raise JoinError("--initial-cluster names no other member to join")
        answer = await peer_rpc(urls, {"op": "members"}, timeout=5.0, tls=self.peer_tls)
        members = [Member.from_json(m.encode()) for m in answer["members"]]
        self.rejected = {int(i) for i in answer.get("rejected", ())}
        removed = {int(i) for i in answer["removed"]}
        return int(answer["cluster_id"]), members, removed, int(answer.get("index", 0))

    def check_not_removed(self) -> None:
        if self.server.member_id in self.removed:
            raise JoinError("the member has been permanently removed from the cluster")

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.server
        snap = s.storage.snapshot
        self.snapshot_index = snap.metadata.index if snap is not None else 0
        self.conf_state = snap.metadata.conf_state if snap is not None else None
        transport = PeerTransport(
            s.member_id,
            s.cluster.cluster_id,
            self,
            self.peer_tls,
            dead_after=s.config.election_timeout / 1000.0,
            faults=s.peer_faults,
        )
        transport.stats = s.metrics.peers  # ops: peer series on /metrics
        await transport.listen([str(u) for u in s.config.listen_peer_urls])
        self.transport = transport
        for member in s.cluster.sorted_members():
            transport.set_peer(member.id, member.peer_urls)
        self.prober = PeerProber(transport, s.metrics.peers)  # peer round-trip times
        self.prober.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish(), name="publish"),
            loop.create_task(self._watch_leader(), name="no-leader-watch"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.prober is not None:
            await self.prober.stop()
        if self.transport is not None:
            await self.transport.stop()

    # -- raft <-> transport -----------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        if self.transport is not None:
            self.transport.send(messages)

    def forward_proposal(self, data: bytes) -> bool:
        """On a follower that knows its leader, queue a proposal to go straight to the leader
        (what raft's forwarding does, without waiting for this member's Ready loop, which may
        be in the middle of an fsync). Proposals queued in one turn of the event loop go out
        as one message. False: propose through raft as usual."""
        s = self.server
        lead = s.leader_id
        if lead == 0 or lead == s.member_id or s.role != StateType.FOLLOWER:
            return False
        if self.transport is None or lead not in s.cluster.members:
            return False
        self._forward.append(Entry(data=data))
        if not self._forward_scheduled:
            self._forward_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_forward)
        return True

    def _flush_forward(self) -> None:
        self._forward_scheduled = False
        entries, self._forward = self._forward, []
        s = self.server
        if not entries or self.transport is None or s.leader_id in (0, s.member_id):
            return  # the leader went away meanwhile: the waiters time out, as raft drops them
        msg = Message(MessageType.PROP, to=s.leader_id, from_=s.member_id, entries=tuple(entries))
        self.transport.send([msg])

    def on_messages(self, messages: Sequence[Message]) -> None:
        node = self.server.raft.node
        me = self.server.member_id
        for msg in messages:
            if msg.to != me:
                continue
            with contextlib.suppress(RaftError):  # e.g. a response from a removed member
                node.step(msg)
        self.server.raft.kick()

    def report_unreachable(self, member_id: int) -> None:
        with contextlib.suppress(RaftError):
            self.server.raft.node.report_unreachable(member_id)

    def report_snapshot(self, member_id: int, status: SnapshotStatus) -> None:
        with contextlib.suppress(RaftError):
            self.server.raft.node.report_snapshot(member_id, status)
        self.server.raft.kick()

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def on_removed(self) -> None:
        if not self._stopping:
            log.warning("this member was removed from the cluster; stopping")
            self._request_stop()

    def _request_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self.on_removed_stop is not None:
            asyncio.get_running_loop().call_later(REMOVED_STOP_DELAY, self.on_removed_stop)

    # -- snapshots --------------------------------------------------------------------------

    def snapshot_dir(self) -> Path:
        return self.server.data_dir / "member" / "snap"

    async def snapshot_db(self) -> Path:
        """A consistent copy of the backend (at the applied index or later), for a follower."""
        path = self.snapshot_dir() / f"send-{time.monotonic_ns():x}.db"
        async with self.server.maintenance.backend_lock:  # ops: not while a defrag swaps the file
            await asyncio.get_running_loop().run_in_executor(
                None, self.server.backend.copy_to, str(path)
            )
        return path

    def on_snapshot(self, message: Message, db_path: Path) -> None:
        index = message.snapshot.metadata.index if message.snapshot is not None else 0
        for old_index in [i for i in self._snap_dbs if i < index]:
            with contextlib.suppress(OSError):
                self._snap_dbs.pop(old_index).unlink()
        self._snap_dbs[index] = db_path
        self.on_messages([message])

    def snapshot_db_path(self, index: int) -> Path:
        return self.snapshot_dir() / f"{index:016x}{SNAPSHOT_DB_SUFFIX}"

    def restore_snapshot(self, snap: Snapshot) -> None:
        """Raft installed a snapshot from the leader: swap in the backend that came with it."""
        index = snap.metadata.index
        path = self._snap_dbs.pop(index, None) or self.snapshot_db_path(index)
        if not path.exists():
            raise RuntimeError(f"snapshot {index} arrived without its backend file")
        s = self.server
        s.replace_backend(path)
        self.conf_state = snap.metadata.conf_state
        self.snapshot_index = index
        self.reload_membership()
        log.info("restored from snapshot", index=index, applied=s.applied_index)

    def reload_membership(self) -> None:
        s = self.server
        stored = member_store.load(s.backend)
        if stored is None:
            return
        own = s.cluster.members.get(s.member_id)
        s.cluster = Cluster(s.cluster.cluster_id)
        for member in stored.members:
            s.cluster.add(member)
        if own is not None and own.client_urls and s.member_id in s.cluster.members:
            s.cluster.set_client_urls(s.member_id, own.client_urls)
        self.removed = stored.removed
        self.rejected, self.membership_index = stored.rejected, stored.membership_index
        s.refresh_learner()
        self._sync_peers()
        if s.member_id in self.removed:
            self._request_stop()

    def _sync_peers(self) -> None:
        if self.transport is None:
            return
        members = self.server.cluster.members
        for member in members.values():
            self.transport.set_peer(member.id, member.peer_urls)
        for member_id in self.removed:
            self.transport.remove_peer(member_id)

    def maybe_snapshot(self) -> None:
        """Every --snapshot-count applied entries: snapshot, release the WAL before it."""
        s = self.server
        applied = s.applied_index
        if applied - self.snapshot_index < self.snapshot_count:
            return
        s.backend.sync()  # the WAL before the snapshot goes away: the backend must hold it
        conf_state = self.conf_state or s.raft.node.status().conf_state
        s.storage.create_snapshot(
            applied, conf_state, b"", catch_up_entries=s.knobs.snapshot_catchup_entries
        )
        self.snapshot_index = applied
        s.storage.purge(s.config.max_wals or 1 << 30, s.config.max_snapshots or 1 << 30)
        log.info("saved snapshot", index=applied)

    # -- applying membership changes --------------------------------------------------------

    def apply_conf_change(self, entry: Entry, already_in_backend: bool) -> None:
        """Validate (etcd's ValidateConfigurationChange), then apply to raft and membership.

        A change no longer valid is applied to raft as a no-op (node id 0) and its proposer
        gets the error. A replayed entry (its effect already in the backend, or in the member
        list a joining member fetched) is not validated again: it is a no-op for raft exactly
        when it was refused the first time, which the backend remembers."""
        s = self.server
        cc = ConfChange.decode(entry.data)
        context: dict[str, Any] = json.loads(cc.context) if cc.context else {}
        replay = already_in_backend or entry.index <= self.membership_index
        error: errors.EtcdError | None = None
        if replay:
            refused = entry.index in self.rejected
        else:
            error = self._validate(cc, context)
            refused = error is not None
        changes = cc.changes
        if refused:
            cc = ConfChange(
                tuple(ConfChangeSingle(c.type, 0) for c in changes), cc.transition, cc.context
            )
        self.conf_state = s.raft.node.apply_conf_change(cc)
        if not replay:
            tx = s.backend.current_batch
            assert tx is not None, "conf changes are applied inside the apply batch"
            if refused:
                self.rejected.add(entry.index)
                member_store.put_rejected(tx, entry.index)
                log.warning(
                    "membership change refused at apply",
                    index=entry.index,
                    changes=[f"{c.type.name}({c.node_id:x})" for c in changes],
                    error=error.message if error is not None else "",
                )
            else:
                for change in cc.changes:
                    self._apply_change(tx, change.type, change.node_id, context)
                self._sync_peers()
                s.refresh_learner()
        request_id = int(context.get("req", 0))
        if request_id:
            s.resolve_waiter(request_id, error if error is not None else s.cluster.sorted_members())

    def _validate(self, cc: ConfChange, context: dict[str, Any]) -> errors.EtcdError | None:
        members = self.server.cluster.members
        for change in cc.changes:
            error = validate_conf_change(
                members, self.removed, change.type, change.node_id, context
            )
            if error is not None:
                return error
        return None

    def _apply_change(
        self, tx: Any, kind: ConfChangeType, node_id: int, context: dict[str, Any]
    ) -> None:
        s = self.server
        cluster = s.cluster
        if kind in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
            if node_id in self.removed:
                return
            existing = cluster.members.get(node_id)
            if context.get("promote") and existing is not None:
                member = Member(
                    existing.id, existing.name, existing.peer_urls, existing.client_urls, False
                )
            elif "member" in context:
                member = Member.from_json(json.dumps(context["member"]).encode())
            else:
                return  # a bootstrap entry: the member is known from --initial-cluster
            cluster.add(member)
            member_store.put_member(tx, member)
        elif kind == ConfChangeType.REMOVE_NODE:
            cluster.remove(node_id)
            self.removed.add(node_id)
            member_store.remove_member(tx, node_id)
            if self.transport is not None:
                self.transport.remove_peer(node_id)
            if node_id == s.member_id:
                self._request_stop()
        elif kind == ConfChangeType.UPDATE_NODE:
            existing = cluster.members.get(node_id)
            if existing is None or "member" not in context:
                return
            urls = tuple(context["member"].get("peerURLs", ()))
            member = Member(
                existing.id, existing.name, urls, existing.client_urls, existing.is_learner
            )
            cluster.add(member)
            member_store.put_member(tx, member)

    def apply_attr_set(self, req: memberpb.ClusterMemberAttrSetRequest) -> None:
        """etcd's publish: a member's name and client URLs, replicated through the log."""
        s = self.server
        existing = s.cluster.members.get(req.member_ID)
        if existing is None:
            return
        attrs = req.member_attributes
        member = Member(
            existing.id,
            attrs.name,
            existing.peer_urls,
            tuple(attrs.client_urls),
            existing.is_learner,
        )
        s.cluster.add(member)
        tx = s.backend.current_batch
        if tx is not None:
            member_store.put_member(tx, member)

    async def _publish(self) -> None:
        s = self.server
        attrs = memberpb.Attributes(
            name=s.config.name, client_urls=[str(u) for u in s.config.advertise_client_urls]
        )
        while True:
            req = internalpb.InternalRaftRequest(
                cluster_member_attr_set=memberpb.ClusterMemberAttrSetRequest(
                    member_ID=s.member_id, member_attributes=attrs
                )
            )
            self._leader_known.clear()  # (a leader elected while this fails wakes the retry)
            try:
                await s.propose(req)
                self.published.set()
                log.info(
                    "published local member to cluster through raft",
                    name=attrs.name,
                    client_urls=list(attrs.client_urls),
                    **{
                        "local-member-id": f"{s.member_id:x}",
                        "cluster-id": f"{s.cluster.cluster_id:x}",
                    },
                )
                # etcd logs this once the cluster version is set; etcdpy's is fixed (3.4), and
                # harnesses (etcd's e2e tests) wait for this line with the publish line.
                major, minor = ETCD_API_VERSION.split(".")[:2]
                log.info(
                    "enabled capabilities for version", **{"cluster-version": f"{major}.{minor}"}
                )
                return
            except errors.Stopped:
                return
            except errors.EtcdError:
                # Mostly "no leader" at start: retry as soon as one is known (clients wait for
                # this publish, so a fixed sleep would delay every start by up to that long).
                # (asyncio.wait, not wait_for: wait_for may swallow a cancel that comes as the
                # leader is found, and the member would never stop.)
                known = asyncio.ensure_future(self._leader_known.wait())
                try:
                    await asyncio.wait({known}, timeout=PUBLISH_RETRY_SECONDS)
                finally:
                    known.cancel()

    # -- leader watch -----------------------------------------------------------------------

    def on_leader_change(self, old: int, new: int) -> None:
        s = self.server
        if new == 0:
            self._no_leader_since = time.monotonic()
        else:
            self._no_leader_since = None
            self._leader_known.set()
        if old and old != new:
            # A ReadIndex round asked of the old leader may never come back (etcd's retryable
            # answer); writes in flight stay: they may still commit under the new leader.
            s.reads.fail_all(errors.LeaderChanged())

    def no_leader_for_long(self) -> bool:
        since = self._no_leader_since
        timeout = self.server.config.election_timeout / 1000.0
        return since is not None and time.monotonic() - since >= timeout

    async def _watch_leader(self) -> None:
        s = self.server
        interval = s.config.heartbeat_interval / 1000.0
        while True:
            await asyncio.sleep(interval)
            if self.no_leader_for_long():
                s.fail_waiters(errors.NoLeader())

    # -- requests from peers ----------------------------------------------------------------

    def handle_rpc(self, request: dict[str, Any]) -> dict[str, Any]:
        s = self.server
        op = request.get("op")
        if op == "members":
            # The membership as of the applied index (applying is synchronous, so this is a
            # consistent cut), with the refused conf changes a joiner's raft must skip.
            return {
                "cluster_id": s.cluster.cluster_id,
                "members": [m.to_json().decode() for m in s.cluster.sorted_members()],
                "removed": sorted(self.removed),
                "rejected": sorted(self.rejected),
                "index": s.applied_index,
            }
        if op == "hashkv":  # a restarted member's initial corruption check
            from etcdpy.server.ops.corrupt_check import answer_peer_hash_kv

            return answer_peer_hash_kv(s.maintenance.hash_kv, s.member_id, int(request["revision"]))
        if op == "learner_ready":
            err = learner_ready_error(s, int(request["id"]))
            return {"error": None if err is None else type(err).__name__}
        return {"error": f"unknown op {op!r}"}
