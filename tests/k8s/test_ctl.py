"""``etcdpy k8s apply|get|delete|watch`` against real servers (each test runs on etcdpy and on
etcd 3.4): a few transcripts as a user runs them (the ``etcdpy`` console script, a watch stopped
by SIGTERM), the rest through ``ctl.main`` in process (the same code, without the second of
interpreter start-up each run costs)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from etcdpy.k8s import apply as apply_module
from etcdpy.k8s import ctl
from etcdpy.k8s.etcd import EtcdClient
from etcdpy.k8s.store import ObjectStore
from etcdpy.statefulset.commands import OBJECT_VERBS
from etcdpy.testing.processes import free_port, stop_process
from tests.k8s.conftest import Server

ETCDPY = Path(sys.executable).with_name("etcdpy")

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - {name: nginx, image: "nginx:1.25"}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cfg, namespace: prod}
  data: {a: "1"}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d, namespace: prod}
  spec:
    replicas: 2
    selector: {matchLabels: {app: d}}
    template:
      metadata: {labels: {app: d}}
      spec: {containers: [{name: x, image: "x:1"}]}
"""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def _flags(server: Server) -> list[str]:
    return ["--endpoints", server.endpoint, "--root", server.root, "--command-timeout", "5"]


def run(server: Server, *argv: str, stdin: str = "") -> Result:
    """``etcdpy k8s ARGV`` in process."""
    out, err = io.StringIO(), io.StringIO()
    code = ctl.main([*argv, *_flags(server)], {}, stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return Result(code, out.getvalue(), err.getvalue())


def shell(server: Server, *argv: str, stdin: str = "") -> Result:
    """``etcdpy k8s ARGV`` as a user runs it."""
    proc = subprocess.run(
        [str(ETCDPY), "k8s", *argv, *_flags(server)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    with ObjectStore.connect(server.endpoint, root=server.root, typed=False) as opened:
        yield opened


def _keys(server: Server) -> list[bytes]:
    client = EtcdClient.connect(server.endpoint)
    try:
        root = server.root.encode()
        return [kv.key for kv in client.range(root + b"/", root + b"0", keys_only=True).kvs]
    finally:
        client.close()


# --- as a user runs it ---------------------------------------------------------------------------


def test_transcript_apply_get_delete(server: Server, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFESTS)
    applied = shell(server, "apply", "-f", str(manifest))
    assert (applied.code, applied.err) == (0, "")
    assert applied.out == (
        "namespace/prod created\npod/web created\nconfigmap/cfg created\n"
        "deployment.apps/d created\n"
    )
    listed = shell(server, "get", "deployments.apps", "-A")
    assert listed.code == 0
    header, row = listed.out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:5] == ["prod", "d", "0/2", "0", "0"]
    deleted = run(server, "delete", "pod", "web", "nope")  # in process: start-up costs a second
    assert deleted.code == 1
    assert deleted.out == 'pod "web" deleted\n'
    assert deleted.err == 'Error from server (NotFound): pods "nope" not found\n'


def test_transcript_watch_prints_rows_until_sigterm(server: Server, store: ObjectStore) -> None:
    store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first"}})
    with subprocess.Popen(
        [str(ETCDPY), "k8s", "watch", "pods", *_flags(server)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            lines = [proc.stdout.readline(), proc.stdout.readline()]  # the header, the list
            assert lines[0].split()[:2] == ["NAME", "READY"] and lines[1].startswith("first ")
            store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "second"}})
            assert proc.stdout.readline().startswith("second ")  # the event, as it arrives
        finally:
            code = stop_process(proc, signal.SIGTERM, timeout=10)  # type: ignore[arg-type]
        assert code == 1  # kubectl's interrupt handler exits with 1 too
        assert proc.stderr.read() == ""


# --- apply ------------------------------------------------------------------------------------


def _pod(**labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
    }


def test_apply_updates_keeping_what_it_does_not_own(server: Server, store: ObjectStore) -> None:
    assert run(server, "apply", "-f", "-", stdin=json.dumps(_pod(a="1", b="2"))).out == (
        "pod/web created\n"
    )
    created = store.get("pods", "web")
    annotation = created["metadata"]["annotations"][apply_module.LAST_APPLIED]
    assert annotation == (  # kubectl's bytes: compact, sorted, annotations emptied, a newline
        '{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{},"labels":{"a":"1","b":"2"},'
        '"name":"web","namespace":"default"},"spec":{"containers":[{"image":"nginx:1",'
        '"name":"c"}]}}\n'
    )

    def add_status(live: dict[str, Any]) -> dict[str, Any]:  # what a controller would do
        live["metadata"]["labels"]["added-by-controller"] = "yes"
        live["status"] = {"phase": "Running"}
        return live

    store.guaranteed_update("pods", "web", add_status, namespace="default")
    changed = _pod(a="1", c="3")  # b removed, c added
    changed["spec"]["containers"][0]["image"] = "nginx:2"
    assert run(server, "apply", "-f", "-", stdin=yaml.safe_dump(changed)).out == (
        "pod/web configured\n"
    )
    live = store.get("pods", "web")
    assert live["metadata"]["labels"] == {"a": "1", "c": "3", "added-by-controller": "yes"}
    assert live["spec"]["containers"][0]["image"] == "nginx:2"
    assert live["status"] == {"phase": "Running"}
    for kept in ("uid", "creationTimestamp"):
        assert live["metadata"][kept] == created["metadata"][kept]
    again = run(server, "apply", "-f", "-", stdin=yaml.safe_dump(changed))
    assert (again.code, again.out) == (0, "pod/web unchanged\n")


def test_yaml_round_trip_is_unchanged(server: Server) -> None:
    run(server, "apply", "-f", "-", stdin=MANIFESTS)
    printed = run(server, "get", "deployment", "d", "-n", "prod", "-o", "yaml")
    as_json = run(server, "get", "deployment", "d", "-n", "prod", "-o", "json")
    assert yaml.safe_load(printed.out) == json.loads(as_json.out)
    again = run(server, "apply", "-f", "-", stdin=printed.out)
    assert (again.code, again.out, again.err) == (0, "deployment.apps/d unchanged\n", "")


def test_a_stale_resource_version_in_the_file_is_a_conflict(server: Server) -> None:
    run(server, "apply", "-f", "-", stdin=json.dumps(_pod()))
    printed = yaml.safe_load(run(server, "get", "pod", "web", "-o", "yaml").out)
    run(server, "apply", "-f", "-", stdin=json.dumps(_pod(now="changed")))
    stale = run(server, "apply", "-f", "-", stdin=yaml.safe_dump(printed))
    assert stale.code == 1
    assert stale.err.startswith("Error from server (Conflict): ")


BAD_MANIFESTS = {
    "no kind": ("apiVersion: v1\nmetadata: {name: x}\n", 'error: unable to decode "-": '),
    "no apiVersion": ("kind: Pod\nmetadata: {name: x}\n", 'error: unable to decode "-": '),
    "invalid yaml": ("kind: Pod\nmetadata: {name: [x\n", "error: error parsing -: "),
    "unknown kind": (
        "apiVersion: v1\nkind: Gadget\nmetadata: {name: x}\n",
        'error: resource mapping not found for name: "x" namespace: "" from "-": no matches '
        'for kind "Gadget" in version "v1"',
    ),
    "no name": (
        "apiVersion: v1\nkind: Pod\nmetadata: {}\n",
        "Error from server (Invalid): resource name may not be empty",
    ),
    "namespace mismatch": (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: a}\n",
        'Error from server (BadRequest): the namespace from the provided object "a" does not '
        'match the namespace "b".',
    ),
    "too large": (
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "big"},
                "data": {"a": "x" * (2 * 1024 * 1024)},
            }
        ),
        'Error from server (RequestEntityTooLarge): configmaps "big" is too large',
    ),
    "not an object": ("- a\n- b\n", 'error: unable to decode "-": not an object'),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_write_nothing(server: Server, case: str) -> None:
    text, message = BAD_MANIFESTS[case]
    # A good object first: it must not be written either.
    good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n---\n"
    result = run(server, "apply", "-n", "b", "-f", "-", stdin=good + text)
    assert result.code == 1
    assert result.err.startswith(message), result.err
    assert result.out == ""
    assert _keys(server) == []


