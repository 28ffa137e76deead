"""client-go's work queue (``util/workqueue``): a queue of keys that controllers' workers take
from, with the rules that make a controller correct.

The rules, as client-go's ``Type`` has them:

- an item queued twice is queued once (the *dirty* set);
- an item a worker is processing is never handed to a second worker; adding it meanwhile marks
  it dirty, and ``done()`` puts it back in the queue;
- ``add_after`` holds an item until its delay has passed (a second ``add_after`` of a waiting
  item only ever makes it sooner);
- ``add_rate_limited`` is ``add_after(item, rate_limiter.when(item))``; ``forget`` clears the
  item's failures, ``num_requeues`` counts them;
- after ``shut_down`` adds are ignored and waiting items dropped; workers still get what is
  queued, then ``get`` answers ``(None, True)``; ``shut_down_with_drain`` also waits for the
  items being processed to be done.

The default controller rate limiter is the larger of a per-item exponential backoff (5 ms
doubling to 1000 s) and one token bucket for the whole queue (10 per second, burst 100), as
``DefaultControllerRateLimiter``. The rate limiters take a clock so that their maths can be
tested exactly. Delayed items need no thread of their own: whoever looks at the queue (``get``,
``len``, a metrics scrape) first moves the items whose time has come.

Metrics carry client-go's names (``workqueue_depth``, ``workqueue_adds_total``, ...) with the
queue's ``name`` as label; a queue without a name is not reported, as in client-go.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from etcdpy.observability.metrics import Histogram, exponential_buckets

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "RateLimitingQueue",
    "default_controller_rate_limiter",
]

T = TypeVar("T", bound=Hashable)
Clock = Callable[[], float]

# client-go's workqueue histograms: prometheus.ExponentialBuckets(10e-9, 10, 10), 10 ns .. 10 s.
WORKQUEUE_BUCKETS = exponential_buckets(10e-9, 10, 10)


# -- rate limiters (default_rate_limiters.go) ----------------------------------------------


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """How long the item should wait before it is queued again (and count a failure)."""
        ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base_delay * 2**failures, at most max_delay: the n-th retry of one item waits longer."""

    def __init__(self, base_delay: float, max_delay: float) -> None:
        if base_delay < 0 or max_delay < 0:
            raise ValueError("rate limiter delays must not be negative")
        self._base = base_delay
        self._max = max_delay
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        with self._lock:
            exp = self._failures.get(item, 0)
            self._failures[item] = exp + 1
        if exp >= 64:  # 2**64 * any base is past any sensible maximum (client-go checks overflow)
            return self._max
        delay: float = self._base * 2.0**exp
        return min(delay, self._max)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)


