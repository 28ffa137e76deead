"""The controller runner: N workers take keys from a rate limiting work queue and reconcile
them, as client-go's sample controller and controller-runtime's ``Controller`` do.

- ``reconcile(key)`` returns None: done, the key's failures are forgotten; it returns a number
  of seconds: done for now, look again after that long (controller-runtime's RequeueAfter);
  it raises: logged with the key and the error, the key is queued again rate-limited (5 ms
  doubling to 1000 s, and the queue's token bucket).
- The queue never hands one key to two workers, so one key is reconciled by one worker at a
  time; a key that changes while it is reconciled is reconciled again after.
- ``run(stop)`` returns once ``stop`` is set and the workers have finished the reconciles they
  were in; queued keys are left (the next leader or run lists everything again).

Metrics: controller-runtime's ``controller_runtime_reconcile_total{controller,result}``,
``controller_runtime_reconcile_errors_total``, ``controller_runtime_reconcile_time_seconds``,
``controller_runtime_active_workers``, ``controller_runtime_max_concurrent_reconciles``; and the
queue's (``workqueue_*{name=<controller>}``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from etcdpy.k8s import meta
from etcdpy.k8s.cache import DeletedFinalStateUnknown
from etcdpy.k8s.informer import FuncHandler
from etcdpy.k8s.types import KubeObject
from etcdpy.k8s.workqueue import RateLimitingQueue
from etcdpy.observability.logging import get_logger
from etcdpy.observability.metrics import Histogram

__all__ = ["Controller", "Reconcile"]

# A reconcile: None when done, seconds to look again after, or it raises to be retried.
Reconcile = Callable[[str], float | None]

# controller-runtime's reconcile_time_seconds buckets.
RECONCILE_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8),
    *(0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25),
    *(30, 40, 50, 60),
)
RESULTS = ("success", "error", "requeue_after")


@dataclass
class _Stats:
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    errors: int = 0
    active: int = 0
    time: Histogram = field(default_factory=lambda: Histogram(RECONCILE_BUCKETS))


class Controller:
    """Workers over a RateLimitingQueue[str] calling ``reconcile(key)`` (see the module)."""

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 1,
        queue: RateLimitingQueue[str] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        if not name:
            raise ValueError("a controller needs a name (its metrics' label)")
        self.name = name
        self.workers = workers
        self._reconcile = reconcile
        registry = REGISTRY if registry is None else registry
        self._queue = queue if queue is not None else RateLimitingQueue(name, registry=registry)
        self._stats = _Stats()
        self._lock = threading.Lock()
        self._log = get_logger("etcdpy.k8s.controller", controller=name)
        _collector_for(registry).controllers.add(self)

    @property
    def queue(self) -> RateLimitingQueue[str]:
        return self._queue

    def enqueue(self, obj_or_key: KubeObject | DeletedFinalStateUnknown | str) -> None:
        """Queue an object's key ("<namespace>/<name>" or "<name>"), or a key as given."""
        self._queue.add(_key_of(obj_or_key))

    def enqueue_after(
        self, obj_or_key: KubeObject | DeletedFinalStateUnknown | str, delay: float
    ) -> None:
        self._queue.add_after(_key_of(obj_or_key), delay)

    def event_handler(self) -> FuncHandler:
        """An informer handler that queues the key of every added, changed or deleted object."""
        return FuncHandler(
            on_add=self.enqueue,
            on_update=lambda _old, new: self.enqueue(new),
            on_delete=self.enqueue,
        )

    def run(self, stop: threading.Event) -> None:
        """Reconcile until ``stop`` is set; then shut the queue down and join the workers."""
        self._log.info("starting workers", worker_count=self.workers)
        threads = [
            threading.Thread(
                target=self._work, args=(stop,), name=f"controller-{self.name}-{n}", daemon=True
            )
            for n in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        stop.wait()
        self._log.info("stopping workers")
        self._queue.shut_down()
        for thread in threads:
            thread.join()
        self._log.info("all workers finished")

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            key, shutting_down = self._queue.get()
            if shutting_down or key is None:
                return
            try:
                if stop.is_set():
                    return
                self._reconcile_one(key)
            finally:
                self._queue.done(key)

    def _reconcile_one(self, key: str) -> None:
        with self._lock:
            self._stats.active += 1
        started = time.monotonic()
        result = "success"
        try:
            after = self._reconcile(key)
        except Exception as exc:
            result = "error"
            self._log.error("Reconciler error", key=key, error=repr(exc))
            self._queue.add_rate_limited(key)
        else:
            self._queue.forget(key)
            if after is not None and after > 0:
                result = "requeue_after"
                self._queue.add_after(key, after)
        finally:
            with self._lock:
                self._stats.active -= 1
                self._stats.results[result] += 1
                self._stats.errors += result == "error"
                self._stats.time.observe(time.monotonic() - started)

    def _sample(self) -> tuple[dict[str, int], int, int, Histogram]:
        with self._lock:
            stats = self._stats
            copy = Histogram(stats.time.bounds)
            copy.counts, copy.total = list(stats.time.counts), stats.time.total
            return dict(stats.results), stats.errors, stats.active, copy


def _key_of(obj_or_key: KubeObject | DeletedFinalStateUnknown | str) -> str:
    if isinstance(obj_or_key, str):
        return obj_or_key
    if isinstance(obj_or_key, DeletedFinalStateUnknown):
        return obj_or_key.key
    if not meta.name(obj_or_key):
        raise ValueError("cannot queue an object without metadata.name")
    return meta.cache_key(obj_or_key)


class _ControllerCollector(Collector):
    def __init__(self) -> None:
        self.controllers: weakref.WeakSet[Controller] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            labels=["controller", "result"],
        )
        errors = CounterMetricFamily(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            labels=["controller"],
        )
        seconds = HistogramMetricFamily(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            labels=["controller"],
        )
        active = GaugeMetricFamily(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            labels=["controller"],
        )
        concurrency = GaugeMetricFamily(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            labels=["controller"],
        )
        for controller in sorted(self.controllers, key=lambda c: c.name):
            results, error_count, active_count, histogram = controller._sample()
            for result, count in results.items():
                total.add_metric([controller.name, result], count)
            errors.add_metric([controller.name], error_count)
            seconds.add_metric([controller.name], histogram.cumulative(), histogram.total)
            active.add_metric([controller.name], active_count)
            concurrency.add_metric([controller.name], controller.workers)
        yield from (total, errors, seconds, active, concurrency)


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _ControllerCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def _collector_for(registry: CollectorRegistry) -> _ControllerCollector:
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _ControllerCollector()
            registry.register(collector)
            _collectors[registry] = collector
        return collector
