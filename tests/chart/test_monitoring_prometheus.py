"""A real Prometheus (Debian's) scraping three real etcdpy members the way the chart's
ServiceMonitor tells prometheus-operator to, with the rendered PrometheusRule's rules: every
target up, every member with a leader, every dashboard expression answered; one member killed
is no lost quorum, two are and etcdInsufficientMembers fires.

What the operator would generate is written by hand here: job = the client Service's name,
the endpoint's path and scheme, the labels the operator adds (namespace, service, endpoint,
pod), targets = the members' metrics addresses. The test shortens intervals (1s scrapes and
evaluations instead of 30s) and every rule's `for:` (FOR_SECONDS instead of minutes)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster
from etcdpy.testing.processes import free_port
from tests.chart.helm_chart import FULLNAME, NAMESPACE, Manifest, render
from tests.chart.test_monitoring import ALERTS_FILE, ALL_ON, concrete, dashboard_exprs, only
from tests.external_tools import Etcdctl, require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FOR_SECONDS = 3
SCRAPE = "1s"
READY_SECONDS = 30.0
WAIT_SECONDS = 40.0


@dataclass
class Prometheus:
    """One Prometheus process on a free loopback port, stopped by its PID."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[Path], Prometheus]]:
    started: list[Prometheus] = []

    def start(config: Path) -> Prometheus:
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    require_tool("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
        started.append(server)
        wait_for(lambda: ready(server), READY_SECONDS, "Prometheus ready", server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def ready(server: Prometheus) -> bool:
    assert server.proc.poll() is None, f"Prometheus exited: {server.log.read_text()[-2000:]}"
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, server: Prometheus | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    log = server.log.read_text()[-2000:] if server else ""
    raise AssertionError(f"{what}: not in {timeout}s\n{log}")


def scrape_config(monitor: Manifest, members: list[ClusterMember], ports: list[int]) -> Any:
    """What prometheus-operator generates for the chart's ServiceMonitor, with static targets."""
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    return {
        "job_name": FULLNAME,  # the operator's job label: the Service's name
        "metrics_path": endpoint["path"],
        "scheme": endpoint["scheme"],
        "scrape_interval": SCRAPE,
        "scrape_timeout": SCRAPE,
        "static_configs": [
            {
                "targets": [f"127.0.0.1:{port}"],
                "labels": {
                    "namespace": NAMESPACE,
                    "service": FULLNAME,
                    "endpoint": endpoint["port"],
                    "pod": f"{FULLNAME}-{i}",
                },
            }
            for i, (member, port) in enumerate(zip(members, ports, strict=True))
        ],
    }


def short_rules(rule: Manifest) -> dict[str, Any]:
    groups = rule["spec"]["groups"]
    for group in groups:
        for r in group["rules"]:
            if "for" in r:
                r["for"] = f"{FOR_SECONDS}s"
    return {"groups": groups}


# What is not a metric name in an expression: strings, label matchers, ranges, groupings,
# function calls, keywords and numbers.
NOT_NAMES = re.compile(
    r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring)\s*\([^)]*\)|\b\w+\s*\('
)
KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}
AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk"}


def metric_names(expr: str) -> set[str]:
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", NOT_NAMES.sub(" ", expr))
    return {w for w in words if w not in KEYWORDS | AGGREGATIONS}


def exported_names(metrics_url: str) -> set[str]:
    """The sample names a member serves (counters with _total, histograms' _bucket ...)."""
    with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def test_metric_names_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{job="$job"}[5m]))) - b'
        ' > bool 0 or count without (To) (c_total{x=~"y"}) / ignoring(pod) d'
    ) == {"a_bucket", "b", "c_total", "d"}


def firing(server: Prometheus, alert: str) -> list[dict[str, Any]]:
    return server.query(f'ALERTS{{alertname="{alert}"}}')


def up_values(server: Prometheus) -> dict[str, str]:
    return {r["metric"]["pod"]: r["value"][1] for r in server.query(f'up{{job="{FULLNAME}"}}')}


def test_prometheus_scrapes_the_members_and_fires_when_quorum_is_lost(
    tmp_path: Path, start_prometheus: Callable[[Path], Prometheus]
) -> None:
    docs = render(ALL_ON)
    cluster = ProcessCluster.etcdpy(tmp_path)
    ports = [free_port() for _ in cluster.members]
    for member, port in zip(cluster.members, ports, strict=True):
        member.extra_args += ["--listen-metrics-urls", f"http://127.0.0.1:{port}"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(short_rules(only(docs, "PrometheusRule"))))
    config = {
        "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [scrape_config(only(docs, "ServiceMonitor"), cluster.members, ports)],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(
        [require_tool("promtool"), "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with cluster:
        cluster.leader()
        ctl = Etcdctl(cluster.members[0].endpoint)
        for i in range(20):
            ctl.run("put", f"k{i}", "v" * i)
        ctl.run("compact", "10")
        # An error for the dashboard's gRPC errors panel: a compacted revision (OutOfRange).
        assert ctl.run("get", "k1", "--rev=2", check=False).returncode != 0
        server = start_prometheus(tmp_path / "prometheus.yml")
        pods = {f"{FULLNAME}-{i}" for i in range(3)}
        wait_for(lambda: up_values(server) == dict.fromkeys(pods, "1"), WAIT_SECONDS, "3 up")
        has_leader = f'etcd_server_has_leader{{job="{FULLNAME}"}}'
        wait_for(
            lambda: [r["value"][1] for r in server.query(has_leader)] == ["1"] * 3,
            WAIT_SECONDS,
            "every member has a leader",
        )

        # Every metric the dashboard and the alerts name is one a member serves.
        served = exported_names(f"http://127.0.0.1:{ports[0]}") | {"up"}
        rules = yaml.safe_load(ALERTS_FILE.read_text())["groups"][0]["rules"]
        named = set().union(
            *(metric_names(e) for e in [*dashboard_exprs(), *(r["expr"] for r in rules)])
        )
        assert len(named) >= 20 and named <= served, named - served
        # Every dashboard expression answers with data through Prometheus.
        exprs = [concrete(e, rate_interval="10s") for e in dashboard_exprs()]

        def empty() -> list[str]:
            return [e for e in exprs if not server.query(e)]

        wait_for(lambda: not empty(), WAIT_SECONDS, f"dashboard expressions answer: {empty()}")

        # One member of three down: a quorum remains, no etcdInsufficientMembers.
        cluster.members[2].kill9()
        wait_for(lambda: up_values(server).get(f"{FULLNAME}-2") == "0", WAIT_SECONDS, "m2 down")
        time.sleep(FOR_SECONDS + 3)  # longer than `for:` plus evaluations: it would fire now
        assert firing(server, "etcdInsufficientMembers") == []

        # Two down: quorum lost, the alert fires for the release's job.
        cluster.members[1].kill9()

        def fired() -> list[dict[str, Any]]:
            return [
                a
                for a in firing(server, "etcdInsufficientMembers")
                if a["metric"]["alertstate"] == "firing"
            ]

        alerts = wait_for(fired, WAIT_SECONDS, "etcdInsufficientMembers firing", server)
        assert len(alerts) == 1
        assert alerts[0]["metric"]["job"] == FULLNAME
        assert alerts[0]["metric"]["severity"] == "critical"
        assert "pod" not in alerts[0]["metric"]
