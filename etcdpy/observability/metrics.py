"""Prometheus metrics under etcd's names, types, labels and buckets.

The hot path never calls prometheus_client: it bumps plain ints and cheap histograms held here
(``ServerMetrics``, ``GrpcStats``), once per request or per Ready batch. A collector turns
them, and the state the server already keeps (leader, indexes, sizes), into metric families
only when /metrics is scraped. Each server has its own registry, so that several servers may
live in one process (tests) without clashing.

Names and buckets are etcd 3.4's (etcdserver/metrics.go, mvcc/metrics.go, wal/metrics.go,
mvcc/backend/metrics.go, rafthttp/metrics.go, v3rpc/metrics.go), and go-grpc-prometheus's for
the grpc_server_* series, which etcd-mixin's alerts and dashboards select.
"""

from __future__ import annotations

import bisect
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from etcdpy.gofmt import go_duration

log = structlog.get_logger(__name__)

# etcd warns when one fsync of the WAL takes longer than this (wal.warnSyncDuration).
SLOW_FSYNC_SECONDS = 1.0
# etcd's default --experimental-warning-apply-duration: "apply request took too long".
SLOW_APPLY_SECONDS = 0.1


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    return tuple(start * factor**i for i in range(count))


# prometheus.DefBuckets, which go-grpc-prometheus uses for grpc_server_handling_seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DISK_BUCKETS = exponential_buckets(0.001, 2, 14)
DEFRAG_BUCKETS = exponential_buckets(0.1, 2, 13)
SNAPSHOT_BUCKETS = exponential_buckets(0.01, 2, 17)
HASH_BUCKETS = exponential_buckets(0.01, 2, 15)
PEER_RTT_BUCKETS = exponential_buckets(0.0001, 2, 16)


class Histogram:
    """Counts per bucket and a sum: an observation is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((_le(bound), float(running)))
        return out


def _le(bound: float) -> str:
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


# -- gRPC (go-grpc-prometheus) ------------------------------------------------------------

GRPC_CODE_NAMES = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)


@dataclass(slots=True)
class MethodStats:
    """Counters of one RPC method; ``handled`` is indexed by gRPC status code number."""

    service: str  # full name, e.g. etcdserverpb.KV
    method: str
    rpc_type: str  # unary, client_stream, server_stream, bidi_stream
    started: int = 0
    handled: list[int] = field(default_factory=lambda: [0] * len(GRPC_CODE_NAMES))
    msg_received: int = 0
    msg_sent: int = 0
    handling: Histogram = field(default_factory=lambda: Histogram(DEFAULT_BUCKETS))


class GrpcStats:
    """Every method's counters, plus etcd's client byte totals."""

    def __init__(self) -> None:
        self.methods: dict[tuple[str, str], MethodStats] = {}
        self.received_bytes = 0
        self.sent_bytes = 0

    def method(self, service: str, method: str, rpc_type: str) -> MethodStats:
        key = (service, method)
        stats = self.methods.get(key)
        if stats is None:
            stats = self.methods[key] = MethodStats(service, method, rpc_type)
        return stats

    def active_streams(self, service: str, method: str) -> int:
        """Calls of a method started and not yet handled (open streams, for a stream)."""
        st = self.methods.get((service, method))
        return 0 if st is None else st.started - sum(st.handled)

    def families(self) -> Iterator[Metric]:
        labels = ["grpc_method", "grpc_service", "grpc_type"]
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=["grpc_code", *labels],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels=labels,
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels=labels,
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            labels=labels,
        )
        for key in sorted(self.methods):
            st = self.methods[key]
            values = [st.method, st.service, st.rpc_type]
            started.add_metric(values, st.started)
            received.add_metric(values, st.msg_received)
            sent.add_metric(values, st.msg_sent)
            for code, count in enumerate(st.handled):
                handled.add_metric([GRPC_CODE_NAMES[code], *values], count)
            handling.add_metric(values, st.handling.cumulative(), st.handling.total)
        yield from (started, handled, received, sent, handling)
        yield CounterMetricFamily(
            "etcd_network_client_grpc_received_bytes",
            "The total number of bytes received from grpc clients.",
            value=self.received_bytes,
        )
        yield CounterMetricFamily(
            "etcd_network_client_grpc_sent_bytes",
            "The total number of bytes sent to grpc clients.",
            value=self.sent_bytes,
        )


# -- the server ---------------------------------------------------------------------------


class ServerView(Protocol):
    """What the collector reads from the server at scrape time."""

    def metrics_snapshot(self) -> ServerState: ...


@dataclass(slots=True)
class ServerState:
    member_id: int
    leader_id: int
    is_leader: bool
    is_learner: bool
    committed_index: int
    applied_index: int
    pending_proposals: int
    quota_backend_bytes: int
    db_size: int
    db_size_in_use: int
    keys: int
    current_revision: int
    compact_revision: int
    server_version: str
    cluster_version: str
    open_read_transactions: int = 0
    watchers: int = 0
    leases_expired: int = 0  # leases this member (as leader) revoked because they expired
    slow_watchers: int = 0  # behind (unsynced) or parked (victims)
    # The store's operations (etcdpy.mvcc.counts): ranges, puts, deletes, txns, bytes put.
    mvcc_ops: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


@dataclass(slots=True)
class PeerStats:
    """rafthttp's per-peer series; the peer transport bumps these (ids in hex)."""

    sent_bytes: dict[str, int] = field(default_factory=dict)  # To
    received_bytes: dict[str, int] = field(default_factory=dict)  # From
    sent_failures: dict[str, int] = field(default_factory=dict)  # To
    received_failures: dict[str, int] = field(default_factory=dict)  # From
    round_trip: dict[str, Histogram] = field(default_factory=dict)  # To
    active: dict[tuple[str, str], int] = field(default_factory=dict)  # (Local, Remote)
    disconnected: dict[tuple[str, str], int] = field(default_factory=dict)

    def rtt(self, to: str, seconds: float) -> None:
        hist = self.round_trip.get(to)
        if hist is None:
            hist = self.round_trip[to] = Histogram(PEER_RTT_BUCKETS)
        hist.observe(seconds)

    def sent(self, to: str, nbytes: int) -> None:
        self.sent_bytes[to] = self.sent_bytes.get(to, 0) + nbytes

    def received(self, sender: str, nbytes: int) -> None:
        self.received_bytes[sender] = self.received_bytes.get(sender, 0) + nbytes

    def send_failed(self, to: str) -> None:
        self.sent_failures[to] = self.sent_failures.get(to, 0) + 1

    def receive_failed(self, sender: str) -> None:
        self.received_failures[sender] = self.received_failures.get(sender, 0) + 1

    def connected(self, local: str, remote: str) -> None:
        self.active[(local, remote)] = self.active.get((local, remote), 0) + 1

    def disconnected_from(self, local: str, remote: str) -> None:
        self.active[(local, remote)] = max(0, self.active.get((local, remote), 0) - 1)
        self.disconnected[(local, remote)] = self.disconnected.get((local, remote), 0) + 1