def test_namespace_flag_with_cluster_scoped_kinds_is_ignored(server: Server) -> None:
    node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, namespace: stray}\n"
    assert run(server, "apply", "-n", "other", "-f", "-", stdin=node).out == "node/n1 created\n"
    assert _keys(server) == [f"{server.root}/minions/n1".encode()]
    deleted = run(server, "delete", "node", "n1", "-n", "other")
    assert (deleted.code, deleted.out) == (0, 'node "n1" deleted\n')


def test_missing_file(server: Server) -> None:
    result = run(server, "apply", "-f", "/nonexistent/x.yaml")
    assert (result.code, result.err) == (
        1,
        'error: the path "/nonexistent/x.yaml" does not exist\n',
    )


# --- get ---------------------------------------------------------------------------------------


def test_get_outputs_selectors_and_pages(server: Server, store: ObjectStore) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        store.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "ns1", "labels": {"tier": tier}},
            }
        )
    paged = run(server, "get", "cm", "-n", "ns1", "--chunk-size", "1", "-o", "name")
    assert paged.out == "configmap/a\nconfigmap/b\nconfigmap/c\n"
    selected = run(server, "get", "configmaps", "-n", "ns1", "-l", "tier=web", "-o", "name")
    assert selected.out == "configmap/a\nconfigmap/c\n"
    by_field = run(server, "get", "ConfigMap", "-A", "--field-selector", "metadata.name=b")
    assert by_field.out.splitlines()[1].split()[:3] == ["ns1", "b", "0"]
    single = json.loads(run(server, "get", "configmap/a", "-n", "ns1", "-o", "json").out)
    assert single["metadata"]["name"] == "a" and single["kind"] == "ConfigMap"
    listed = yaml.safe_load(run(server, "get", "cm", "-n", "ns1", "-o", "yaml").out)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == [
        "a",
        "b",
        "c",
    ]


