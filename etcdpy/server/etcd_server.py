"""EtcdServer: the seam between the API layer and the core.

The API layer only ever calls ``propose`` (a write through the log, waiting for its applied
result), ``linearizable_read`` (ReadIndex, then wait until applied), the local read helpers and
the status/member queries. It never touches raft, mvcc or the lessor directly, so the API can move
to front-end processes later without changing the core.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from etcdpy import ETCD_API_VERSION, errors
from etcdpy.auth.info import CALLER, AuthInfo
from etcdpy.auth.store import ROOT_USER, AuthStore
from etcdpy.auth.tokens import SimpleTokens, provider
from etcdpy.config import EnvKnobs, ServerConfig
from etcdpy.corelink.replica_feed import ReplicaFeed
from etcdpy.lease.driver import DEFAULT_CHECKPOINT_INTERVAL, LeaseDriver
from etcdpy.lease.lessor import Lessor, min_lease_ttl
from etcdpy.membership.members import Cluster
from etcdpy.mvcc.backend import Backend, replace_data_file
from etcdpy.mvcc.errors import CompactedError, FutureRevError
from etcdpy.mvcc.watchable_store import WatchableStore
from etcdpy.mvcc.watcher import WatchStream
from etcdpy.observability.request_ids import RAFT_REQUEST_ID
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.peer.transport import PeerFaults
from etcdpy.raft.config import Config as RaftConfig
from etcdpy.raft.errors import ProposalDroppedError
from etcdpy.raft.rawnode import RawNode
from etcdpy.raft.types import (
    Entry,
    EntryType,
    Message,
    ReadState,
    Ready,
    SoftState,
    StateType,
)
from etcdpy.server.applier import (
    Applier,
    EncodedRange,
    Response,
    encoded_range,
    mvcc_error,
)
from etcdpy.server.cluster_runtime import ClusterRuntime
from etcdpy.server.idgen import RequestIdGenerator
from etcdpy.server.ops.alarms import alarm_text
from etcdpy.server.ops.compactor import PeriodicCompactor, RevisionCompactor
from etcdpy.server.raft_node import RaftNode
from etcdpy.server.read_index import LinearizableReads
from etcdpy.server.wait import AppliedIndexWaiters, Deadlines, Wait
from etcdpy.server.watch_sync import WatchSync
from etcdpy.wal.raft_storage import DurableRaftStorage

log = structlog.get_logger(__name__)

MEMBERS_BUCKET = b"members"
DEFAULT_MAP_BYTES = 2 * 1024**3
MIN_MAP_BYTES = 64 * 1024**2
# etcd refuses new proposals when apply lags commit by this much (ErrTooManyRequests).
MAX_GAP_BETWEEN_APPLY_AND_COMMIT = 5000
DEADLINE_SWEEP_SECONDS = 0.1


def _raft_trace(text: str) -> None:
    log.info("raft", trace=text)


class EtcdServer:
    def __init__(
        self,
        config: ServerConfig,
        knobs: EnvKnobs | None = None,
        peer_faults: PeerFaults | None = None,
    ) -> None:
        self.config = config
        # ETCDPY_* settings (etcdpy.config.EnvKnobs); production's defaults unless run.py says
        self.knobs = knobs or EnvKnobs()
        # A test's network partition for the peer transport; None in production
        self.peer_faults = peer_faults
        self.data_dir = Path(config.data_dir)
        self.member_id = 0
        self.cluster = Cluster(cluster_id=0)
        # Whether this member is a learner: read per request by the API (api/learner_guard.py),
        # so it is a plain attribute, refreshed whenever the membership changes.
        self.is_learner = False
        self.leader_id = 0
        self.role = StateType.FOLLOWER
        self._wait = Wait()
        self._stopped = False
        self._request_timeout = 5.0 + 2 * config.election_timeout / 1000.0
        self._deadlines = Deadlines()
        from etcdpy.observability.metrics import ServerMetrics  # ops: counters for /metrics

        self.metrics = ServerMetrics(slow_apply_seconds=config.experimental_warning_apply_duration)
        # Changes for the front-end processes' read replicas (--frontend-processes)
        self.feed = ReplicaFeed(self._feed_header)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        # First: bad --auth-token options or key files refuse the start before anything opens.
        tokens = provider(
            self.config.auth_token, self.config.auth_token_ttl, time.monotonic, time.time
        )
        member_dir = self.data_dir / "member"
        (member_dir / "snap").mkdir(parents=True, exist_ok=True)
        quota = self.config.quota_bytes or DEFAULT_MAP_BYTES
        # LMDB needs room beyond the quota for copy-on-write pages of the open transaction.
        self.backend = Backend(member_dir / "snap" / "db", map_size=max(2 * quota, MIN_MAP_BYTES))
        self.watch_sync = WatchSync()
        self.kv = WatchableStore(self.backend, wakeup=self.watch_sync.wake)
        self.kv.change_sink = self.feed
        self.watch_sync.start(self.kv)
        self.lessor = Lessor(
            self.backend,
            time.monotonic,
            min_ttl=min_lease_ttl(self.config.election_ticks, self.config.heartbeat_interval),
            checkpoint_interval=DEFAULT_CHECKPOINT_INTERVAL,
        )
        self.lessor.restore(self.kv.lease_keys())
        self.applier = Applier(self.kv, self.lessor)
        self.auth = AuthStore(self.backend, tokens)  # users, roles, tokens (etcdpy.auth)
        # Front-ends reload their auth view with the commit of any auth change (the feed's
        # AUTH_CHANGED flag): a revoke reaches them before its client hears OK.
        self.auth.on_change = self._auth_changed
        self.applier.auth = self.auth
        from etcdpy.server.ops.maintenance import Maintenance  # ops: alarms, hashes, snapshots

        self.maintenance = Maintenance(self)
        self.applier.alarms = self.maintenance.alarms  # alarm requests, refusals while one is on

        # -- cluster: membership, ids, snapshot backend (etcdpy.server.cluster_runtime) --
        self.cluster_runtime = ClusterRuntime(self)
        await self.cluster_runtime.init_membership()
        self.storage, hard_state, existed = DurableRaftStorage.open_or_create(
            self.data_dir, self.member_id, self.cluster.cluster_id
        )
        self._restore_interrupted_snapshot()
        self.cluster_runtime.check_not_removed()
        if existed and self.config.experimental_initial_corrupt_check:
            await self._check_initial_hash_kv()  # before serving peers or clients, as etcd
        # -- end cluster --
        # Raft re-delivers every committed entry after the snapshot: the conf changes among them
        # rebuild raft's membership; KV entries the backend already has are skipped by index.
        self.applied_index = self.storage.snapshot.metadata.index if self.storage.snapshot else 0
        self.raft_term = hard_state.term
        self.commit_index = hard_state.commit
        self._applied = AppliedIndexWaiters(self.applied_index)
        heartbeat_ms = self.config.heartbeat_interval
        raft_config = RaftConfig(
            id=self.member_id,
            storage=self.storage.storage,
            rand=random.Random(self.member_id ^ time.monotonic_ns()),
            election_tick=max(2, self.config.election_ticks),
            heartbeat_tick=1,
            applied=self.applied_index,
            check_quorum=True,
            pre_vote=self.config.pre_vote,
            # ETCDPY_RAFT_TRACE=1 logs the raft core's trace (elections, votes) for debugging.
            logger=_raft_trace if self.knobs.raft_trace else None,
        )
        node = RawNode(raft_config)
        if not existed and self.config.initial_cluster_state == "new":
            node.bootstrap(sorted(self.cluster.members))
        self._ids = RequestIdGenerator(self.member_id, time.time_ns() // 1_000_000)
        self.raft = RaftNode(node, self, tick_seconds=heartbeat_ms / 1000.0)
        self.reads = LinearizableReads(self._request_read_index, self._applied)
        self._campaign_when_applied = len(self.cluster.members) == 1
        self._loop = asyncio.get_running_loop()
        self._sweeper = asyncio.create_task(self._sweep_deadlines(), name="deadlines")
        self._background = [self._sweeper]
        if isinstance(tokens, SimpleTokens):
            self._background.append(
                asyncio.create_task(self._expire_simple_tokens(tokens), name="simple-tokens")
            )
        compactor = self._make_compactor()
        if compactor is not None:
            self._background.append(
                asyncio.create_task(self._auto_compact(compactor), name="auto-compaction")
            )
        self.leases = LeaseDriver(
            self.lessor,
            self.propose_as_root,
            lambda: self.role == StateType.LEADER,
            self._wait_applied_committed,
            self._request_timeout,
            self._leader_client_endpoint,
        )
        self.raft.start()
        await self.cluster_runtime.start()
        self.raft.kick()
        self.leases.start()
        log.info(
            "etcdpy member started",
            member_id=f"{self.member_id:x}",
            cluster_id=f"{self.cluster.cluster_id:x}",
            data_dir=str(self.data_dir),
        )

    async def _check_initial_hash_kv(self) -> None:
        from etcdpy.peer.transport import peer_rpc
        from etcdpy.server.ops.corrupt_check import HashAt, check_initial_hash_kv

        tls = self.cluster_runtime.peer_tls
        timeout = self._request_timeout

        async def ask(urls: Sequence[str], request: dict[str, object]) -> dict[str, Any]:
            return await peer_rpc(urls, request, timeout, tls)

        peers = [
            (m.id, m.peer_urls) for m in self.cluster.sorted_members() if m.id != self.member_id
        ]
        local = HashAt(*self.maintenance.hash_kv(0))
        try:
            await check_initial_hash_kv(self.member_id, local, peers, ask, timeout)
        except BaseException:
            await self.watch_sync.stop()
            self.storage.close()
            self.backend.close()
            raise

    async def stop(self) -> None:
        await self.leases.stop()  # records remaining TTLs through the log while it still can
        self._stopped = True
        await self.watch_sync.stop()
        for task in self._background:
            task.cancel()
        await self.cluster_runtime.stop()
        await self.raft.stop()
        self._wait.fail_all(errors.Stopped())
        self.reads.fail_all(errors.Stopped())
        self.storage.close()
        self.backend.close()

    # -- the seam used by the API layer --------------------------------------------------

    async def propose_as_root(self, req: internalpb.InternalRaftRequest) -> Any:
        """The member's own requests (revoking expired leases) are checked at apply as root at
        the current auth revision, as etcd's authStore.WithRoot makes them: with no user, auth
        would refuse to revoke a lease that holds keys, and it would never expire."""
        if not self.auth.enabled:
            return await self.propose(req)
        reset = CALLER.set(AuthInfo(ROOT_USER, self.auth.revision))
        try:
            return await self.propose(req)
        finally:
            CALLER.reset(reset)

    async def propose(self, req: internalpb.InternalRaftRequest) -> Any:
        """Puts the request through the log; returns the applied response or raises."""
        if self._stopped:
            raise errors.Stopped()
        if self.is_learner and not req.HasField("cluster_member_attr_set"):
            raise errors.NotSupportedForLearner()  # etcd: learners serve serializable reads only
        if self.commit_index > self.applied_index + MAX_GAP_BETWEEN_APPLY_AND_COMMIT:
            raise errors.TooManyRequests()
        request_id = self._ids.next()
        req.header.ID = request_id
        caller = CALLER.get()
        if caller is not None:  # apply checks the request as this user (etcd's header)
            req.header.username = caller.username
            req.header.auth_revision = caller.revision
        RAFT_REQUEST_ID.set(request_id)  # for the slow-request log (api/grpc_metrics.py)
        data = req.SerializeToString()
        if len(data) > self.config.max_request_bytes:
            raise errors.RequestTooLarge()
        future = self._wait.register(request_id)
        if not self.cluster_runtime.forward_proposal(data):  # a follower sends it at once
            try:
                self.raft.node.propose(data)
            except ProposalDroppedError:
                self._wait.cancel(request_id)
                raise errors.NoLeader() from None
            self.raft.kick()
        self._deadlines.add(
            self._loop.time() + self._request_timeout,
            future,
            functools.partial(self._wait.cancel, request_id),
        )
        try:
            result = await future
        except errors.EtcdError:
            self.metrics.proposals_failed += 1  # ops: etcd_server_proposals_failed_total
            raise
        if isinstance(result, errors.EtcdError):
            raise result
        return result

    async def linearizable_read(self) -> None:
        if self.cluster_runtime.no_leader_for_long():
            raise errors.NoLeader()
        if self.is_learner:
            raise errors.NotSupportedForLearner()
        future = self.reads.wait()
        self._deadlines.add(self._loop.time() + self._request_timeout, future)
        await future

    def _make_compactor(self) -> PeriodicCompactor | RevisionCompactor | None:
        retention = self.config.auto_compaction_retention_value
        if retention <= 0:
            return None
        revision = lambda: self.kv.current_revision  # noqa: E731
        if self.config.auto_compaction_mode == "revision":
            return RevisionCompactor(int(retention), revision)
        return PeriodicCompactor(retention, time.monotonic, revision)

    async def _auto_compact(self, compactor: PeriodicCompactor | RevisionCompactor) -> None:
        """etcd's compactor: acts only on the leader, through the log like a client's Compact."""
        while True:
            await asyncio.sleep(compactor.poll_interval)
            rev = compactor.due() if self.role == StateType.LEADER else None
            if rev is not None:
                ok = True
                try:
                    await self.propose(
                        internalpb.InternalRaftRequest(
                            compaction=pb.CompactionRequest(revision=rev)
                        )
                    )
                    log.info("completed auto compaction", revision=rev)
                except errors.Compacted:
                    pass
                except errors.EtcdError as exc:
                    ok = False
                    log.warning("failed auto compaction", revision=rev, error=exc.message)
                compactor.finished(ok)
            compactor.record()

    async def _expire_simple_tokens(self, tokens: SimpleTokens) -> None:
        """etcd's TTL keeper: expired simple tokens are forgotten once a second."""
        while True:
            await asyncio.sleep(1.0)
            tokens.sweep()

    async def _sweep_deadlines(self) -> None:
        while True:
            await asyncio.sleep(DEADLINE_SWEEP_SECONDS)
            self._deadlines.sweep(self._loop.time(), errors.Timeout)

    def range(self, req: pb.RangeRequest) -> pb.RangeResponse | EncodedRange:
        try:
            return encoded_range(self.kv, req)
        except (CompactedError, FutureRevError) as exc:
            raise mvcc_error(exc) from None

    def read_only_txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        try:
            return self.applier.read_only_txn(req)
        except (CompactedError, FutureRevError) as exc:
            raise mvcc_error(exc) from None

    def watch_stream(self, on_ready: Callable[[], None]) -> WatchStream:
        """A new stream of watchers; ``on_ready`` is called when it has responses to send."""
        return self.kv.new_stream(on_ready)

    def fill_header(self, header: pb.ResponseHeader) -> None:
        header.cluster_id = self.cluster.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.raft_term
        if not header.revision:
            header.revision = self.kv.current_revision

    def _auth_changed(self, revision: int) -> None:
        self.feed.on_auth_changed()

    def _feed_header(self) -> tuple[int, int, int, int, bool]:
        s = self
        return s.kv.current_revision, s.raft_term, s.cluster.cluster_id, s.member_id, s.is_learner

    def status(self) -> pb.StatusResponse:
        st = self.raft.node.status()
        resp = pb.StatusResponse(
            version=ETCD_API_VERSION,
            dbSize=self.backend.size(),
            leader=self.leader_id,
            raftIndex=st.hard_state.commit,
            raftTerm=st.hard_state.term,
            raftAppliedIndex=self.applied_index,
            dbSizeInUse=self.backend.size_in_use(),
            isLearner=self.is_learner,
        )
        # etcdctl's ERRORS column: no leader first, then every active alarm.
        if not self.leader_id:
            resp.errors.append(errors.NoLeader.message)
        resp.errors.extend(alarm_text(a) for a in self.maintenance.alarms.get())
        self.fill_header(resp.header)
        return resp

    # -- ReadyHandler: called by the Ready loop ------------------------------------------

    def persist(self, rd: Ready) -> None:
        started = time.perf_counter()  # ops: etcd_disk_wal_fsync_duration_seconds
        self.storage.persist(rd)
        if rd.must_sync:
            self.metrics.observe_wal_sync(time.perf_counter() - started)

    def quiet(self) -> bool:
        return len(self._wait) <= 1

    @property
    def pending_proposals(self) -> int:
        """Client requests waiting for their entry to be applied (etcd_server_proposals_pending)."""
        return len(self._wait)

    def stage(self, rd: Ready) -> None:
        self.storage.stage(rd)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            self.cluster_runtime.restore_snapshot(rd.snapshot)
        if rd.hard_state is not None:
            self.raft_term = rd.hard_state.term
            self.commit_index = rd.hard_state.commit

    def send(self, messages: Sequence[Message]) -> None:
        self.cluster_runtime.send(messages)

    def apply(self, entries: Sequence[Entry]) -> None:
        started = time.perf_counter()  # ops: slow applies (observability/metrics.py)
        results: list[tuple[int, Response]] = []
        runtime = self.cluster_runtime
        promote = False
        with self.kv.batch():
            for entry in entries:
                if entry.index <= self.applied_index:
                    if entry.type == EntryType.CONF_CHANGE:
                        # Past a received snapshot's index but already in the backend swapped
                        # in with it: membership has it, raft's configuration does not yet.
                        runtime.apply_conf_change(entry, True)
                    continue
                if not entry.data and entry.type == EntryType.NORMAL:
                    promote = promote or self._leads_term(entry.term)
                if entry.type == EntryType.CONF_CHANGE:
                    # raft needs it even when replayed; membership only when new
                    runtime.apply_conf_change(entry, entry.index <= self.kv.consistent_index)
                elif entry.data and entry.index > self.kv.consistent_index:
                    req = internalpb.InternalRaftRequest.FromString(entry.data)
                    if req.HasField("cluster_member_attr_set"):
                        runtime.apply_attr_set(req.cluster_member_attr_set)
                        results.append((req.header.ID, None))
                    else:
                        results.append((req.header.ID, self.applier.apply(req, entry.index)))
                if self.kv.consistent_index < entry.index:
                    self.kv.set_consistent_index(entry.index)
                self.applied_index = entry.index
        self.feed.flush()  # committed: the front-ends hear of it before the clients do
        if promote:
            self.leases.promote(self._lease_extension())
        for request_id, result in results:
            self._wait.resolve(request_id, result)
        self.metrics.observe_apply(started, time.perf_counter(), results)  # ops
        self._applied.advance(self.applied_index)
        runtime.maybe_snapshot()
        if self._campaign_when_applied:
            # A cluster of one need not wait an election timeout; raft refuses to campaign
            # until the bootstrap conf changes are applied, i.e. after this Ready's advance.
            self._campaign_when_applied = False
            asyncio.get_running_loop().call_soon(self._campaign)

    def on_read_states(self, read_states: Sequence[ReadState]) -> None:
        self.reads.on_read_states(read_states)

    def on_soft_state(self, soft_state: SoftState) -> None:
        old = self.leader_id
        if soft_state.lead != old:
            log.info("leader changed", leader=f"{soft_state.lead:x}")
            self.metrics.on_leader(self.leader_id, soft_state.lead)  # ops
        self.leader_id = soft_state.lead
        if soft_state.lead != old:
            self.cluster_runtime.on_leader_change(old, soft_state.lead)
        if self.role == StateType.LEADER and soft_state.raft_state != StateType.LEADER:
            self.leases.demote()
        self.role = soft_state.raft_state

    def _campaign(self) -> None:
        if self.role != StateType.LEADER:
            self.raft.node.campaign()
            self.raft.kick()

    def _request_read_index(self, ctx: bytes) -> None:
        self.raft.node.read_index(ctx)
        self.raft.kick()

    # -- for the cluster side (cluster_runtime.ClusterHost, membership.changes.MembershipHost)

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    def next_request_id(self) -> int:
        return self._ids.next()

    def register_waiter(self, request_id: int) -> asyncio.Future[Any]:
        return self._wait.register(request_id)

    def cancel_waiter(self, request_id: int) -> None:
        self._wait.cancel(request_id)

    def resolve_waiter(self, request_id: int, result: Any) -> None:
        self._wait.resolve(request_id, result)

    def fail_waiters(self, exc: errors.EtcdError) -> None:
        """No leader for an election timeout: waiting requests get etcd's answer for it."""
        self._wait.fail_all(exc)
        self.reads.fail_all(exc)

    def refresh_learner(self) -> None:
        """After a membership change: is this member (still) a learner?"""
        me = self.cluster.members.get(self.member_id)
        self.is_learner = me is not None and me.is_learner

    def replace_backend(self, db_path: Path) -> None:
        """Swap in a backend file received with a raft snapshot (its state is at least as new
        as the snapshot's index; entries it already holds are skipped by consistent index)."""
        self._swap_backend_file(db_path)
        index = self.storage.snapshot.metadata.index if self.storage.snapshot else 0
        self.applied_index = max(self.applied_index, index, self.kv.consistent_index)
        self._applied.advance(self.applied_index)

    def _restore_interrupted_snapshot(self) -> None:
        """A crash between saving a received snapshot and swapping in its backend: finish."""
        snap = self.storage.snapshot
        if snap is None or snap.metadata.index <= self.kv.consistent_index:
            return
        path = self.cluster_runtime.snapshot_db_path(snap.metadata.index)
        if path.exists():
            self._swap_backend_file(path)
            self.cluster_runtime.reload_membership()

    def _swap_backend_file(self, db_path: Path) -> None:
        # The store, the lessor and the watchers stay the same objects, on the new file.
        db_file = self.data_dir / "member" / "snap" / "db"
        map_size = self.backend.map_size
        self.backend.close()
        replace_data_file(db_path, db_file)
        self.backend = Backend(db_file, map_size=map_size)
        self.kv.replace_backend(self.backend)
        self.lessor.recover(self.backend, self.kv.lease_keys())
        self.auth.recover(self.backend)  # users, roles and the enabled flag of the snapshot
        self.maintenance.backend_replaced()  # ops: alarms and the commit timer on the new file

    # -- leases (the work is in etcdpy.lease: driver.py and apply.py) ---------------------

    async def lease_grant(self, req: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        while req.ID == 0:
            req.ID = self._ids.next() & ((1 << 63) - 1)  # ids the server picks are positive
        resp: pb.LeaseGrantResponse = await self.propose(
            internalpb.InternalRaftRequest(lease_grant=req)
        )
        return resp

    async def lease_revoke(self, req: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        resp: pb.LeaseRevokeResponse = await self.propose(
            internalpb.InternalRaftRequest(lease_revoke=req)
        )
        return resp

    async def lease_renew(self, lease_id: int) -> int:
        """A keep-alive: the lease's TTL, or LeaseNotFound (the API answers TTL 0)."""
        return await self.leases.renew(lease_id)

    async def lease_renew_many(self, lease_ids: Sequence[int]) -> list[int | errors.EtcdError]:
        """A front-end's batch of keep-alives: each lease's TTL, or the error its renew raised.
        On the leader a renew rarely waits, so they run one after another (no task each);
        a follower forwards each to the leader, so they run at once."""

        async def one(lease_id: int) -> int | errors.EtcdError:
            try:
                return await self.lease_renew(lease_id)
            except errors.EtcdError as exc:
                return exc

        if self.role == StateType.LEADER:
            return [await one(lease_id) for lease_id in lease_ids]
        return list(await asyncio.gather(*(one(lease_id) for lease_id in lease_ids)))

    async def lease_time_to_live(
        self, req: pb.LeaseTimeToLiveRequest
    ) -> pb.LeaseTimeToLiveResponse:
        return await self.leases.time_to_live(req)

    def lease_leases(self) -> pb.LeaseLeasesResponse:
        return self.leases.leases()

    def _leads_term(self, term: int) -> bool:
        """An empty entry of our own term: everything before it is applied (etcd's promote)."""
        return self.role == StateType.LEADER and term == self.raft_term

    def _lease_extension(self) -> float:
        # Another member may have renewed a lease just before it lost leadership; a single
        # member restarting has no such predecessor.
        if len(self.cluster.members) > 1:
            return self.config.election_timeout / 1000.0
        return 0.0

    def _leader_client_endpoint(self) -> str | None:
        leader = self.cluster.members.get(self.leader_id) if self.leader_id else None
        if leader is None or not leader.client_urls:
            return None
        return leader.client_urls[0].split("://", 1)[-1]

    async def _wait_applied_committed(self) -> None:
        if self.applied_index >= self.commit_index:
            return  # the usual case, and a keep-alive's hot path
        try:
            await asyncio.wait_for(self._applied.wait(self.commit_index), self._request_timeout)
        except TimeoutError:
            raise errors.TimeoutWaitAppliedIndex() from None
