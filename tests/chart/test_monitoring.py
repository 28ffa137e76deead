"""The chart's monitoring objects, rendered with `helm template`: the ServiceMonitor, PodMonitor
and PrometheusRule against the prometheus-operator CRDs' schema facts (a small schema of our own:
kubernetes-validate does not know CRDs), the PrometheusRule's rules through promtool (check and
the unit tests of deploy/prometheus), and the Grafana dashboard's shape and expressions."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.chart.helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    Manifest,
    one,
    render,
    run_helm,
)
from tests.external_tools import require_tool

REPO = CHART.parents[1]
ALERTS_FILE = CHART / "files" / "etcdpy-alerts.yaml"
DASHBOARD_FILE = CHART / "files" / "grafana-dashboard.json"
ALERTS_TESTS = REPO / "deploy" / "prometheus" / "etcdpy-alerts-test.yaml"
# Every monitoring object on; the chart needs a root password when auth.rbac.create is on.
ALL_ON: dict[str, Any] = {
    "auth": {"rbac": {"rootPassword": "secret"}},
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    "grafanaDashboard": {"enabled": True},
}
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")

# prometheus-operator's Duration (pkg/apis/monitoring/v1/types.go, "+kubebuilder:validation:
# Pattern", the `pattern` of every interval, scrapeTimeout and `for` in its CRDs).
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
    r"(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
        "namespace": {"type": "string", "minLength": 1},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}
LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}},
}
NAMESPACE_SELECTOR = {
    "type": "object",
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
# One scrape endpoint: ServiceMonitor.spec.endpoints[] and PodMonitor.spec.podMetricsEndpoints[]
# (port is the port's name; scheme's enum is http/https).
SCRAPE_ENDPOINT = {
    "type": "object",
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"type": "string", "enum": ["http", "https"]},
        "interval": DURATION,
        "scrapeTimeout": DURATION,
    },
}


def monitor_schema(endpoints_field: str) -> dict[str, Any]:
    """monitoring.coreos.com_{servicemonitors,podmonitors}.yaml: spec requires the selector and
    the endpoints list (prometheus-operator v0.82's CRDs)."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": [endpoints_field, "selector"],
                "properties": {
                    "selector": LABEL_SELECTOR,
                    "namespaceSelector": NAMESPACE_SELECTOR,
                    endpoints_field: {"type": "array", "minItems": 1, "items": SCRAPE_ENDPOINT},
                },
            },
        },
    }


# monitoring.coreos.com_prometheusrules.yaml (v0.82): spec.groups[] requires name (minLength 1;
# a list map keyed by name, so names are unique); rules[] require expr (int or string).
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": DURATION,
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}
SCHEMAS = {
    "ServiceMonitor": monitor_schema("endpoints"),
    "PodMonitor": monitor_schema("podMetricsEndpoints"),
    "PrometheusRule": PROMETHEUS_RULE_SCHEMA,
}
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}