class ServerMetrics:
    """Event counters the core bumps; everything else is read from the server on scrape."""

    def __init__(self, slow_apply_seconds: float = SLOW_APPLY_SECONDS) -> None:
        self.slow_apply_seconds = slow_apply_seconds
        self.grpc = GrpcStats()
        self.peers = PeerStats()
        self.leader_changes = 0
        self.proposals_failed = 0
        self.slow_applies = 0
        self.slow_read_indexes = 0
        self.read_indexes_failed = 0
        self.heartbeat_send_failures = 0
        self.health_success = 0
        self.health_failures = 0
        # Range calls front-end processes answered from their replicas / handed to the core
        self.frontend_reads_local = 0
        self.frontend_reads_forwarded = 0
        # (watchers, slow watchers) of each front-end process, by pid, as of the last scrape
        self.frontend_watchers: dict[int, tuple[int, int]] = {}
        # The store operations front-ends answered from their replicas (etcdpy.mvcc.counts).
        self.frontend_mvcc: list[int] = [0, 0, 0, 0, 0]
        self.defrag_inflight = 0
        # Bumped by the cluster code (learner promotion, snapshot install), 0 until it does.
        self.learner_promote_successes = 0
        self.snapshot_apply_in_progress = 0
        self.wal_fsync = Histogram(DISK_BUCKETS)
        self.backend_commit = Histogram(DISK_BUCKETS)
        self.defrag = Histogram(DEFRAG_BUCKETS)
        self.snapshot = Histogram(SNAPSHOT_BUCKETS)
        self.hash = Histogram(HASH_BUCKETS)
        self.hash_rev = Histogram(HASH_BUCKETS)

    # -- hooks for the core (each is one call per Ready or per event) ------------------

    def observe_wal_sync(self, seconds: float) -> None:
        self.wal_fsync.observe(seconds)
        if seconds > SLOW_FSYNC_SECONDS:
            log.warning(
                "slow fdatasync",
                took=f"{seconds:.3f}s",
                expected_duration=f"{SLOW_FSYNC_SECONDS:.0f}s",
            )

    def timed_commit(self, commit: Callable[[], None]) -> None:
        """The backend's commit hook: runs the commit, observes how long it took."""
        started = time.perf_counter()
        commit()
        self.backend_commit.observe(time.perf_counter() - started)

    def observe_apply(
        self, started: float, done: float, results: Sequence[tuple[int, Any]]
    ) -> None:
        """One Ready's entries were applied (and committed) from ``started`` to ``done``
        (perf_counter seconds). ``results`` pairs each applied request's id with its
        response; the ids name the requests of a slow batch."""
        seconds = done - started
        if seconds > self.slow_apply_seconds:
            self.slow_applies += 1
            log.warning(
                "apply request took too long",
                took=go_duration(seconds),
                expected_duration=go_duration(self.slow_apply_seconds),
                requests=len(results),
                request_ids=[f"{rid:x}" for rid, _ in results[:10]],
            )

    def on_leader(self, old: int, new: int) -> None:
        if new != old and new != 0:
            self.leader_changes += 1


