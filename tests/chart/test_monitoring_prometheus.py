"""A real Prometheus (Debian's) scraping the chart's own three pods in the k8s harness
(tests/k8s_harness/: network namespaces on a bridge; Prometheus runs in the harness's client
namespace) the way the chart's ServiceMonitor tells prometheus-operator to, with the rendered
PrometheusRule's rules: every target up, every member with a leader, every metric the dashboard
and the alerts name served, every dashboard expression answered; one member down (its link cut)
is no lost quorum, two are and etcdInsufficientMembers fires. (A second run on three member
processes on loopback asserted the same things of a weaker set-up, no chart pods, no auth, and
was dropped for time: docs/testing.md.)

What the operator would generate is written by hand here: job = the client Service's name,
the endpoint's path and scheme, the labels the operator adds (namespace, service, endpoint,
pod), targets = the members' metrics addresses. The test shortens intervals (1s scrapes and
evaluations instead of 30s) and every rule's `for:` (FOR_SECONDS instead of minutes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from etcdpy.testing.processes import free_port
from tests.chart.helm_chart import FULLNAME, NAMESPACE, RELEASE, Manifest, render
from tests.chart.test_monitoring import ALERTS_FILE, ALL_ON, concrete, dashboard_exprs, only
from tests.external_tools import missing, require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FOR_SECONDS = 3
SCRAPE = "1s"
READY_SECONDS = 30.0
WAIT_SECONDS = 40.0
METRICS_PORT = 9090  # the chart's containerPorts.metrics
# GET url -> body; raises when the answer is not 200 (curl in the harness's client namespace).
Fetch = Callable[[str], bytes]


@dataclass
class Prometheus:
    """One Prometheus process, stopped by its PID; its HTTP API read through ``fetch``."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    fetch: Fetch

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = json.loads(self.fetch(f"{self.url}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"Prometheus exited: {self.log.read_text()[-2000:]}"
        try:
            self.fetch(f"{self.url}/-/ready")
        except (OSError, AssertionError):
            return False
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


Popen = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[Path, Popen, Fetch], Prometheus]]:
    """start(config, popen, fetch): Prometheus on 127.0.0.1 of where ``popen`` runs it."""
    started: list[Prometheus] = []

    def start(config: Path, popen: Popen, fetch: Fetch) -> Prometheus:
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("ab") as out:
            proc = popen(
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
        server = Prometheus(f"http://127.0.0.1:{port}", proc, log, fetch)
        started.append(server)
        wait_for(server.ready, READY_SECONDS, "Prometheus ready", server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


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


def scrape_config(monitor: Manifest, targets: list[str]) -> Any:
    """What prometheus-operator generates for the chart's ServiceMonitor, with static targets
    (``targets[i]`` is pod i's metrics address)."""
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
                "targets": [target],
                "labels": {
                    "namespace": NAMESPACE,
                    "service": FULLNAME,
                    "endpoint": endpoint["port"],
                    "pod": f"{FULLNAME}-{i}",
                },
            }
            for i, target in enumerate(targets)
        ],
    }


def short_rules(rule: Manifest) -> dict[str, Any]:
    groups = rule["spec"]["groups"]
    for group in groups:
        for r in group["rules"]:
            if "for" in r:
                r["for"] = f"{FOR_SECONDS}s"
    return {"groups": groups}


def write_config(folder: Path, targets: list[str]) -> Path:
    """prometheus.yml and rules.yaml for the chart rendered with every monitoring object on."""
    docs = render(ALL_ON)
    (folder / "rules.yaml").write_text(yaml.safe_dump(short_rules(only(docs, "PrometheusRule"))))
    config = {
        "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
        "rule_files": [str(folder / "rules.yaml")],
        "scrape_configs": [scrape_config(only(docs, "ServiceMonitor"), targets)],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run(
        [require_tool("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return path


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


def test_metric_names_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{job="$job"}[5m]))) - b'
        ' > bool 0 or count without (To) (c_total{x=~"y"}) / ignoring(pod) d'
    ) == {"a_bucket", "b", "c_total", "d"}