def schema_errors(value: Any, schema: Mapping[str, Any], where: str = "") -> Iterator[str]:
    """The JSON-schema keywords the schemas above use: type, enum, required, properties,
    additionalProperties (a schema), items, minItems, minLength, pattern."""
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, JSON_TYPES[t]) and not (t == "integer" and isinstance(value, bool))
            for t in types
        )
        if not ok:
            yield f"{where or '/'}: {value!r} is not of type {schema['type']}"
            return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r} is not one of {schema['enum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield f"{where}: {value!r} is shorter than {schema['minLength']}"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            yield f"{where}: {value!r} does not match {schema['pattern']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield f"{where}: fewer than {schema['minItems']} items"
        for i, item in enumerate(value):
            yield from schema_errors(item, schema.get("items", {}), f"{where}/{i}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                yield f"{where}: {key!r} is required"
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                yield from schema_errors(item, properties[key], f"{where}/{key}")
            elif "additionalProperties" in schema:
                yield from schema_errors(item, schema["additionalProperties"], f"{where}/{key}")


def with_values(*changes: tuple[str, Any]) -> dict[str, Any]:
    """ALL_ON with each (dotted.path, value) set; None removes the key, as helm's null does."""
    values: dict[str, Any] = json.loads(json.dumps(ALL_ON))
    for path, value in changes:
        *parents, last = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return values


def only(docs: list[Manifest], kind: str) -> Manifest:
    return one(docs, kind)


def dashboard_configmap(docs: list[Manifest]) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == "ConfigMap" and "etcdpy.json" in d.get("data", {})]
    assert len(found) == 1
    return found[0]


def under_job(value: Any, job: str) -> Any:
    """The promtool unit tests of deploy/prometheus, written for job "etcd", moved to ``job``."""
    if isinstance(value, dict):
        return {
            k: job if k == "job" and v == "etcd" else under_job(v, job) for k, v in value.items()
        }
    if isinstance(value, list):
        return [under_job(v, job) for v in value]
    if isinstance(value, str):
        return value.replace('job="etcd"', f'job="{job}"').replace(
            'cluster "etcd"', f'cluster "{job}"'
        )
    return value


def test_monitoring_is_off_by_default() -> None:
    docs = render({"auth": {"rbac": {"rootPassword": "secret"}}})
    assert not [d for d in docs if d["kind"] in MONITORING_KINDS]
    with pytest.raises(AssertionError):
        dashboard_configmap(docs)


def test_monitors_need_metrics_enabled_as_bitnamis() -> None:
    docs = render(with_values(("metrics.enabled", False)))
    assert not [d for d in docs if d["kind"] in MONITORING_KINDS]


def test_objects_match_the_operator_crd_schemas() -> None:
    user_rule = {
        "alert": "TooManyKeys",
        "expr": "etcd_debugging_mvcc_keys_total > 1e6",
        "for": "5m",
    }
    docs = render(
        with_values(
            ("metrics.serviceMonitor.namespace", "monitoring"),
            ("metrics.serviceMonitor.additionalLabels", {"release": "kps"}),
            ("metrics.podMonitor.additionalLabels", {"release": "kps"}),
            ("metrics.prometheusRule.additionalLabels", {"release": "kps"}),
            ("metrics.podMonitor.interval", "15s"),
            ("metrics.podMonitor.scrapeTimeout", "5s"),
            ("metrics.prometheusRule.rules", [user_rule]),
        )
    )
    for kind, schema in SCHEMAS.items():
        obj = only(docs, kind)
        assert obj["kind"] == kind
        assert list(schema_errors(obj, schema)) == [], kind
        assert obj["metadata"]["name"] == FULLNAME
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert obj["metadata"]["labels"]["release"] == "kps"
    service_monitor = only(docs, "ServiceMonitor")
    # In another namespace than the release's, it still looks for the release's Services.
    assert service_monitor["metadata"]["namespace"] == "monitoring"
    assert service_monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert service_monitor["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "scheme": "http",
            "interval": "30s",
            "scrapeTimeout": "10s",
        }
    ]
    pod_monitor = only(docs, "PodMonitor")
    assert pod_monitor["metadata"]["namespace"] == NAMESPACE
    assert pod_monitor["spec"]["podMetricsEndpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "scheme": "http",
            "interval": "15s",
            "scrapeTimeout": "5s",
        }
    ]
    groups = only(docs, "PrometheusRule")["spec"]["groups"]
    names = [g["name"] for g in groups]
    assert len(set(names)) == len(names)  # x-kubernetes-list-map-keys: name
    assert groups[-1] == {
        "name": FULLNAME,
        "rules": [user_rule],
    }