class BucketRateLimiter:
    """One token bucket for all items (golang.org/x/time/rate's Limiter, Reserve().Delay()):
    ``burst`` tokens at first, ``qps`` more each second; an item that finds the bucket empty
    waits until its token will have been made."""

    def __init__(self, qps: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("a token bucket needs qps > 0 and burst >= 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            tokens = min(self._burst, self._tokens + elapsed * self._qps)
            tokens -= 1
            self._tokens = tokens
            self._last = max(now, self._last)
            return -tokens / self._qps if tokens < 0 else 0.0

    def forget(self, item: Hashable) -> None:
        """The bucket is shared: one item is never forgotten."""

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest wait any of its limiters asks for (each one counts the failure)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        return max([limiter.when(item) for limiter in self._limiters])

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(clock: Clock = time.monotonic) -> MaxOfRateLimiter:
    """client-go's DefaultControllerRateLimiter."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(10.0, 100, clock=clock),
    )


# -- the queue -------------------------------------------------------------------------------


class RateLimitingQueue(Generic[T]):
    """client-go's rate limiting, delaying work queue (see the module's rules)."""

    def __init__(
        self,
        name: str = "",
        rate_limiter: RateLimiter | None = None,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter()
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._draining = False
        # add_after: a heap of (ready_at, sequence, item); ``_ready_at`` keeps the earliest time
        # of each waiting item, so an item waits once.
        self._waiting: list[tuple[float, int, T]] = []
        self._ready_at: dict[T, float] = {}
        self._sequence = itertools.count()
        # metrics (client-go's defaultQueueMetrics)
        self._adds = 0
        self._retries = 0
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        self._queue_duration = Histogram(WORKQUEUE_BUCKETS)
        self._work_duration = Histogram(WORKQUEUE_BUCKETS)
        if name and registry is not None:
            _collector_for(registry).queues.add(self)

    # -- adding ----------------------------------------------------------------------------

    def add(self, item: T) -> None:
        with self._cond:
            self._add_locked(item)

    def _add_locked(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._adds += 1
        self._dirty.add(item)
        self._added_at.setdefault(item, self._clock())
        if item in self._processing:
            return  # done() queues it again
        self._queue.append(item)
        self._cond.notify()

    def add_after(self, item: T, delay: float) -> None:
        """Queue the item once ``delay`` seconds have passed (at once if not positive)."""
        with self._cond:
            if self._shutting_down:
                return
            self._retries += 1
            if delay <= 0:
                self._add_locked(item)
                return
            ready_at = self._clock() + delay
            known = self._ready_at.get(item)
            if known is not None and known <= ready_at:
                return
            self._ready_at[item] = ready_at
            heapq.heappush(self._waiting, (ready_at, next(self._sequence), item))
            self._cond.notify_all()  # a get() may need to wake sooner

    def add_rate_limited(self, item: T) -> None:
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def _promote_due_locked(self) -> float | None:
        """Queue the waiting items whose time has come; the seconds until the next one."""
        now = self._clock()
        while self._waiting:
            ready_at, _, item = self._waiting[0]
            if self._ready_at.get(item) != ready_at:
                heapq.heappop(self._waiting)  # superseded by a sooner add_after
                continue
            if ready_at > now:
                return ready_at - now
            heapq.heappop(self._waiting)
            del self._ready_at[item]
            self._add_locked(item)
        return None

    # -- taking ----------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> tuple[T | None, bool]:
        """The next item, blocking until there is one: ``(item, False)``; ``(None, True)`` once
        the queue is shut down and empty; ``(None, False)`` when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                next_due = self._promote_due_locked()
                if self._queue:
                    return self._take_locked(), False
                if self._shutting_down:
                    return None, True
                wait = next_due
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None, False
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def _take_locked(self) -> T:
        item = self._queue.popleft()
        now = self._clock()
        added = self._added_at.pop(item, None)
        if added is not None:
            self._queue_duration.observe(now - added)
        self._started_at[item] = now
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        """The worker is finished with the item; queued again if it was added meanwhile."""
        with self._cond:
            started = self._started_at.pop(item, None)
            if started is not None:
                self._work_duration.observe(self._clock() - started)
            self._processing.discard(item)
            if item in self._dirty:
                self._queue.append(item)
                self._cond.notify()
            elif not self._processing:
                self._cond.notify_all()  # shut_down_with_drain waits for this

    # -- stopping --------------------------------------------------------------------------

    def shut_down(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._waiting.clear()
            self._ready_at.clear()
            self._cond.notify_all()

    def shut_down_with_drain(self, timeout: float | None = None) -> bool:
        """Shut down, then wait until every item being processed is done (False: the timeout
        passed first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._draining = True
            self._shutting_down = True
            self._waiting.clear()
            self._ready_at.clear()
            self._cond.notify_all()
            while self._processing:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def __len__(self) -> int:
        with self._cond:
            self._promote_due_locked()
            return len(self._queue)

    # -- metrics ---------------------------------------------------------------------------

    def _sample(self) -> _QueueSample:
        with self._cond:
            self._promote_due_locked()
            now = self._clock()
            running = [now - started for started in self._started_at.values()]
            return _QueueSample(
                depth=len(self._queue),
                adds=self._adds,
                retries=self._retries,
                queue_duration=_copy(self._queue_duration),
                work_duration=_copy(self._work_duration),
                unfinished=sum(running),
                longest=max(running, default=0.0),
            )


def _copy(histogram: Histogram) -> Histogram:
    copy = Histogram(histogram.bounds)
    copy.counts = list(histogram.counts)
    copy.total = histogram.total
    return copy


class _QueueSample:
    __slots__ = (
        "adds",
        "depth",
        "longest",
        "queue_duration",
        "retries",
        "unfinished",
        "work_duration",
    )

    def __init__(
        self,
        *,
        depth: int,
        adds: int,
        retries: int,
        queue_duration: Histogram,
        work_duration: Histogram,
        unfinished: float,
        longest: float,
    ) -> None:
        self.depth = depth
        self.adds = adds
        self.retries = retries
        self.queue_duration = queue_duration
        self.work_duration = work_duration
        self.unfinished = unfinished
        self.longest = longest


class _Sampled(Protocol):
    name: str

    def _sample(self) -> _QueueSample: ...


class _WorkqueueCollector(Collector):
    """Every named queue of one registry, read at scrape time (queues of one name add up)."""

    def __init__(self) -> None:
        self.queues: weakref.WeakSet[_Sampled] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[_QueueSample]] = {}
        for queue in list(self.queues):
            by_name.setdefault(queue.name, []).append(queue._sample())
        depth = GaugeMetricFamily("workqueue_depth", "Current depth of workqueue", labels=["name"])
        adds = CounterMetricFamily(
            "workqueue_adds", "Total number of adds handled by workqueue", labels=["name"]
        )
        queued = HistogramMetricFamily(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            labels=["name"],
        )
        work = HistogramMetricFamily(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            labels=["name"],
        )
        unfinished = GaugeMetricFamily(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has done that is in progress and hasn't been observed by "
            "work_duration. Large values indicate stuck threads.",
            labels=["name"],
        )
        longest = GaugeMetricFamily(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            labels=["name"],
        )
        retries = CounterMetricFamily(
            "workqueue_retries", "Total number of retries handled by workqueue", labels=["name"]
        )
        for name in sorted(by_name):
            samples = by_name[name]
            depth.add_metric([name], sum(s.depth for s in samples))
            adds.add_metric([name], sum(s.adds for s in samples))
            retries.add_metric([name], sum(s.retries for s in samples))
            unfinished.add_metric([name], sum(s.unfinished for s in samples))
            longest.add_metric([name], max(s.longest for s in samples))
            waited = _merge([s.queue_duration for s in samples])
            queued.add_metric([name], waited.cumulative(), waited.total)
            worked = _merge([s.work_duration for s in samples])
            work.add_metric([name], worked.cumulative(), worked.total)
        yield from (depth, adds, queued, work, unfinished, longest, retries)


def _merge(histograms: list[Histogram]) -> Histogram:
    merged = Histogram(histograms[0].bounds)
    for histogram in histograms:
        merged.counts = [a + b for a, b in zip(merged.counts, histogram.counts, strict=True)]
        merged.total += histogram.total
    return merged


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _WorkqueueCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def _collector_for(registry: CollectorRegistry) -> _WorkqueueCollector:
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _WorkqueueCollector()
            registry.register(collector)
            _collectors[registry] = collector
        return collector