def firing(server: Prometheus, alert: str) -> list[dict[str, Any]]:
    return server.query(f'ALERTS{{alertname="{alert}"}}')


def up_values(server: Prometheus) -> dict[str, str]:
    return {r["metric"]["pod"]: r["value"][1] for r in server.query(f'up{{job="{FULLNAME}"}}')}


def exported_names(fetch: Fetch, metrics_address: str) -> set[str]:
    """The sample names a member serves (counters with _total, histograms' _bucket ...), and
    those of the families it declares (# TYPE) with no series yet: a counter labelled by peer,
    such as etcd_network_peer_sent_failures_total, has none until a send fails."""
    text = fetch(f"http://{metrics_address}/metrics").decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            names.update(name + suffix for suffix in suffixes)
    return names


def scrapes_and_alerts(
    server: Prometheus, fetch: Fetch, targets: list[str], take_down: Callable[[int], None]
) -> None:
    """The scenario, once the members had traffic (an error among it)."""
    pods = {f"{FULLNAME}-{i}" for i in range(3)}
    wait_for(lambda: up_values(server) == dict.fromkeys(pods, "1"), WAIT_SECONDS, "3 up")
    has_leader = f'etcd_server_has_leader{{job="{FULLNAME}"}}'
    wait_for(
        lambda: [r["value"][1] for r in server.query(has_leader)] == ["1"] * 3,
        WAIT_SECONDS,
        "every member has a leader",
    )

    # Every metric the dashboard and the alerts name is one a member serves.
    served = exported_names(fetch, targets[0]) | {"up"}
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
    take_down(2)
    wait_for(lambda: up_values(server).get(f"{FULLNAME}-2") == "0", WAIT_SECONDS, "pod 2 down")
    # Three 1 s evaluations after Prometheus stored up=0: a wrong alert would be pending by now,
    # and ALERTS lists pending alerts as well as firing ones (`for:` only delays firing).
    time.sleep(3)
    assert firing(server, "etcdInsufficientMembers") == []

    # Two down: quorum lost, the alert fires for the release's job.
    take_down(1)

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


def test_prometheus_on_the_charts_pods_in_the_harness(
    tmp_path: Path, start_prometheus: Callable[[Path, Popen, Fetch], Prometheus]
) -> None:
    from tests.k8s_harness.checks import Etcdctl as HarnessEtcdctl
    from tests.k8s_harness.cluster import LocalKube, Release

    if os.geteuid() != 0:
        missing("the k8s harness needs root (network and mount namespaces)")
    for tool in ("ip", "unshare", "mount", "curl", "etcdctl"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed")
    workdir = tmp_path / "kube"
    workdir.mkdir()
    workdir.chmod(0o755)
    tmp_path.chmod(0o755)
    with LocalKube(workdir, namespace=NAMESPACE) as kube:

        def fetch(url: str) -> bytes:
            proc = kube.client_run(["curl", "-sSf", "--max-time", "5", url], timeout=10)
            if proc.returncode != 0:
                raise OSError(f"curl {url}: {proc.stderr}")
            return proc.stdout.encode()

        release = Release(kube, RELEASE)
        release.install(ALL_ON)
        release.wait_ready(timeout=120)
        names = release.pod_names()
        targets = [f"{release.pod(name).address}:{METRICS_PORT}" for name in names]
        config = write_config(tmp_path, targets)
        ctl = HarnessEtcdctl(release, user="root", password=ALL_ON["auth"]["rbac"]["rootPassword"])
        for i in range(20):
            ctl.out("put", f"k{i}", "v" * i)
        ctl.out("compact", "10")
        assert ctl.run("get", "k1", "--rev=2").returncode != 0
        server = start_prometheus(config, kube.client_popen, fetch)
        scrapes_and_alerts(server, fetch, targets, lambda i: release.cut(names[i]))