def test_the_schema_check_catches_what_the_crd_refuses() -> None:
    """The check itself fails on objects the operator's CRDs would refuse."""
    monitor = only(render(ALL_ON), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "1.5s"  # Prometheus durations are integers
    del monitor["spec"]["selector"]
    errors = list(schema_errors(monitor, SCHEMAS["ServiceMonitor"]))
    assert len(errors) == 2, errors
    assert "'selector' is required" in errors[0] and "/spec/endpoints/0/interval" in errors[1]
    rule = only(render(ALL_ON), "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    del rule["spec"]["groups"][0]["rules"][1]["expr"]
    errors = list(schema_errors(rule, SCHEMAS["PrometheusRule"]))
    assert errors == [
        "/spec/groups/0/rules/0/for: 'ten minutes' does not match " + DURATION["pattern"],
        "/spec/groups/0/rules/1: 'expr' is required",
    ]


def test_monitors_select_the_members_metrics_port() -> None:
    docs = render(ALL_ON)
    statefulset = only(docs, "StatefulSet")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    (container,) = [
        c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "etcdpy"
    ]
    assert {"name": "metrics", "containerPort": 9090} in [
        {"name": p["name"], "containerPort": p["containerPort"]} for p in container["ports"]
    ]
    pod_selector = only(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]
    assert pod_selector.items() <= pod_labels.items()
    # The ServiceMonitor's selector picks the Services of the release; of those only the client
    # Service has a `metrics` port, so every member is scraped once.
    service_selector = only(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in docs
        if s["kind"] == "Service" and service_selector.items() <= s["metadata"]["labels"].items()
    ]
    with_metrics = [
        s["metadata"]["name"]
        for s in services
        if "metrics" in [p["name"] for p in s["spec"]["ports"]]
    ]
    assert with_metrics == [FULLNAME]
    (client_service,) = [s for s in services if s["metadata"]["name"] == FULLNAME]
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics"} in client_service["spec"][
        "ports"
    ]
    assert client_service["spec"]["selector"].items() <= pod_labels.items()


def test_rules_are_the_files_rules_for_the_release_job() -> None:
    """One home: the PrometheusRule holds the file's alerts, with the job selector narrowed to
    the release's job (the ServiceMonitor's `<fullname>` or the PodMonitor's
    `<namespace>/<fullname>`)."""
    shipped = yaml.safe_load(ALERTS_FILE.read_text())
    groups = only(render(ALL_ON), "PrometheusRule")["spec"]["groups"]
    assert len(groups) == len(shipped["groups"])
    selector = f'job=~"(.+/)?{FULLNAME}"'
    for rendered, original in zip(groups, shipped["groups"], strict=True):
        assert rendered["name"] == original["name"]
        assert len(rendered["rules"]) == len(original["rules"]) == 15
        for r, o in zip(rendered["rules"], original["rules"], strict=True):
            assert 'job=~".*etcd.*"' in o["expr"] and ".*etcd.*" not in r["expr"]
            assert r == {**o, "expr": o["expr"].replace('job=~".*etcd.*"', selector)}


def test_a_dotted_fullname_is_quoted_in_the_selector() -> None:
    groups = only(render(with_values(("fullnameOverride", "kv.store"))), "PrometheusRule")["spec"][
        "groups"
    ]
    assert 'job=~"(.+/)?kv\\\\.store"' in groups[0]["rules"][2]["expr"]


@pytest.mark.parametrize("job", [FULLNAME, f"{NAMESPACE}/{FULLNAME}", "monitoring/other-etcd"])
def test_rendered_rules_pass_promtool(tmp_path: Path, job: str) -> None:
    """`promtool check rules` and the unit tests of deploy/prometheus/etcdpy-alerts-test.yaml
    against the rendered rules, with the tests' series under the release's ServiceMonitor job,
    its PodMonitor job, and (expected to fail) another cluster's job."""
    promtool = require_tool("promtool")
    rule = only(render(ALL_ON), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = under_job(yaml.safe_load(ALERTS_TESTS.read_text()), job)
    tests["rule_files"] = ["rules.yaml"]
    text = yaml.safe_dump(tests)
    assert '"etcd"' not in text and text.count(job) >= 10
    (tmp_path / "tests.yaml").write_text(text)
    check = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "SUCCESS: 15 rules found" in check.stdout, (
        check.stdout + check.stderr
    )
    unit = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if job.startswith("monitoring/other"):  # another cluster's series: no alert of this release
        assert unit.returncode != 0 and "FAILED" in unit.stdout + unit.stderr
    else:
        assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_helm_lint_is_clean_with_monitoring_on() -> None:
    result = run_helm("lint", "--strict", str(CHART), values=ALL_ON)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_deploy_files_link_to_the_charts() -> None:
    """deploy/ serves users without the chart from the chart's files (one home each)."""
    assert (REPO / "deploy/prometheus/etcdpy-alerts.yaml").resolve() == ALERTS_FILE
    assert (REPO / "deploy/grafana/etcdpy-dashboard.json").resolve() == DASHBOARD_FILE


def test_the_configmap_holds_the_dashboard_for_grafanas_sidecar() -> None:
    configmap = dashboard_configmap(render(ALL_ON))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["etcdpy.json"]) == json.loads(DASHBOARD_FILE.read_text())
    relabelled = dashboard_configmap(
        render(with_values(("grafanaDashboard.labels", {"grafana_dashboard": None, "team": "kv"})))
    )
    assert relabelled["metadata"]["labels"]["team"] == "kv"
    assert "grafana_dashboard" not in relabelled["metadata"]["labels"]


def dashboard_panels() -> list[Manifest]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p["targets"]]


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard expression as Grafana sends it: every member of every job."""
    return (
        expr.replace('job="$job"', 'job=~".+"')
        .replace('instance=~"$instance"', 'instance=~".*"')
        .replace("$__rate_interval", rate_interval)
    )


def test_dashboard_shape() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == variables["instance"]["type"] == "query"
    assert "$job" in variables["instance"]["definition"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert '{job="$job"' in target["expr"], target["expr"]
    titles = {p["title"] for p in dashboard_panels()}
    for wanted in (
        "Members up",
        "Has leader",
        "Leader changes",
        "Proposals committed and applied",
        "Proposals pending and failed",
        "DB size and quota",
        "WAL fsync p99",
        "Backend commit p99",
        "gRPC requests",
        "gRPC errors",
        "Peer round trip p99",
        "Watchers and streams",
    ):
        assert wanted in titles


def test_dashboard_expressions_parse_with_promtool(tmp_path: Path) -> None:
    """Every expression (and each variable's query, as a selector) is valid PromQL: promtool
    checks them as the expressions of recording rules."""
    promtool = require_tool("promtool")
    exprs = [concrete(e) for e in dashboard_exprs()]
    rules = [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )
    proc = subprocess.run(
        [promtool, "check", "rules", "dashboard.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
