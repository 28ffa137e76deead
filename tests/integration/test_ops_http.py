"""The client port's HTTP side on a live server: metrics under etcd's names, health, version,
probes, bad input; gRPC through the same port; the shipped alert rules (promtool)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy.testing.processes import MemberProcess, etcdpy_member, free_port
from tests.external_tools import Etcdctl, require_tool

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"

# Every family an etcd-mixin dashboard panel selects (contrib/mixin/dashboards/targets), with
# the labels the panels filter or group on, and its type.
DASHBOARD_FAMILIES: dict[str, tuple[str, set[str]]] = {
    "etcd_server_has_leader": ("gauge", set()),
    "grpc_server_started": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_server_handled": (
        "counter",
        {"grpc_type", "grpc_service", "grpc_method", "grpc_code"},
    ),
    "etcd_mvcc_db_total_size_in_bytes": ("gauge", set()),
    "etcd_disk_wal_fsync_duration_seconds": ("histogram", {"le"}),
    "etcd_disk_backend_commit_duration_seconds": ("histogram", {"le"}),
    "process_resident_memory_bytes": ("gauge", set()),
    "etcd_network_client_grpc_received_bytes": ("counter", set()),
    "etcd_network_client_grpc_sent_bytes": ("counter", set()),
    "etcd_network_peer_received_bytes": ("counter", set()),
    "etcd_network_peer_sent_bytes": ("counter", set()),
    "etcd_server_leader_changes_seen": ("counter", set()),
    "etcd_network_peer_round_trip_time_seconds": ("histogram", set()),
    # named by the issue
    "etcd_server_proposals_committed_total": ("gauge", set()),
    "etcd_server_proposals_applied_total": ("gauge", set()),
    "etcd_server_proposals_pending": ("gauge", set()),
    "etcd_server_proposals_failed": ("counter", set()),
    "etcd_server_id": ("gauge", {"server_id"}),
    "etcd_server_version": ("gauge", {"server_version"}),
    "etcd_cluster_version": ("gauge", {"cluster_version"}),
    "etcd_mvcc_db_total_size_in_use_in_bytes": ("gauge", set()),
    "etcd_debugging_mvcc_keys_total": ("gauge", set()),
    "etcd_server_quota_backend_bytes": ("gauge", set()),
    "grpc_server_handling_seconds": ("histogram", {"grpc_type", "grpc_method", "le"}),
}


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemberProcess]:
    metrics_port = free_port()
    m = etcdpy_member(
        tmp_path_factory.mktemp("ops"),
        extra_args=["--listen-metrics-urls", f"http://127.0.0.1:{metrics_port}"],
    )
    m.metrics_port = metrics_port  # type: ignore[attr-defined]
    m.start()
    try:
        yield m
    finally:
        m.stop()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def scrape(url: str) -> dict[str, object]:
    status, _headers, body = get(url)
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_metrics_have_etcds_names_types_and_labels(member: MemberProcess) -> None:
    etcdctl = Etcdctl(member.endpoint)
    etcdctl.run("put", "k", "v")
    etcdctl.run("get", "k", "--rev", "1000", check=False)  # OutOfRange
    fams = scrape(member.client_url + "/metrics")
    for name, (kind, labels) in DASHBOARD_FAMILIES.items():
        assert name in fams, name
        family = fams[name]
        assert family.type == kind, name  # type: ignore[attr-defined]
        for sample in family.samples:  # type: ignore[attr-defined]
            wanted = labels if sample.name.endswith("_bucket") else labels - {"le"}
            assert wanted <= set(sample.labels), (name, sample.labels)
    handled = {
        (s.labels["grpc_method"], s.labels["grpc_code"]): s.value
        for s in fams["grpc_server_handled"].samples  # type: ignore[attr-defined]
    }
    assert handled[("Put", "OK")] >= 1
    assert handled[("Range", "OutOfRange")] >= 1
    started = {
        (s.labels["grpc_service"], s.labels["grpc_method"], s.labels["grpc_type"])
        for s in fams["grpc_server_started"].samples  # type: ignore[attr-defined]
    }
    assert ("etcdserverpb.Watch", "Watch", "bidi_stream") in started
    assert ("etcdserverpb.Maintenance", "Snapshot", "server_stream") in started
    leader = fams["etcd_server_has_leader"].samples[0].value  # type: ignore[attr-defined]
    assert leader == 1


def test_every_metric_the_alert_rules_select_is_served(member: MemberProcess) -> None:
    fams = scrape(member.client_url + "/metrics")
    text = (RULES_DIR / "etcdpy-alerts.yaml").read_text()
    names = set(re.findall(r"\b((?:etcd|grpc_server|process)_[a-z_]+)\{", text))
    assert len(names) >= 9
    for name in sorted(names):
        family = re.sub(r"_(bucket|total)$", "", name)
        assert family in fams or name in fams, name


def test_metrics_listener_serves_metrics_health_and_probes_only(member: MemberProcess) -> None:
    base = f"http://127.0.0.1:{member.metrics_port}"  # type: ignore[attr-defined]
    assert "etcd_server_has_leader" in scrape(base + "/metrics")
    status, _h, body = get(base + "/health")
    assert (status, json.loads(body)) == (200, {"health": "true"})
    assert get(base + "/livez")[::2] == (200, b"ok")  # the chart's probes (issue 18)
    assert get(base + "/readyz")[::2] == (200, b"ok")
    assert get(base + "/version")[0] == 404


def test_health_version_and_probes(member: MemberProcess) -> None:
    status, headers, body = get(member.client_url + "/health")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"  # as etcd
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert body == b'{"health":"true"}'  # etcd 3.4: no "reason" field
    status, _h, body = get(member.client_url + "/version")
    assert status == 200
    assert json.loads(body) == {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}
    assert get(member.client_url + "/livez")[::2] == (200, b"ok")
    status, _h, body = get(member.client_url + "/readyz?verbose")
    assert status == 200
    assert body.decode().splitlines() == [
        "[+]data_corruption ok",
        "[+]serializable_read ok",
        "[+]linearizable_read ok",
        "ok",
    ]


def test_http_bad_input_gets_gos_answers(member: MemberProcess) -> None:
    status, headers, body = get(member.client_url + "/health", method="POST")
    assert (status, headers["Allow"], body) == (405, "GET", b"Method Not Allowed\n")
    assert get(member.client_url + "/no/such/path")[::2] == (404, b"404 page not found\n")
    with socket.create_connection(("127.0.0.1", member.client_port), timeout=5) as sock:
        sock.sendall(b"garbage garbage\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    # The server is still fine for both protocols.
    assert get(member.client_url + "/health")[0] == 200
    Etcdctl(member.endpoint).run("get", "k")


def test_shipped_alert_rules_pass_promtool() -> None:
    promtool = require_tool("promtool")
    for args in (
        ["check", "rules", "etcdpy-alerts.yaml"],
        ["test", "rules", "etcdpy-alerts-test.yaml"],
    ):
        proc = subprocess.run(
            [promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout


def test_health_false_without_a_leader(tmp_path: Path) -> None:
    """A member that never had a leader (its peers never started) is not published: as etcd's,
    its client URL accepts connections but answers nothing yet, while --listen-metrics-urls
    serve at once, where /health and etcd_server_has_leader say there is no leader."""
    lonely = etcdpy_member(tmp_path, name="a")
    others = [f"{name}=http://127.0.0.1:{free_port()}" for name in ("b", "c")]
    metrics_url = f"http://127.0.0.1:{free_port()}"
    lonely.extra_args = [
        "--initial-cluster",
        ",".join([f"a={lonely.peer_url}", *others]),
        "--listen-metrics-urls",
        metrics_url,
    ]
    lonely.start(wait=False)  # wait_ready reads through raft, which needs a leader
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if get(metrics_url + "/metrics")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, lonely.log_tail()
            time.sleep(0.1)
        status, _h, body = get(metrics_url + "/health")
        assert status == 503
        assert body == b'{"health":"false"}\n'  # http.Error adds the newline
        assert '"reason":"RAFT NO LEADER"' in lonely.log_tail(50)  # the why is logged
        fams = scrape(metrics_url + "/metrics")
        assert fams["etcd_server_has_leader"].samples[0].value == 0  # type: ignore[attr-defined]
        # The client URL: the connection is made (the listener is bound), the answer waits.
        with socket.create_connection(("127.0.0.1", lonely.client_port), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.settimeout(1.5)
            with pytest.raises(TimeoutError):
                conn.recv(1)
        assert "ready to serve client requests" not in lonely.log_tail(200)
    finally:
        lonely.stop()


def test_warning_apply_duration_flag_sets_the_slow_apply_threshold(tmp_path: Path) -> None:
    """With --experimental-warning-apply-duration 1us every applied put is "too long"."""
    m = etcdpy_member(tmp_path, extra_args=["--experimental-warning-apply-duration", "1us"])
    m.start()
    try:
        Etcdctl(m.endpoint).run("put", "slow", "apply")
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(line) for line in m.log_tail(400).splitlines() if line[:1] == "{"]
            slow = [e for e in lines if e.get("msg") == "apply request took too long"]
            if slow:
                break
            assert time.monotonic() < deadline, m.log_tail()
            time.sleep(0.1)
        assert slow[0]["expected_duration"] == "1µs"
    finally:
        m.stop()


def test_watch_gauges_follow_open_watches(member: MemberProcess) -> None:
    import http.client

    def gauge(name: str) -> float:
        value: float = scrape(member.client_url + "/metrics")[name].samples[0].value  # type: ignore[attr-defined]
        return value

    before = (
        gauge("etcd_debugging_mvcc_watch_stream_total"),
        gauge("etcd_debugging_mvcc_watcher_total"),
    )
    conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=10)
    try:
        conn.request("POST", "/v3/watch", body=json.dumps({"create_request": {"key": "YQ=="}}))
        resp = conn.getresponse()
        assert json.loads(resp.readline())["result"]["created"] is True
        assert gauge("etcd_debugging_mvcc_watch_stream_total") == before[0] + 1
        assert gauge("etcd_debugging_mvcc_watcher_total") == before[1] + 1
    finally:
        conn.close()


def test_expired_leases_are_counted(member: MemberProcess) -> None:
    ctl = Etcdctl(member.endpoint)
    before = scrape(member.client_url + "/metrics")["etcd_debugging_server_lease_expired"]
    count = before.samples[0].value  # type: ignore[attr-defined]
    ctl.run("lease", "grant", "1")
    deadline = time.monotonic() + 20
    while True:
        fams = scrape(member.client_url + "/metrics")
        if fams["etcd_debugging_server_lease_expired"].samples[0].value > count:  # type: ignore[attr-defined]
            break
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.2)
