"""The node-lifecycle controller: its rules as pure functions on a manual clock, then against
real servers (etcdpy and etcd 3.4) with a fake kubelet: a node whose heartbeats stop gets
Ready=Unknown and the unreachable NoExecute taint, its pods are marked not ready and evicted
when their tolerations run out, and when heartbeats return the taint comes off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from etcdpy.k8s.controllers.clock import ManualClock, format_micro_time, format_time
from etcdpy.k8s.controllers.fake_kubelet import FakeKubelet
from etcdpy.k8s.controllers.node_health import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    HealthTracker,
    eviction_deadline,
    mark_unknown,
    reconcile_taints,
)
from etcdpy.k8s.controllers.node_lifecycle import NodeLifecycleController
from etcdpy.k8s.controllers.podutil import as_dict, being_deleted, condition
from etcdpy.k8s.store import ObjectStore
from tests.k8s.conftest import Server
from tests.k8s.controller_helpers import running, wait_for

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DEFAULTS = {TAINT_NOT_READY: 300.0, TAINT_UNREACHABLE: 300.0}


def node(heartbeat: datetime | None, status: str = "True") -> dict[str, Any]:
    conditions = []
    if heartbeat is not None:
        conditions.append({"type": "Ready", "status": status, "reason": "KubeletReady",
                           "lastHeartbeatTime": format_time(heartbeat),
                           "lastTransitionTime": format_time(START)})  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "creationTimestamp": format_time(START)},
        "status": {"conditions": conditions},
    }


def lease(renew: datetime) -> dict[str, Any]:
    return {"metadata": {"name": "n1"}, "spec": {"renewTime": format_micro_time(renew)}}


def test_a_node_is_stale_after_the_grace_period_without_any_heartbeat() -> None:
    clock = ManualClock(START)
    tracker = HealthTracker(clock, grace=40, startup_grace=60)
    assert not tracker.observe(node(START), lease(START)).stale
    clock.advance(30)
    renewed = clock()
    assert not tracker.observe(node(START), lease(renewed)).stale  # the lease was renewed
    clock.advance(39)
    health = tracker.observe(node(START), lease(renewed))  # the same renewal: no heartbeat
    assert not health.stale and health.seconds_left == pytest.approx(1, abs=0.01)
    clock.advance(2)
    assert tracker.observe(node(START), lease(START)).stale  # a lease going back is no heartbeat
    clock.advance(1)
    assert not tracker.observe(node(clock()), None).stale  # the kubelet posted status


def test_a_node_that_never_posted_gets_the_startup_grace_from_its_creation() -> None:
    clock = ManualClock(START)
    clock.advance(59)
    assert not HealthTracker(clock, grace=40, startup_grace=60).observe(node(None), None).stale
    clock.advance(2)
    assert HealthTracker(clock, grace=40, startup_grace=60).observe(node(None), None).stale


def test_conditions_become_unknown_with_the_api_servers_words() -> None:
    stale = node(START)
    assert mark_unknown(stale, START)
    ready = condition(stale, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.",
    )  # fmt: skip
    assert ready["lastHeartbeatTime"] == format_time(START)  # our write is no heartbeat
    pressure = condition(stale, "MemoryPressure")
    assert pressure is not None and pressure["reason"] == "NodeStatusNeverUpdated"
    assert pressure["message"] == "Kubelet never posted node status."
    assert not mark_unknown(stale, START)  # once is enough


def test_taints_follow_the_ready_condition() -> None:
    unknown = node(START, status="Unknown")
    assert reconcile_taints(unknown, START) == TAINT_UNREACHABLE
    assert unknown["spec"]["taints"] == [
        {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(START)}
    ]
    assert reconcile_taints(unknown, START) is None  # already there: timeAdded kept
    unknown["status"]["conditions"][0]["status"] = "False"
    assert reconcile_taints(unknown, START) == TAINT_NOT_READY  # swapped
    assert [t["key"] for t in unknown["spec"]["taints"]] == [TAINT_NOT_READY]
    unknown["status"]["conditions"][0]["status"] = "True"
    unknown["spec"]["taints"].append({"key": "dedicated", "effect": "NoSchedule"})
    reconcile_taints(unknown, START)
    assert unknown["spec"]["taints"] == [{"key": "dedicated", "effect": "NoSchedule"}]


def test_eviction_waits_for_the_pods_tolerations() -> None:
    taints = [{"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(START)}]

    def deadline(*tolerations: dict[str, Any]) -> datetime | None:
        pod = {"spec": {"tolerations": list(tolerations)}}
        return eviction_deadline(pod, taints, DEFAULTS, START)

    seconds = {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert deadline() == START.replace(minute=5)  # the admission default: 300 s
    assert deadline({**seconds, "tolerationSeconds": 30}) == START.replace(second=30)
    assert deadline(seconds) is None  # tolerated for ever
    assert deadline({"operator": "Exists"}) is None  # tolerates everything
    other = [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]
    assert eviction_deadline({"spec": {}}, other, DEFAULTS, START) == START  # not tolerated
    wrong_value = {"key": "dedicated", "value": "cpu", "effect": "NoExecute"}
    assert (
        eviction_deadline({"spec": {"tolerations": [wrong_value]}}, other, DEFAULTS, START) == START
    )


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    # typed: the controller and the kubelet see kubernetes models (the command line's default)
    store = ObjectStore.connect(server.endpoint, root=server.root)
    yield store
    store.close()


def bound_pod(name: str, toleration_seconds: int | None) -> dict[str, Any]:
    tolerations = []
    if toleration_seconds is not None:
        tolerations.append(
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": toleration_seconds}
        )  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": "n1",
            "tolerations": tolerations,
            "containers": [{"name": "main", "image": "busybox"}],
        },
    }


def test_a_silent_node_is_tainted_its_pods_evicted_and_it_recovers(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store, "n1", schedule=False)
    kubelet.register()
    store.create(bound_pod("short", toleration_seconds=1))
    store.create(bound_pod("patient", toleration_seconds=None))  # the default: 60 s here
    kubelet.sync_pods()
    registry = CollectorRegistry()
    controller = NodeLifecycleController(
        store, registry=registry, grace_period=1.0, monitor_period=0.2,
        unreachable_toleration=60.0,
    )  # fmt: skip

    def get(kind: str, name: str, **kw: str) -> dict[str, Any]:
        return as_dict(store.get(kind, name, **kw))

    def taints() -> list[str]:
        return [t["key"] for t in get("nodes", "n1").get("spec", {}).get("taints") or []]

    def ready() -> str:
        return str((condition(get("nodes", "n1"), "Ready") or {}).get("status"))

    with running(controller):
        beating = threading.Event()
        beating.set()
        stop_kubelet = threading.Event()

        def heartbeats() -> None:
            while not stop_kubelet.wait(0.2):
                if beating.is_set():
                    kubelet.heartbeat()

        thread = threading.Thread(target=heartbeats, daemon=True)
        thread.start()
        try:
            wait_for(lambda: controller.nodes.has_synced(), what="the node informer")
            threading.Event().wait(1.5)  # longer than the grace period, heartbeats flowing
            assert ready() == "True" and taints() == []

            beating.clear()  # the kubelet falls silent
            wait_for(lambda: TAINT_UNREACHABLE in taints(), timeout=5, what="the taint")
            ready_cond = condition(get("nodes", "n1"), "Ready")
            assert ready_cond is not None and ready_cond["reason"] == "NodeStatusUnknown"
            assert ready_cond["message"] == "Kubelet stopped posting node status."
            wait_for(
                lambda: (
                    (condition(get("pods", "patient", namespace="default"), "Ready") or {}).get(
                        "status"
                    )
                    == "False"
                ),
                what="the pod marked not ready",
            )

            def short_gone() -> bool:
                try:
                    return being_deleted(get("pods", "short", namespace="default"))
                except Exception:  # errors.NotFound: deleted outright
                    return True

            wait_for(short_gone, timeout=5, what="the short-tolerating pod evicted")
            assert not being_deleted(get("pods", "patient", namespace="default"))
            assert registry.get_sample_value("taint_eviction_controller_pod_deletions_total") == 1
            assert registry.get_sample_value("node_collector_evictions_total", {"zone": ""}) == 1

            beating.set()  # the kubelet is back: Ready=True, then the taint comes off
            wait_for(lambda: ready() == "True" and taints() == [], timeout=5, what="recovery")
            assert not being_deleted(get("pods", "patient", namespace="default"))
        finally:
            stop_kubelet.set()
            thread.join(timeout=5)
