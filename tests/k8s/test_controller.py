"""The controller runner: workers over the rate limiting queue, retries with backoff, the
logs and controller-runtime's metrics."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from etcdpy.k8s.cache import DeletedFinalStateUnknown
from etcdpy.k8s.controller import Controller
from etcdpy.k8s.informer import Informer
from etcdpy.k8s.workqueue import ItemExponentialFailureRateLimiter, RateLimitingQueue
from tests.k8s.fake_source import FakeSource
from tests.k8s.test_informer import FAST, wait_until


def running(controller: Controller) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    return stop, thread


def test_enqueue_takes_objects_tombstones_and_keys() -> None:
    controller = Controller("keys", lambda key: None, registry=CollectorRegistry())
    controller.enqueue({"metadata": {"name": "a", "namespace": "ns"}})
    controller.enqueue(DeletedFinalStateUnknown("ns/b", {}))
    controller.enqueue("c")
    controller.enqueue({"metadata": {"name": "a", "namespace": "ns"}})  # dedup
    assert len(controller.queue) == 3
    assert [controller.queue.get(0)[0] for _ in range(3)] == ["ns/a", "ns/b", "c"]
    with pytest.raises(ValueError):
        controller.enqueue({"metadata": {}})
    with pytest.raises(ValueError):
        Controller("x", lambda key: None, workers=0)


def test_a_failing_reconcile_is_logged_retried_with_backoff_then_forgotten() -> None:
    registry = CollectorRegistry()
    attempts: list[float] = []

    def reconcile(key: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise RuntimeError(f"cannot reconcile {key}")

    queue: RateLimitingQueue[str] = RateLimitingQueue(
        "retry", ItemExponentialFailureRateLimiter(0.02, 1.0), registry=registry
    )
    controller = Controller("retry", reconcile, queue=queue, registry=registry)
    with capture_logs() as logs:
        stop, thread = running(controller)
        controller.enqueue("ns/x")
        assert wait_until(lambda: len(attempts) == 4)
        stop.set()
        thread.join(5)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.018 and gaps[1] >= 0.038 and gaps[2] >= 0.078  # 20, 40, 80 ms
    assert queue.num_requeues("ns/x") == 0  # success forgot the failures
    errors = [entry for entry in logs if entry["event"] == "Reconciler error"]
    assert [entry["key"] for entry in errors] == ["ns/x"] * 3
    assert errors[0]["error"] == "RuntimeError('cannot reconcile ns/x')"
    assert errors[0]["controller"] == "retry"

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"controller": "retry", **labels})

    assert sample("controller_runtime_reconcile_total", result="error") == 3
    assert sample("controller_runtime_reconcile_total", result="success") == 1
    assert sample("controller_runtime_reconcile_errors_total") == 3
    assert sample("controller_runtime_reconcile_time_seconds_count") == 4
    assert sample("controller_runtime_max_concurrent_reconciles") == 1
    assert sample("controller_runtime_active_workers") == 0
    assert registry.get_sample_value("workqueue_retries_total", {"name": "retry"}) == 3


def test_workers_run_in_parallel_but_never_on_one_key_and_stop_joins_them() -> None:
    lock = threading.Lock()
    active: set[str] = set()
    overlap: list[str] = []
    peak = 0
    done: list[str] = []

    def reconcile(key: str) -> None:
        nonlocal peak
        with lock:
            if key in active:
                overlap.append(key)
            active.add(key)
            peak = max(peak, len(active))
        time.sleep(0.02)
        with lock:
            active.discard(key)
            done.append(key)

    controller = Controller("par", reconcile, workers=4, registry=CollectorRegistry())
    stop, thread = running(controller)
    for n in range(40):
        controller.enqueue(f"k{n % 8}")
    assert wait_until(lambda: len(done) >= 8)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert overlap == []
    assert peak >= 2


def test_requeue_after_looks_again_later() -> None:
    registry = CollectorRegistry()
    calls: list[str] = []

    def reconcile(key: str) -> float | None:
        calls.append(key)
        return 0.03 if len(calls) == 1 else None

    controller = Controller("again", reconcile, registry=registry)
    stop, thread = running(controller)
    controller.enqueue("a")
    assert wait_until(lambda: len(calls) == 2)
    stop.set()
    thread.join(5)
    assert (
        registry.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": "again", "result": "requeue_after"}
        )
        == 1
    )


def test_an_informer_feeds_a_controller() -> None:
    source = FakeSource()
    source.put("a")
    reconciled: list[str] = []
    controller = Controller("fed", reconciled.append, registry=CollectorRegistry())
    informer = Informer(source, backoff=FAST)
    informer.add_event_handler(controller.event_handler())
    stop, thread = running(controller)
    informer.start()
    try:
        assert wait_until(lambda: reconciled == ["default/a"])
        assert wait_until(lambda: len(source.streams) == 1)
        source.put("b")
        source.delete("a")
        assert wait_until(lambda: sorted(reconciled) == ["default/a", "default/a", "default/b"])
    finally:
        informer.stop()
        stop.set()
        thread.join(5)


def test_metrics_default_to_the_global_registry() -> None:
    from prometheus_client import REGISTRY

    controller: Any = Controller("global-registry-check", lambda key: None)
    controller.enqueue("k")
    assert REGISTRY.get_sample_value("workqueue_depth", {"name": "global-registry-check"}) == 1
