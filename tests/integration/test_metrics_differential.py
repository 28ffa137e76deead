"""/metrics of etcd 3.4 and of etcdpy side by side: every family etcd serves is served with the
same type, label names and buckets, except the ones listed below with the reason."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from tests.external_tools import Etcdctl, require_tool

pytestmark = pytest.mark.integration

T = TypeVar("T")

# Families of etcd's that etcdpy does not serve yet, and why. The test also fails when one of
# these appears, so that the list stays true.
NOT_YET: dict[str, str] = {
    **dict.fromkeys(
        [
            "etcd_debugging_mvcc_pending_events_total",
            "etcd_debugging_mvcc_events",
        ],
        "hooks in the watchable store",
    ),
    **dict.fromkeys(
        [
            "etcd_debugging_lease_granted",
            "etcd_debugging_lease_renewed",
            "etcd_debugging_lease_revoked",
            "etcd_debugging_lease_ttl_total",
        ],
        "hooks in the lessor",
    ),
    **dict.fromkeys(
        [
            "etcd_debugging_mvcc_db_compaction_keys",
            "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
            "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
        ],
        "compaction timings need hooks in the compactor",
    ),
    **dict.fromkeys(
        [
            "etcd_disk_wal_write_bytes_total",
            "etcd_snap_db_fsync_duration_seconds",
            "etcd_snap_db_save_total_duration_seconds",
            "etcd_snap_fsync_duration_seconds",
            "etcd_debugging_snap_save_marshalling_duration_seconds",
            "etcd_debugging_snap_save_total_duration_seconds",
        ],
        "WAL/snapshotter hooks",
    ),
    **dict.fromkeys(
        [
            "etcd_debugging_disk_backend_commit_rebalance_duration_seconds",
            "etcd_debugging_disk_backend_commit_spill_duration_seconds",
            "etcd_debugging_disk_backend_commit_write_duration_seconds",
        ],
        "bbolt's commit phases; LMDB has no such phases",
    ),
    "etcd_debugging_auth_revision": "auth is not built",
    "etcd_server_client_requests": "needs each request's client-api-version metadata",
    "etcd_server_go_version": "the Go runtime",
}
IGNORED_PREFIXES = ("go_", "promhttp_", "etcd_grpc_proxy_", "etcd_debugging_store_")


def families(member: MemberProcess) -> dict[str, Any]:
    with urllib.request.urlopen(member.client_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def shape(family: Any) -> tuple[str, set[frozenset[str]], list[float]]:
    labels = {frozenset(k for k in s.labels if k != "le") for s in family.samples}
    buckets = sorted({float(s.labels["le"]) for s in family.samples if "le" in s.labels})
    return family.type, labels, buckets


def scrape_after_traffic(member: MemberProcess) -> dict[str, Any]:
    ctl = Etcdctl(member.endpoint)
    ctl.run("put", "a", "1")
    ctl.run("get", "a")
    return families(member)


def on_both(tmp_path: Path, workload: Callable[[MemberProcess], T]) -> tuple[T, T]:
    """The workload's result on a fresh etcd 3.4 member, then on a fresh etcdpy member."""
    require_tool("etcd")
    out: list[T] = []
    for member in (etcd_member(tmp_path), etcdpy_member(tmp_path)):
        member.start()
        try:
            out.append(workload(member))
        finally:
            member.stop()
    return out[0], out[1]


def test_metric_families_match_etcd(tmp_path: Path) -> None:
    theirs, mine = on_both(tmp_path, scrape_after_traffic)
    for name in ("etcd_cluster_version", "etcd_server_version"):  # label values too
        assert [s.labels for s in mine[name].samples] == [s.labels for s in theirs[name].samples]
    for name, family in sorted(theirs.items()):
        if name.startswith(IGNORED_PREFIXES):
            continue
        if name in NOT_YET:
            assert name not in mine, f"{name} is served now: take it off NOT_YET"
            continue
        assert name in mine, name
        want_type, want_labels, want_buckets = shape(family)
        got_type, got_labels, got_buckets = shape(mine[name])
        assert got_type == want_type, name
        if want_buckets and got_buckets:
            assert got_buckets == want_buckets, name
        # Label names of the series both sides have (a series may exist on one side only).
        if want_labels and got_labels:
            assert want_labels & got_labels or want_labels == {frozenset()}, (name, want_labels)


# The store's operation counters and live keys (etcd's metricsTxnWrite and keysGauge).
MVCC_SAMPLES = (
    "etcd_mvcc_put_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_put_total",
    "etcd_debugging_mvcc_range_total",
    "etcd_debugging_mvcc_delete_total",
    "etcd_debugging_mvcc_txn_total",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_total_put_size_in_bytes",
)


def mvcc_after_workload(member: MemberProcess) -> dict[str, float]:
    """etcd's e2e metricsTest, then reads, txns and a lease revoke: the counters after each."""
    ctl = Etcdctl(member.endpoint)
    seen: dict[str, float] = {}

    def values() -> dict[str, float]:
        fams = families(member)
        return {
            # (a counter's family name has no _total; a gauge's keeps it)
            name: (fams.get(name) or fams[name.removesuffix("_total")]).samples[0].value
            for name in MVCC_SAMPLES
        }

    # From here on: the harness's readiness probes may have been answered once or twice.
    start = values()

    def record(step: str) -> None:
        for name, value in values().items():
            seen[f"{step}:{name}"] = value - start[name]

    ctl.run("put", "k", "v")
    for i in range(1, 4):
        ctl.run("put", str(i), "v")
        ctl.run("del", str(i))
        record(f"e2e-{i}")
    ctl.run("get", "k")
    ctl.run("get", "k", "--consistency=s")
    ctl.run("get", "", "--prefix", "--keys-only")
    ctl.run("del", "nothing", "--prefix")
    ctl.run("txn", input='value("k") = "v"\n\nput t1 x\nget k\n\nput t2 y\n\n')
    ctl.run("txn", input='value("k") = "no"\n\nput t3 x\n\nget k\nget t1\n\n')
    ctl.run("put", "k", "v2", "--prev-kv")
    lease = ctl.run("lease", "grant", "60").stdout.split()[1]
    for key in ("l1", "l2", "l3"):
        ctl.run("put", key, "x", "--lease", lease)
    ctl.run("lease", "revoke", lease)
    record("more")
    return seen


def test_mvcc_counters_and_live_keys_match_etcd(tmp_path: Path) -> None:
    """Found by etcd's e2e TestV3MetricsInsecure: etcdpy had no etcd_mvcc_*_total, and its
    keys_total counted deleted keys too."""
    theirs, mine = on_both(tmp_path, mvcc_after_workload)
    assert theirs["e2e-1:etcd_mvcc_put_total"] == 2  # what etcd's e2e test expects
    assert theirs["e2e-2:etcd_debugging_mvcc_keys_total"] == 1  # k (the start had none)
    assert theirs["e2e-3:etcd_mvcc_delete_total"] == 3
    assert mine == theirs
