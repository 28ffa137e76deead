"""The harness itself, on a hand-written StatefulSet that runs plain ``etcdpy`` under the
contract's names (no chart needed): pods in their own namespaces resolve one another by their
pod DNS names, see their ConfigMap, Secret and PVC at the mountPaths as uid 1001, a killed
container restarts in the same pod, a deleted pod comes back under its name with its PVC on a
new address, a cut link isolates a pod, and a Job runs to completion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s_harness.checks import Etcdctl, eventually, members_agree
from tests.k8s_harness.cluster import JobResult, LocalKube, Release
from tests.k8s_harness.manifests import Manifests, Obj

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "mini"
HEADLESS = f"{NAME}-headless"
LABELS = {"app.kubernetes.io/name": "etcdpy", "app.kubernetes.io/instance": NAME}


def _peer(i: int) -> str:
    return f"{NAME}-{i}=http://{NAME}-{i}.{HEADLESS}.default.svc.cluster.local:2380"


def mini_manifests(replicas: int = 3) -> Manifests:
    """The contract's shapes, by hand: env ConfigMap, a Secret, both Services, a StatefulSet
    whose container runs ``etcdpy`` with etcd's ETCD_* variables, and a Job."""
    config: Obj = {
        "kind": "ConfigMap",
        "metadata": {"name": f"{NAME}-env"},
        "data": {
            "ETCD_DATA_DIR": "/var/lib/etcdpy/data",
            "ETCD_INITIAL_CLUSTER": ",".join(_peer(i) for i in range(replicas)),
            "ETCD_INITIAL_CLUSTER_TOKEN": "mini-token",
            "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:2379",
            "ETCD_LISTEN_PEER_URLS": "http://0.0.0.0:2380",
            "ETCD_LISTEN_METRICS_URLS": "http://0.0.0.0:9090",
        },
    }
    files: Obj = {
        "kind": "ConfigMap",
        "metadata": {"name": f"{NAME}-files"},
        "data": {"greeting.txt": "hello"},
    }
    secret: Obj = {
        "kind": "Secret",
        "metadata": {"name": NAME},
        "data": {"etcd-root-password": "c2VjcmV0"},
    }
    fqdn = f"$(ETCDPY_K8S_POD_NAME).{HEADLESS}.$(ETCDPY_K8S_NAMESPACE).svc.cluster.local"
    container: Obj = {
        "name": "etcdpy",
        "command": ["etcdpy"],
        "args": ["--log-level=warn"],
        "ports": [
            {"name": "client", "containerPort": 2379},
            {"name": "metrics", "containerPort": 9090},
        ],
        "envFrom": [{"configMapRef": {"name": f"{NAME}-env"}}],
        "env": [
            {
                "name": "ETCDPY_K8S_POD_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
            {
                "name": "ETCDPY_K8S_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "ROOT_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": NAME, "key": "etcd-root-password"}},
            },
            {"name": "ETCD_NAME", "value": "$(ETCDPY_K8S_POD_NAME)"},
            {"name": "ETCD_ADVERTISE_CLIENT_URLS", "value": f"http://{fqdn}:2379"},
            {"name": "ETCD_INITIAL_ADVERTISE_PEER_URLS", "value": f"http://{fqdn}:2380"},
        ],
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/etcdpy"},
            {"name": "files", "mountPath": "/etc/etcdpy/files"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"}},
    }
    statefulset: Obj = {
        "kind": "StatefulSet",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "serviceName": HEADLESS,
            "podManagementPolicy": "Parallel",
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "securityContext": {"runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001},
                    "terminationGracePeriodSeconds": 10,
                    "containers": [container],
                    "volumes": [
                        {"name": "files", "configMap": {"name": f"{NAME}-files"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
        },
    }
    services: list[Obj] = [
        {
            "kind": "Service",
            "metadata": {"name": HEADLESS},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": LABELS},
        },
        {"kind": "Service", "metadata": {"name": NAME}, "spec": {"selector": LABELS}},
    ]
    return Manifests.of([config, files, secret, *services, statefulset])


def job(argv: list[str]) -> Obj:
    return {
        "kind": "Job",
        "metadata": {"name": f"{NAME}-job"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "securityContext": {"runAsUser": 1001, "fsGroup": 1001},
                    "containers": [
                        {
                            "name": "job",
                            "command": argv,
                            "env": [
                                {
                                    "name": "PW",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": NAME, "key": "etcd-root-password"}
                                    },
                                }
                            ],
                        }
                    ],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def mini(kube: LocalKube) -> Iterator[Release]:
    release = Release(kube, NAME)
    release.install({}, manifests=mini_manifests())
    try:
        release.wait_ready(timeout=60)
    except AssertionError:
        release.uninstall()
        raise
    yield release
    release.uninstall()


def in_pod(release: Release, script: str) -> JobResult:
    """Runs a shell command in a pod of its own, as a container would see it."""
    result = release.run_pod_once(
        "probe",
        {
            "spec": {
                "securityContext": {"runAsUser": 1001, "fsGroup": 1001},
                "containers": [{"name": "sh", "command": ["sh", "-c", script]}],
            }
        },
        release.rendered,
        1,
        timeout=20,
    )
    return result


def test_three_pods_form_a_cluster_by_their_dns_names(mini: Release) -> None:
    ctl = Etcdctl(mini)
    eventually(lambda: members_agree(ctl), what="members agree")
    assert ctl.out("put", "k", "v").strip() == "OK"
    client = f"http://{NAME}.default.svc.cluster.local:2379"
    assert ctl.out("get", "k", "--print-value-only", endpoints=[client]).strip() == "v"


def test_a_pod_sees_its_volumes_and_runs_as_1001(mini: Release) -> None:
    pod = mini.pod(f"{NAME}-0")
    assert pod.run is not None
    assert pod.run.env["ETCDPY_K8S_POD_NAME"] == f"{NAME}-0"
    assert pod.run.env["POD_IP"] == pod.address
    assert pod.run.env["ROOT_PASSWORD"] == "secret"
    assert pod.run.argv == ["etcdpy", "--log-level=warn"]
    # the container's own view, through /proc of its PID
    root = Path(f"/proc/{pod.pid}/root")
    assert (root / "etc/etcdpy/files/greeting.txt").read_text() == "hello"
    assert (mini.kube.pvc_path(f"data-{NAME}-0") / "data" / "member").is_dir()
    status = Path(f"/proc/{pod.pid}/status").read_text().splitlines()
    uid_line = next(line for line in status if line.startswith("Uid:"))
    assert uid_line.split()[1:3] == ["1001", "1001"]
    other = mini.pod(f"{NAME}-1").address
    fqdn = "mini-1.mini-headless.default.svc.cluster.local"
    result = in_pod(mini, f"hostname; id -u; getent hosts {fqdn}; getent hosts {other}")
    assert result.succeeded, result.log
    lines = result.log.splitlines()[1:]  # after the harness's start line
    assert lines[0].startswith("probe-")  # the pod's own hostname
    assert lines[1] == "1001"
    # getent: the address, its canonical (fully qualified) name first, then the aliases; the
    # reverse lookup (which peer TLS checks certificates with) answers that name too
    assert lines[2].split()[:2] == [other, fqdn]
    assert lines[3].split()[:2] == [other, fqdn]


def test_a_killed_container_restarts_in_the_same_pod(mini: Release) -> None:
    ctl = Etcdctl(mini)
    name = f"{NAME}-2"
    pod = mini.pod(name)
    address, pid = pod.address, pod.pid
    mini.kill_pod(name)
    eventually(lambda: (pod.alive() and pod.pid != pid) or None, what="restart")  # type: ignore[func-returns-value]
    mini.wait_ready(timeout=30)
    assert mini.pod(name).address == address
    eventually(lambda: members_agree(ctl), what="members agree")


def test_a_deleted_pod_comes_back_with_its_pvc_on_a_new_address(mini: Release) -> None:
    ctl = Etcdctl(mini)
    name = f"{NAME}-1"
    old = mini.pod(name).address
    ctl.out("put", "before-delete", "x")
    mini.delete_pod(name)
    mini.wait_ready(timeout=30)
    assert mini.pod(name).address != old
    eventually(lambda: members_agree(ctl), what="members agree")
    out = ctl.out("get", "before-delete", "--print-value-only", endpoints=[ctl.endpoint(name)])
    assert out.strip() == "x"


def test_a_cut_link_isolates_the_pod(mini: Release) -> None:
    ctl = Etcdctl(mini)
    name = f"{NAME}-0"
    mini.cut(name)
    try:
        proc = ctl.run("endpoint", "health", endpoints=[ctl.endpoint(name)], timeout=20)
        assert proc.returncode != 0
    finally:
        mini.heal(name)
    eventually(lambda: ctl.out("endpoint", "health", endpoints=[ctl.endpoint(name)]), what="heal")


def test_a_read_only_root_filesystem_leaves_only_the_volumes_writable(mini: Release) -> None:
    template = {
        "spec": {
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [
                {
                    "name": "sh",
                    "command": ["sh", "-c", "touch /scratch/ok && touch /etc/etcdpy-probe"],
                    "securityContext": {"readOnlyRootFilesystem": True},  # and root: uid 0
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
        }
    }
    result = mini.run_pod_once("rofs", template, mini.rendered, 1, timeout=20)
    assert result.code == 1 and "Read-only file system" in result.log, result.log
    assert not Path("/etc/etcdpy-probe").exists()


def test_a_job_runs_to_completion_with_its_env(mini: Release) -> None:
    ok = mini.run_job(
        job(
            [
                "sh",
                "-c",
                'test "$PW" = secret && etcdctl --endpoints=http://mini:2379 put fromjob 1',
            ]
        )
    )
    assert ok.succeeded, ok.log
    failing = mini.run_job(job(["sh", "-c", "exit 3"]))
    assert failing.code == 3