def build_registry(metrics: ServerMetrics, view: ServerView) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EtcdCollector(metrics, view))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _hist(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], hist.cumulative(), hist.total)
    return family


def _labelled(
    kind: Callable[..., Any], name: str, doc: str, label: str, values: dict[str, int]
) -> Metric:
    family = kind(name, doc, labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family  # type: ignore[no-any-return]


def _address_space_limit() -> float:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return -1.0 if limit == resource.RLIM_INFINITY else float(limit)  # -1: unlimited, as Go


def _fd_usage() -> tuple[int, int]:
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 0
    return used, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class EtcdCollector(Collector):
    def __init__(self, metrics: ServerMetrics, view: ServerView) -> None:
        self._m = metrics
        self._view = view

    def collect(self) -> Iterable[Metric]:
        m = self._m
        s = self._view.metrics_snapshot()
        yield _gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            1 if s.leader_id else 0,
        )
        yield _gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            1 if s.is_leader else 0,
        )
        yield _gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            1 if s.is_learner else 0,
        )
        yield _counter(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            m.leader_changes,
        )
        yield _counter(
            "etcd_server_heartbeat_send_failures",
            "The total number of leader heartbeat send failures (likely overloaded from slow "
            "disk).",
            m.heartbeat_send_failures,
        )
        yield _counter(
            "etcd_server_slow_apply",
            "The total number of slow apply requests (likely overloaded from slow disk).",
            m.slow_applies,
        )
        # etcd declares these two as gauges although their names end in _total.
        yield _gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            s.committed_index,
        )
        yield _gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            s.applied_index,
        )
        yield _gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            s.pending_proposals,
        )
        yield _counter(
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen.",
            m.proposals_failed,
        )
        yield _counter(
            "etcd_server_slow_read_indexes",
            "The total number of pending read indexes not in sync with leader's or timed out "
            "read index requests.",
            m.slow_read_indexes,
        )
        yield _counter(
            "etcd_server_read_indexes_failed",
            "The total number of failed read indexes seen.",
            m.read_indexes_failed,
        )
        yield _gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            s.quota_backend_bytes,
        )
        version = GaugeMetricFamily(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            labels=["server_version"],
        )
        version.add_metric([s.server_version], 1)
        yield version
        server_id = GaugeMetricFamily(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            labels=["server_id"],
        )
        server_id.add_metric([f"{s.member_id:x}"], 1)
        yield server_id
        cluster_version = GaugeMetricFamily(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            labels=["cluster_version"],
        )
        cluster_version.add_metric([s.cluster_version], 1)
        yield cluster_version
        yield _counter(
            "etcd_server_health_success",
            "The total number of successful health checks",
            m.health_success,
        )
        yield _counter(
            "etcd_server_health_failures",
            "The total number of failed health checks",
            m.health_failures,
        )
        yield _counter(
            "etcdpy_frontend_reads_local",
            "Range calls front-end processes answered from their read replicas.",
            m.frontend_reads_local,
        )
        yield _counter(
            "etcdpy_frontend_reads_forwarded",
            "Range calls front-end processes handed to the core process.",
            m.frontend_reads_forwarded,
        )
        yield _counter(
            "etcd_server_learner_promote_successes",
            "The total number of successful learner promotions while this member is leader.",
            m.learner_promote_successes,
        )
        yield _gauge(
            "etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.",
            m.snapshot_apply_in_progress,
        )
        yield _gauge(
            "etcd_mvcc_db_open_read_transactions",
            "The number of currently open read transactions",
            s.open_read_transactions,
        )
        yield _gauge(
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            _address_space_limit(),
        )
        yield _counter(
            "etcd_debugging_server_lease_expired",
            "The total number of expired leases.",
            s.leases_expired,
        )
        used, limit = _fd_usage()
        yield _gauge("os_fd_used", "The number of used file descriptors.", used)
        yield _gauge("os_fd_limit", "The file descriptor limit.", limit)

        # mvcc
        yield _gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            s.db_size,
        )
        yield _gauge(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            s.db_size,
        )
        yield _gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            s.db_size_in_use,
        )
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", s.keys)
        ranges, puts, deletes, txns, put_bytes = s.mvcc_ops
        for prefix in ("etcd", "etcd_debugging"):
            for what, value in (("range", ranges), ("put", puts), ("delete", deletes)):
                yield _counter(
                    f"{prefix}_mvcc_{what}_total",
                    f"Total number of {what}s seen by this member.",
                    value,
                )
            yield _counter(
                f"{prefix}_mvcc_txn_total", "Total number of txns seen by this member.", txns
            )
        yield _gauge(
            "etcd_debugging_mvcc_total_put_size_in_bytes",
            "The total size of put kv pairs seen by this member.",
            put_bytes,
        )
        yield _gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            s.current_revision,
        )
        yield _gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            s.compact_revision,
        )
        yield _gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", s.watchers)
        yield _gauge(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of unsynced slow watchers.",
            s.slow_watchers,
        )
        yield _gauge(
            "etcd_debugging_mvcc_watch_stream_total",
            "Total number of watch streams.",
            m.grpc.active_streams("etcdserverpb.Watch", "Watch"),
        )
        yield _hist(
            "etcd_mvcc_hash_duration_seconds",
            "The latency distribution of storage hash operation.",
            m.hash,
        )
        yield _hist(
            "etcd_mvcc_hash_rev_duration_seconds",
            "The latency distribution of storage hash by revision operation.",
            m.hash_rev,
        )

        # disk
        yield _hist(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            m.wal_fsync,
        )
        yield _hist(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            m.backend_commit,
        )
        yield _hist(
            "etcd_disk_backend_defrag_duration_seconds",
            "The latency distribution of backend defragmentation.",
            m.defrag,
        )
        yield _hist(
            "etcd_disk_backend_snapshot_duration_seconds",
            "The latency distribution of backend snapshots.",
            m.snapshot,
        )
        yield _gauge(
            "etcd_disk_defrag_inflight",
            "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            m.defrag_inflight,
        )

        # network (peers: bumped by the peer transport)
        p = m.peers
        yield _labelled(
            CounterMetricFamily,
            "etcd_network_peer_sent_bytes",
            "The total number of bytes sent to peers.",
            "To",
            p.sent_bytes,
        )
        yield _labelled(
            CounterMetricFamily,
            "etcd_network_peer_received_bytes",
            "The total number of bytes received from peers.",
            "From",
            p.received_bytes,
        )
        yield _labelled(
            CounterMetricFamily,
            "etcd_network_peer_sent_failures",
            "The total number of send failures from peers.",
            "To",
            p.sent_failures,
        )
        yield _labelled(
            CounterMetricFamily,
            "etcd_network_peer_received_failures",
            "The total number of receive failures from peers.",
            "From",
            p.received_failures,
        )
        rtt = HistogramMetricFamily(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            labels=["To"],
        )
        for to in sorted(p.round_trip):
            hist = p.round_trip[to]
            rtt.add_metric([to], hist.cumulative(), hist.total)
        yield rtt
        active = GaugeMetricFamily(
            "etcd_network_active_peers",
            "The current number of active peer connections.",
            labels=["Local", "Remote"],
        )
        for pair in sorted(p.active):
            active.add_metric(list(pair), p.active[pair])
        yield active
        disconnected = CounterMetricFamily(
            "etcd_network_disconnected_peers",
            "The total number of disconnected peers.",
            labels=["Local", "Remote"],
        )
        for pair in sorted(p.disconnected):
            disconnected.add_metric(list(pair), p.disconnected[pair])
        yield disconnected

        yield from m.grpc.families()