def test_get_several_kinds_and_all(server: Server) -> None:
    run(server, "apply", "-f", "-", stdin=MANIFESTS)
    both = run(server, "get", "pods,cm", "-A")
    pods, config_maps = both.out.split("\n\n")  # a table per kind, names with their kind
    assert pods.splitlines()[1].split()[:2] == ["default", "pod/web"]
    assert config_maps.splitlines()[1].split()[:2] == ["prod", "configmap/cfg"]
    every = run(server, "get", "all", "-n", "prod", "-o", "name")
    assert every == Result(0, "deployment.apps/d\n", "")  # kubectl's "all": no configmaps
    watched = run(server, "get", "pods,cm", "-w")
    assert watched == Result(1, "", "error: you may only specify a single resource type\n")


def test_get_messages_and_exit_codes(server: Server, store: ObjectStore) -> None:
    assert run(server, "get", "pods") == Result(0, "", "No resources found in default namespace.\n")
    assert run(server, "get", "pods", "-A").err == "No resources found\n"
    assert run(server, "get", "pods", "nope") == Result(
        1, "", 'Error from server (NotFound): pods "nope" not found\n'
    )
    assert run(server, "get", "pods", "nope", "--ignore-not-found") == Result(0, "", "")
    assert run(server, "get", "gadgets") == Result(
        1, "", 'error: the server doesn\'t have a resource type "gadgets"\n'
    )
    store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    nodes = run(server, "get", "no", "-n", "ignored-for-cluster-scoped-kinds")
    assert nodes.code == 0 and nodes.out.splitlines()[1].split()[:3] == ["n1", "Unknown", "<none>"]
    bad_flag = run(server, "get", "pods", "--bogus")
    assert bad_flag.code == 1 and bad_flag.err.startswith("error: unrecognized arguments: --bogus")


def test_unreachable_endpoint_fails_within_the_timeout() -> None:
    started = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    argv = ["get", "pods", "--endpoints", f"127.0.0.1:{free_port()}", "--command-timeout", "1"]
    code = ctl.main(argv, {}, stdout=out, stderr=err)
    assert code == 1
    assert err.getvalue().startswith("Unable to connect to the server: ")
    assert time.monotonic() - started < 5


def test_etcdctl_environment_variables(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # Were the variable ignored, the default endpoint would be tried: a dead port, never 2379.
    monkeypatch.setattr(ctl, "DEFAULT_ENDPOINTS", f"127.0.0.1:{free_port()}")
    out, err = io.StringIO(), io.StringIO()
    env = {"ETCDCTL_ENDPOINTS": server.endpoint}
    code = ctl.main(["get", "pods", "--root", server.root], env, stdout=out, stderr=err)
    assert (code, err.getvalue()) == (0, "No resources found in default namespace.\n")


def test_connection_settings_from_flags_and_etcdctl_variables() -> None:
    parser = ctl.build_parser()
    args = parser.parse_args(["get", "pods", "--user", "root:pw", "--cacert", "ca.pem"])
    env = {"ETCDCTL_ENDPOINTS": "https://a:1,https://b:2", "ETCDCTL_CERT": "c.pem"}
    settings = ctl.connection_settings(args, env)
    assert settings == {
        "endpoints": "https://a:1,https://b:2",
        "cacert": "ca.pem",
        "cert": "c.pem",
        "key": "",
        "user": "root",
        "password": "pw",
        "timeout": 10.0,
    }
    env = {"ETCDCTL_USER": "alice", "ETCDCTL_PASSWORD": "p:w"}
    settings = ctl.connection_settings(parser.parse_args(["get", "pods"]), env)
    assert (settings["endpoints"], settings["user"], settings["password"]) == (
        "127.0.0.1:2379",
        "alice",
        "p:w",
    )


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_output_closed_early_is_no_traceback(server: Server) -> None:
    """``etcdpy k8s get pods | head -1``: the reader went away."""
    run(server, "apply", "-f", "-", stdin=MANIFESTS)
    argv = ["get", "pods", *_flags(server)]
    assert ctl.main(argv, {}, stdout=_ClosedPipe(), stderr=io.StringIO()) == 1


# --- delete and watch --------------------------------------------------------------------------


def test_delete_what_a_file_names(server: Server) -> None:
    run(server, "apply", "-f", "-", stdin=MANIFESTS)
    result = run(server, "delete", "-f", "-", stdin=MANIFESTS)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        'namespace "prod" deleted',
        'pod "web" deleted',
        'configmap "cfg" deleted',
        'deployment.apps "d" deleted',
    ]
    assert _keys(server) == []


