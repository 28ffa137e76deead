"""etcd's metric names, types, labels and buckets, rendered from the cheap counters."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy.observability.metrics import (
    DISK_BUCKETS,
    Histogram,
    ServerMetrics,
    ServerState,
    build_registry,
    exponential_buckets,
)


class FakeView:
    def metrics_snapshot(self) -> ServerState:
        return ServerState(
            member_id=0xABC,
            leader_id=0xABC,
            is_leader=True,
            is_learner=False,
            committed_index=7,
            applied_index=6,
            pending_proposals=1,
            quota_backend_bytes=2 * 1024**3,
            db_size=4096,
            db_size_in_use=2048,
            keys=3,
            current_revision=9,
            compact_revision=2,
            server_version="3.4.23",
            cluster_version="3.4.0",
        )


def families(metrics: ServerMetrics) -> dict[str, object]:
    text = generate_latest(build_registry(metrics, FakeView())).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exponential_buckets_match_etcds_wal_fsync_buckets() -> None:
    assert DISK_BUCKETS[0] == 0.001
    assert DISK_BUCKETS[-1] == 0.001 * 2**13  # 8.192 s, etcd's highest bucket
    assert len(exponential_buckets(0.0001, 2, 16)) == 16


def test_histogram_is_cumulative_with_inf() -> None:
    h = Histogram((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 3.0):
        h.observe(v)
    assert h.cumulative() == [("1.0", 2.0), ("2.0", 3.0), ("+Inf", 4.0)]
    assert h.total == 6.0


def test_state_and_counters_render_under_etcd_names() -> None:
    m = ServerMetrics()
    m.on_leader(0, 0xABC)
    m.on_leader(0xABC, 0xABC)
    m.proposals_failed += 2
    m.observe_wal_sync(0.003)
    fams = families(m)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in fams.values()
        for s in f.samples  # type: ignore[attr-defined]
    }
    assert samples[("etcd_server_has_leader", ())] == 1
    assert samples[("etcd_server_leader_changes_seen_total", ())] == 1
    assert samples[("etcd_server_proposals_failed_total", ())] == 2
    assert samples[("etcd_server_proposals_committed_total", ())] == 7
    assert samples[("etcd_server_id", (("server_id", "abc"),))] == 1
    assert samples[("etcd_server_version", (("server_version", "3.4.23"),))] == 1
    assert samples[("etcd_cluster_version", (("cluster_version", "3.4.0"),))] == 1
    assert samples[("etcd_disk_wal_fsync_duration_seconds_bucket", (("le", "0.004"),))] == 1
    assert samples[("etcd_disk_wal_fsync_duration_seconds_bucket", (("le", "0.002"),))] == 0
    assert fams["etcd_server_proposals_committed_total"].type == "gauge"  # type: ignore[attr-defined]
    assert fams["etcd_disk_backend_commit_duration_seconds"].type == "histogram"  # type: ignore[attr-defined]
    assert "process_resident_memory_bytes" in fams


def test_grpc_counters_carry_go_grpc_prometheus_labels() -> None:
    m = ServerMetrics()
    st = m.grpc.method("etcdserverpb.KV", "Range", "unary")
    st.started += 1
    st.handled[11] += 1  # OutOfRange
    text = generate_latest(build_registry(m, FakeView())).decode()
    assert (
        'grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",'
        'grpc_type="unary"} 1.0'
    ) in text
    assert (
        'grpc_server_handled_total{grpc_code="OutOfRange",grpc_method="Range",'
        'grpc_service="etcdserverpb.KV",grpc_type="unary"} 1.0'
    ) in text


def test_slow_apply_counts_and_names_the_requests() -> None:
    from structlog.testing import capture_logs

    m = ServerMetrics()
    with capture_logs() as logs:
        m.observe_apply(0.0, 0.06, [(0xA1, None)])  # 60 ms: fine
        m.observe_apply(0.0, 0.2, [(0xA2, None), (0xA3, None)])  # 200 ms: slow
        m.timed_commit(lambda: None)
    assert m.slow_applies == 1
    assert m.backend_commit.counts[bisect_index(0.0005)] == 1
    slow = [e for e in logs if e["event"] == "apply request took too long"]
    assert len(slow) == 1
    assert slow[0]["request_ids"] == ["a2", "a3"]


def test_slow_apply_threshold_is_the_configured_one() -> None:
    """--experimental-warning-apply-duration: a 200 ms batch is fine under a 500 ms threshold,
    a 3 µs one is slow under 1 µs; both durations are written as Go writes them."""
    from structlog.testing import capture_logs

    lenient, strict = ServerMetrics(slow_apply_seconds=0.5), ServerMetrics(slow_apply_seconds=1e-6)
    with capture_logs() as logs:
        lenient.observe_apply(0.0, 0.2, [(0xB1, None)])
        strict.observe_apply(0.0, 0.000003, [(0xB2, None)])
    assert (lenient.slow_applies, strict.slow_applies) == (0, 1)
    [slow] = [e for e in logs if e["event"] == "apply request took too long"]
    assert (slow["took"], slow["expected_duration"]) == ("3µs", "1µs")


def bisect_index(value: float) -> int:
    import bisect

    return bisect.bisect_left(DISK_BUCKETS, value)


def test_peer_series_carry_rafthttp_labels() -> None:
    m = ServerMetrics()
    peers = m.peers
    peers.sent("b", 100)
    peers.sent("b", 20)
    peers.received("c", 7)
    peers.send_failed("b")
    peers.rtt("b", 0.0003)
    peers.connected("a", "b")
    peers.disconnected_from("a", "b")
    text = generate_latest(build_registry(m, FakeView())).decode()
    assert 'etcd_network_peer_sent_bytes_total{To="b"} 120.0' in text
    assert 'etcd_network_peer_received_bytes_total{From="c"} 7.0' in text
    assert 'etcd_network_peer_sent_failures_total{To="b"} 1.0' in text
    assert 'etcd_network_peer_round_trip_time_seconds_bucket{To="b",le="0.0004"} 1.0' in text
    assert 'etcd_network_active_peers{Local="a",Remote="b"} 0.0' in text
    assert 'etcd_network_disconnected_peers_total{Local="a",Remote="b"} 1.0' in text
