"""What ``etcdpy k8s get`` prints: AGE as apimachinery's HumanDuration, the tables of kubectl's
printers laid out as kubectl lays them out, and -o json/yaml/name compared byte for byte with the
real kubectl (``kubectl label --local -f FILE -o ...`` prints objects without a cluster)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from etcdpy.k8s import printers

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"
NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)


def _ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(kind: str, objects: list[dict[str, Any]], **options: Any) -> str:
    printer = printers.TablePrinter(printers.table_for(kind), now=lambda: NOW, **options)
    return printer.render(objects)


# apimachinery's duration_test.go cases, and the edges of each band.
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (70, "70s"),
        (190, "3m10s"),
        (70 * 60, "70m"),
        (47 * 3600, "47h"),
        (49 * 3600, "2d1h"),
        ((8 * 24 + 2) * 3600, "8d"),
        (367 * 24 * 3600, "367d"),
        ((365 * 2 * 24 + 25) * 3600, "2y1d"),
        ((365 * 8 * 24 + 2) * 3600, "8y"),
        (-1.5, "0s"),
        (-2, "<invalid>"),
        (119, "119s"),
        (120, "2m"),
        (599, "9m59s"),
        (3 * 3600 + 1, "3h"),
        (7 * 3600 + 59 * 60, "7h59m"),
    ],
)
def test_human_duration_is_apimachinerys(seconds: float, text: str) -> None:
    assert printers.human_duration(seconds) == text


def _pod(name: str, namespace: str = "default", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": _ago(minutes=5)},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "node-1"},
        "status": status,
    }


RUNNING: dict[str, Any] = {
    "phase": "Running",
    "podIPs": [{"ip": "10.0.0.7"}],
    "containerStatuses": [
        {"name": "c", "ready": True, "restartCount": 0, "state": {"running": {}}}
    ],
}


def test_pod_table_columns_widths_and_age() -> None:
    text = _table("Pod", [_pod("web", **RUNNING), _pod("a-much-longer-name", phase="Pending")])
    assert text == (
        "NAME                 READY   STATUS    RESTARTS   AGE\n"
        "web                  1/1     Running   0          5m\n"
        "a-much-longer-name   0/1     Pending   0          5m\n"
    )


def test_all_namespaces_puts_namespace_first_and_wide_adds_priority_columns() -> None:
    text = _table("Pod", [_pod("web", "prod", **RUNNING)], with_namespace=True, wide=True)
    assert text.splitlines() == [
        "NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE   IP         NODE     "
        "NOMINATED NODE   READINESS GATES",
        "prod        web    1/1     Running   0          5m    10.0.0.7   node-1   "
        "<none>           <none>",
    ]


def test_pod_status_follows_kubectls_rules() -> None:
    waiting = _pod(
        "crash",
        phase="Running",
        containerStatuses=[
            {
                "name": "c",
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"finishedAt": _ago(seconds=90)}},
            }
        ],
    )
    deleting = _pod("bye", **RUNNING)
    deleting["metadata"]["deletionTimestamp"] = _ago(seconds=1)
    init = _pod("init", phase="Pending", initContainerStatuses=[{"name": "i", "state": {}}])
    init["spec"]["initContainers"] = [{"name": "i", "image": "busybox"}]
    rows = _table("Pod", [waiting, deleting, init]).splitlines()[1:]
    assert rows[0].split()[1:5] == ["0/1", "CrashLoopBackOff", "4", "(90s"]
    assert "Terminating" in rows[1]
    assert rows[2].split()[2] == "Init:0/1"


def test_node_table() -> None:
    node = {
        "kind": "Node",
        "metadata": {
            "name": "n1",
            "creationTimestamp": _ago(days=3, hours=4),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "x"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "nodeInfo": {"kubeletVersion": "v1.31.0"},
            "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
        },
    }
    assert _table("Node", [node], wide=True).splitlines()[1].split() == [
        "n1",
        "NotReady,SchedulingDisabled",
        "control-plane,x",
        "3d4h",
        "v1.31.0",
        "192.168.1.2",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]


def test_service_secret_configmap_deployment_lease_rows() -> None:
    service = {
        "kind": "Service",
        "metadata": {"name": "web", "creationTimestamp": _ago(hours=2)},
        "spec": {
            "type": "NodePort",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"},
        },
    }
    assert _table("Service", [service], wide=True).splitlines()[1].split() == [
        "web",
        "NodePort",
        "10.96.0.10",
        "<none>",
        "80:30080/TCP,53/UDP",
        "120m",
        "app=web",
    ]
    secret = {"metadata": {"name": "s", "creationTimestamp": _ago(seconds=30)}, "data": {"a": ""}}
    assert _table("Secret", [secret]).splitlines() == [
        "NAME   TYPE     DATA   AGE",
        "s      Opaque   1      30s",
    ]
    config_map = {"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": ""}}
    assert _table("ConfigMap", [config_map]).splitlines()[1].split() == ["c", "2", "<unknown>"]
    deployment = {
        "metadata": {"name": "d", "creationTimestamp": _ago(days=40)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "d"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
            },
            "template": {"spec": {"containers": [{"name": "x", "image": "i:1"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert _table("Deployment", [deployment], wide=True).splitlines() == [
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES   SELECTOR",
        "d      2/3     3            2           40d   x            i:1      app=d,tier in (a,b)",
    ]
    lease = {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}}
    assert _table("Lease", [lease]).splitlines()[1].split() == ["n1", "n1", "<unknown>"]


def test_event_table_default_and_wide() -> None:
    event = {
        "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
        "reason": "Pulled",
        "type": "Normal",
        "message": "Pulled image\nsecond line",
        "firstTimestamp": _ago(minutes=3),
        "lastTimestamp": _ago(seconds=20),
        "count": 2,
        "source": {"component": "kubelet", "host": "node-1"},
    }
    assert _table("Event", [event]).splitlines() == [
        "LAST SEEN   TYPE     REASON   OBJECT    MESSAGE",
        "20s         Normal   Pulled   pod/web   Pulled image...",
    ]
    wide = _table("Event", [event], wide=True).splitlines()
    assert wide[0].split() == [
        "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
        "FIRST", "SEEN", "COUNT", "NAME",
    ]  # fmt: skip
    assert "kubelet, node-1" in wide[1] and wide[1].endswith("3m           2       web.1")


def test_kinds_without_a_printer_get_the_api_servers_default_table() -> None:
    role = {"metadata": {"name": "reader", "creationTimestamp": "2025-03-04T05:06:07Z"}}
    assert _table("Role", [role]) == "NAME     CREATED AT\nreader   2025-03-04T05:06:07Z\n"
    custom = printers.TablePrinter(printers.table_for("Widget", builtin=False), now=lambda: NOW)
    assert custom.render([role]).splitlines()[0] == "NAME     AGE"


def test_watch_rows_keep_the_widths_already_printed() -> None:
    printer = printers.TablePrinter(printers.table_for("Lease"), now=lambda: NOW)
    first = printer.render([{"metadata": {"name": "a-long-lease-name"}}])
    second = printer.render([{"metadata": {"name": "b"}}])
    assert first.splitlines()[0].startswith("NAME                ")
    assert second == "b" + " " * 19 + " " * 9 + "<unknown>\n"  # no second header, same columns


def test_show_labels_and_no_headers() -> None:
    lease = {"metadata": {"name": "a", "labels": {"z": "1", "a": "2"}}}
    text = _table("Lease", [lease], show_labels=True, no_headers=True)
    assert text == "a" + " " * 11 + "<unknown>   a=2,z=1\n"  # minimum width 6


def test_name_lines() -> None:
    assert printers.name_line("Pod", "", "web") == "pod/web\n"
    assert printers.name_line("Deployment", "apps", "d", "created") == "deployment.apps/d created\n"
    assert printers.short_line("Pod", "", "web", "deleted") == 'pod "web" deleted\n'


# --- compared with the real kubectl ------------------------------------------------------------

TRICKY = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "tricky",
        "namespace": "default",
        "labels": {"x": "y", "app.kubernetes.io/name": "web", "a10": "1", "a9": "2"},
        "annotations": {"ts": "2024-01-01T00:00:00Z", "html": "<a&b>", "sp": " lead"},
    },
    "data": {
        "empty": "",
        "bool": "true",
        "no": "n",
        "num": "0777",
        "exp": "1e3",
        "under": "1_000",
        "null": "~",
        "colon": "a: b",
        "star": "*",
        "eq": "=",
        "tab": "a\tb",
        "multi": "line1\nline2\n",
        "multi2": "line1\nline2",
        "unicode": "héllo ✓",
        "long": " ".join(["word"] * 40),
        "Upper": "u",
        "_under": "u",
    },
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "prod", "labels": {"x": "y"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "nginx",
                        "image": "nginx:1.25",
                        "args": ["--a", "1", "true", "yes"],
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": 0.5}},
                    }
                ],
                "nodeSelector": {},
                "tolerations": [],
            },
        },
    },
}


def _kubectl(manifest: Path, output: str) -> str:
    if not KUBECTL.exists():
        raise AssertionError(f"{KUBECTL} is missing: run `make k8s-tools` (make test does)")
    proc = subprocess.run(
        [str(KUBECTL), "label", "--local", "-f", str(manifest), "x=y", "--overwrite", "-o", output],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, KUBECONFIG=os.devnull),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("obj", [TRICKY, DEPLOYMENT], ids=["configmap", "deployment"])
def test_json_yaml_and_name_are_kubectls_bytes(obj: dict[str, Any], tmp_path: Path) -> None:
    manifest = tmp_path / "obj.json"
    manifest.write_text(json.dumps(obj))
    kubectl_json = _kubectl(manifest, "json")
    assert json.loads(kubectl_json) == obj  # the label was already there: the object as given
    assert printers.to_json(obj) == kubectl_json
    assert printers.to_yaml(obj) == _kubectl(manifest, "yaml")
    group = obj["apiVersion"].rpartition("/")[0]
    name = obj["metadata"]["name"]
    assert printers.name_line(obj["kind"], group, name) == _kubectl(manifest, "name")


def test_list_output_is_kubectls_list() -> None:
    text = printers.to_yaml(printers.as_list([{"kind": "Pod"}]))
    assert text == (
        'apiVersion: v1\nitems:\n- kind: Pod\nkind: List\nmetadata:\n  resourceVersion: ""\n'
    )