def test_watch_prints_events_as_rows_until_stopped(server: Server, store: ObjectStore) -> None:
    out, err = io.StringIO(), io.StringIO()
    stop = threading.Event()
    argv = ["get", "leases", "-n", "kube-node-lease", "-w", *_flags(server)]
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(ctl.main(argv, {}, stdout=out, stderr=err, stop=stop))
    )
    runner.start()
    try:
        time.sleep(0.3)  # the watch has most likely started: the lease arrives as an event
        store.create(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "node-1"},
            }
        )
        deadline = time.monotonic() + 10
        while "node-1" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = out.getvalue().splitlines()
        assert lines[0].split() == ["NAME", "HOLDER", "AGE"]
        assert lines[1].split()[:2] == ["node-1", "node-1"]
    finally:
        stop.set()
        runner.join(timeout=10)
    assert codes == [1] and err.getvalue() == ""


def test_watch_yaml_separates_objects(server: Server, store: ObjectStore) -> None:
    for name in ("a", "b"):
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    out, stop = io.StringIO(), threading.Event()
    argv = ["watch", "configmaps", "-o", "yaml", *_flags(server)]
    runner = threading.Thread(
        target=ctl.main, args=(argv, {}), kwargs={"stdout": out, "stop": stop}
    )
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while "name: b" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(timeout=10)
    documents = list(yaml.safe_load_all(out.getvalue()))
    assert [d["metadata"]["name"] for d in documents] == ["a", "b"]
    assert out.getvalue().count("---\n") == 1  # between objects, as kubectl's YAML printer


# --- the command's wiring ----------------------------------------------------------------------


def test_object_verbs_are_listed_beside_the_statefulsets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from etcdpy.cli.server_main import main

    assert ctl.VERBS == OBJECT_VERBS
    assert main(["k8s", "--help"]) == 0
    listed = capsys.readouterr().out
    for verb in [*OBJECT_VERBS, "bootstrap", "scale-in"]:
        assert f"    {verb}" in listed
    assert main(["k8s", "get", "--help"]) == 0
    assert "--field-selector" in capsys.readouterr().out


ENCRYPTION_CONFIG = """\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aescbc:
      keys:
      - {name: key1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}
  - identity: {}
"""


def test_reencrypt_then_read_through_the_config(
    server: Server, store: ObjectStore, tmp_path: Path
) -> None:
    config = tmp_path / "encryption.yaml"
    config.write_text(ENCRYPTION_CONFIG)
    data = {"password": "c2VjcmV0"}
    store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data})
    result = run(server, "reencrypt", "--encryption-provider-config", str(config))
    assert result == Result(0, "secrets: rewritten 1, unchanged 0, failed 0\n", "")
    client = EtcdClient.connect(server.endpoint)
    try:
        stored = client.range(f"{server.root}/secrets/default/s".encode()).kvs[0].value
    finally:
        client.close()
    assert stored.startswith(b"k8s:enc:aescbc:v1:key1:") and b"c2VjcmV0" not in stored
    shown = run(
        server, "get", "secret", "s", "-o", "json", "--encryption-provider-config", str(config)
    )
    assert json.loads(shown.out)["data"] == data
    unreadable = run(server, "get", "secret", "s")  # no key: the API server's InternalError
    assert unreadable.code == 1 and unreadable.err.startswith("Error from server (InternalError)")


def test_controller_verb(server: Server) -> None:
    unknown = run(server, "controller", "nope")
    assert unknown.code == 1
    assert unknown.err == 'error: unknown controller "nope" (known: node-lifecycle, replicaset)\n'
    out = io.StringIO()
    code = ctl.main(["controller", "replicaset", "--help"], {}, stdout=out, stderr=io.StringIO())
    assert code == 0
