"""The ReplicaSet controller against real servers (etcdpy and etcd 3.4): it scales up and down,
replaces a pod deleted behind its back, adopts matching orphans without over-creating, leaves
other controllers' pods alone, writes status, retries a failing sync with backoff, and runs as
a user runs it (a subprocess, stopped by SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from etcdpy.k8s import errors
from etcdpy.k8s.controllers.podutil import as_dict, being_deleted, controller_ref, metadata
from etcdpy.k8s.controllers.replicaset import ReplicaSetController, pod_selector
from etcdpy.k8s.store import ObjectStore
from etcdpy.k8s.types import ObjectList, WatchEvent, WatchStream
from etcdpy.testing.processes import free_port, stop_process
from tests.k8s.conftest import Server
from tests.k8s.controller_helpers import running, wait_for

NS = "shop"


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    store = ObjectStore.connect(server.endpoint, root=server.root, typed=False)
    yield store
    store.close()


def replicaset(name: str, replicas: int, app: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {"app": app},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}],
            },
            "template": {
                "metadata": {"labels": {"app": app, "tier": "front"}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }


def pod(name: str, labels: dict[str, str], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
    }


def live_pods(store: ObjectStore) -> list[dict[str, Any]]:
    return [
        p for p in (as_dict(o) for o in store.list("pods", namespace=NS).items)
        if not being_deleted(p)
    ]  # fmt: skip


def owned_by(store: ObjectStore, rs: dict[str, Any]) -> list[dict[str, Any]]:
    uid = metadata(rs)["uid"]
    return [p for p in live_pods(store) if (controller_ref(p) or {}).get("uid") == uid]


def scale(store: ObjectStore, name: str, replicas: int) -> None:
    def change(current: Any) -> Any:
        rs = dict(as_dict(current))
        rs["spec"] = {**rs["spec"], "replicas": replicas}
        return rs

    store.guaranteed_update("replicasets.apps", name, change, namespace=NS)


def test_scales_up_and_down_replaces_lost_pods_and_writes_status(store: ObjectStore) -> None:
    controller = ReplicaSetController(store, workers=2, registry=CollectorRegistry())
    with running(controller):
        rs = as_dict(store.create(replicaset("web", 3)))

        def three() -> list[dict[str, Any]] | None:
            pods = owned_by(store, rs)
            return pods if len(pods) == 3 else None

        pods = wait_for(three, what="3 pods")
        for p in pods:
            assert metadata(p)["name"].startswith("web-")
            assert metadata(p)["generateName"] == "web-"
            assert metadata(p)["labels"] == {"app": "web", "tier": "front"}
            ref = controller_ref(p)
            assert ref is not None
            assert (ref["kind"], ref["name"], ref["apiVersion"]) == ("ReplicaSet", "web", "apps/v1")

        def status_is(replicas: int) -> bool:
            live = as_dict(store.get("replicasets.apps", "web", namespace=NS))
            status = live.get("status", {})
            generation = metadata(live)["generation"]
            return (
                bool(status.get("replicas") == replicas)
                and status.get("observedGeneration") == generation
            )

        wait_for(lambda: status_is(3), what="status.replicas 3")

        scale(store, "web", 5)
        wait_for(lambda: len(owned_by(store, rs)) == 5, what="5 pods")
        victim = metadata(owned_by(store, rs)[0])["name"]
        store.delete("pods", victim, namespace=NS)
        wait_for(
            lambda: (
                len(owned_by(store, rs)) == 5
                and victim not in {metadata(p)["name"] for p in owned_by(store, rs)}
            ),
            what="the deleted pod replaced",
        )
        scale(store, "web", 1)
        wait_for(lambda: len(owned_by(store, rs)) == 1, what="1 pod")
        wait_for(lambda: status_is(1), what="status.replicas 1")
        # the controller settles: nothing more is created or deleted
        settled = {metadata(p)["name"] for p in owned_by(store, rs)}
        wait_for(lambda: controller.controller.queue.__len__() == 0, what="an empty queue")
        assert {metadata(p)["name"] for p in owned_by(store, rs)} == settled


def test_adopts_orphans_leaves_others_pods_and_never_over_creates(store: ObjectStore) -> None:
    labels = {"app": "api", "tier": "front"}
    for name in ("orphan-a", "orphan-b"):
        store.create(pod(name, labels))
    stranger = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "other",
                "uid": "4f1d2c3b-0000-4000-8000-000000000001", "controller": True}  # fmt: skip
    store.create(pod("someone-elses", labels, owner=stranger))
    store.create(pod("not-matching", {"app": "api", "tier": "back"}))
    registry = CollectorRegistry()
    controller = ReplicaSetController(store, registry=registry)
    broken = replicaset("broken", 2, app="api")
    broken["spec"]["replicas"] = "two"  # the API server would refuse it; etcd holds anything
    store.create(broken)
    with running(controller):
        rs = as_dict(store.create(replicaset("api", 3, app="api")))
        wait_for(lambda: len(owned_by(store, rs)) == 3, what="3 owned pods")
        wait_for(lambda: len(controller.controller.queue) == 0, what="an empty queue")
        names = {metadata(p)["name"] for p in owned_by(store, rs)}
        assert {"orphan-a", "orphan-b"} <= names
        created = [n for n in names if n.startswith("api-")]
        assert len(created) == 1, names
        everything = {metadata(p)["name"]: p for p in live_pods(store)}
        assert len(everything) == 5  # 2 adopted + 1 created + 2 not ours: nothing extra
        assert (controller_ref(everything["someone-elses"]) or {}).get("name") == "other"
        assert controller_ref(everything["not-matching"]) is None
    # the broken ReplicaSet got nothing and was not retried: logged, left for its next change
    assert not any(metadata(p)["name"].startswith("broken-") for p in live_pods(store))
    errors_total = _sample(
        registry, "controller_runtime_reconcile_errors_total", controller="replicaset"
    )
    assert errors_total == 0


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"matchLabels": {"app": "a"}}, {"app": "a", "x": "y"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "b"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["1", "2"]}]},
         {"t": "2"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": "1"}, False),
        ({}, {"app": "a"}, False),  # an empty selector claims nothing
    ],
)  # fmt: skip
def test_label_selectors(selector: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    assert pod_selector({"spec": {"selector": selector}}).matches(labels) is matches


@pytest.mark.parametrize(
    "expression",
    [
        {"key": "t", "operator": "In", "values": []},
        {"key": "t", "operator": "Exists", "values": ["1"]},
        {"key": "t", "operator": "Near"},
        {"operator": "Exists"},
    ],
)
def test_bad_selectors_are_refused_with_a_typed_error(expression: dict[str, Any]) -> None:
    with pytest.raises(errors.BadRequest):
        pod_selector({"spec": {"selector": {"matchExpressions": [expression]}}})


class FlakyStore:
    """The real store, whose first ``failures`` pod creations fail as an unavailable server's
    would (fault injection in front of a real server, to see the retry)."""

    def __init__(self, store: ObjectStore, failures: int) -> None:
        self._store = store
        self.failures_left = failures

    def create(self, obj: Any, **kwargs: Any) -> Any:
        if as_dict(obj).get("kind") == "Pod" and self.failures_left > 0:
            self.failures_left -= 1
            raise errors.ServiceUnavailable("injected: etcd is unavailable")
        return self._store.create(obj, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class DelayedWatch:
    """A real watch whose events arrive ``delay`` seconds late each (a slow informer)."""

    def __init__(self, stream: WatchStream, delay: float) -> None:
        self._stream, self._delay = stream, delay

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        event = next(self._stream)
        time.sleep(self._delay)
        return event

    def stop(self) -> None:
        self._stream.stop()

    def __enter__(self) -> DelayedWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SlowPodWatchStore:
    """The real store, whose pod watches deliver late."""

    def __init__(self, store: ObjectStore, delay: float) -> None:
        self._store, self._delay = store, delay

    def lister_watcher(self, kind: str, **kwargs: Any) -> Any:
        real = self._store.lister_watcher(kind, **kwargs)
        if kind != "pods":
            return real
        delay = self._delay

        class Slow:
            def list(self, **kw: Any) -> ObjectList:
                return real.list(**kw)

            def watch(self, **kw: Any) -> WatchStream:
                return DelayedWatch(real.watch(**kw), delay)

        return Slow()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_expectations_keep_a_slow_informer_from_creating_twice(store: ObjectStore) -> None:
    slow = SlowPodWatchStore(store, delay=0.3)
    controller = ReplicaSetController(slow, registry=CollectorRegistry())  # type: ignore[arg-type]
    with running(controller):
        rs = as_dict(store.create(replicaset("slow", 3, app="slow")))
        # syncs run while the pods it created are not yet in its cache (its own status write
        # queues one): expectations hold them back
        wait_for(lambda: len(controller.pods.indexer.list_keys()) == 3, what="3 pods seen")
        wait_for(lambda: len(controller.controller.queue) == 0, what="an empty queue")
        time.sleep(0.3)
        assert len(owned_by(store, rs)) == 3
        assert len(live_pods(store)) == 3


def _sample(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    return registry.get_sample_value(metric, labels) or 0.0


def test_a_failing_sync_is_retried_with_backoff(store: ObjectStore) -> None:
    registry = CollectorRegistry()
    flaky = FlakyStore(store, failures=2)
    controller = ReplicaSetController(flaky, registry=registry)  # type: ignore[arg-type]
    with running(controller):
        rs = as_dict(store.create(replicaset("flaky", 2, app="flaky")))
        wait_for(lambda: len(owned_by(store, rs)) == 2, what="2 pods after the failures")
    assert flaky.failures_left == 0
    errors_total = _sample(
        registry, "controller_runtime_reconcile_errors_total", controller="replicaset"
    )
    assert errors_total >= 2
    assert _sample(registry, "workqueue_retries_total", name="replicaset") >= 2


def test_runs_as_a_command_with_leader_election_and_stops_on_sigterm(server: Server) -> None:
    metrics_port = free_port()
    argv = [
        str(Path(sys.executable).with_name("etcdpy")), "k8s", "controller", "replicaset",
        "--endpoints", server.endpoint, "--root", server.root,
        "--metrics-addr", f"127.0.0.1:{metrics_port}", "--leader-elect-lease-duration", "5",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        store = ObjectStore.connect(server.endpoint, root=server.root, typed=False)
        try:
            rs = as_dict(store.create(replicaset("cli", 2, app="cli")))
            wait_for(lambda: len(owned_by(store, rs)) == 2, timeout=20, what="2 pods")
            body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
            text = body.read().decode()
            assert 'workqueue_adds_total{name="replicaset"}' in text
        finally:
            store.close()
        os.kill(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode(errors="replace")
        assert proc.returncode == 0, output
    finally:
        if proc.poll() is None:
            stop_process(proc)
