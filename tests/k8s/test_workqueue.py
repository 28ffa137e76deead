"""client-go's work queue semantics (util/workqueue: queue.go, delaying_queue.go,
rate_limiting_queue.go, default_rate_limiters.go) and its metrics' names."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from etcdpy.k8s.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_queue(name: str = "") -> RateLimitingQueue[str]:
    return RateLimitingQueue(name, registry=CollectorRegistry())


def test_an_item_added_twice_is_queued_once() -> None:
    queue = new_queue()
    for item in ("a", "b", "a", "a"):
        queue.add(item)
    assert len(queue) == 2
    assert queue.get(0) == ("a", False)
    assert queue.get(0) == ("b", False)
    assert queue.get(0) == (None, False)  # timed out: empty, not shut down


def test_an_item_being_processed_goes_to_no_second_worker_and_comes_back_after_done() -> None:
    queue = new_queue()
    queue.add("a")
    item, _ = queue.get(0)
    queue.add("a")  # changed while being processed
    assert len(queue) == 0
    assert queue.get(0) == (None, False)
    queue.done(item)  # type: ignore[arg-type]
    assert queue.get(0) == ("a", False)
    queue.done("a")
    assert len(queue) == 0


def test_get_blocks_until_an_add() -> None:
    queue = new_queue()
    threading.Timer(0.05, queue.add, args=("late",)).start()
    started = time.monotonic()
    assert queue.get(2.0) == ("late", False)
    assert time.monotonic() - started < 1.5


def test_shut_down_lets_workers_take_what_is_queued_then_says_so() -> None:
    queue = new_queue()
    queue.add("a")
    queue.add_after("later", 5)
    queue.shut_down()
    queue.add("b")  # ignored
    assert queue.get() == ("a", False)
    assert queue.get() == (None, True)  # the waiting item was dropped


def test_shut_down_wakes_a_blocked_get() -> None:
    queue = new_queue()
    got: list[tuple[str | None, bool]] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    time.sleep(0.05)
    queue.shut_down()
    worker.join(2)
    assert got == [(None, True)]


def test_shut_down_with_drain_waits_for_items_being_processed() -> None:
    queue = new_queue()
    queue.add("a")
    item, _ = queue.get(0)
    threading.Timer(0.1, queue.done, args=(item,)).start()
    started = time.monotonic()
    assert queue.shut_down_with_drain(timeout=3)
    assert time.monotonic() - started >= 0.09
    queue2 = new_queue()
    queue2.add("x")
    queue2.get(0)
    assert not queue2.shut_down_with_drain(timeout=0.05)  # "x" never done


def test_add_after_waits_and_the_sooner_delay_wins() -> None:
    queue = new_queue()
    queue.add_after("a", 0.15)
    queue.add_after("a", 10)  # later: ignored
    queue.add_after("b", 0.05)
    assert len(queue) == 0
    started = time.monotonic()
    assert queue.get(2) == ("b", False)
    assert queue.get(2) == ("a", False)
    assert 0.12 <= time.monotonic() - started < 1.5
    queue.add_after("c", 0)  # at once
    assert len(queue) == 1


def test_item_exponential_backoff_doubles_from_5ms_to_1000s() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("k") for _ in range(20)]
    assert delays[:4] == [0.005, 0.010, 0.020, 0.040]
    assert delays[-1] == 1000.0
    assert limiter.num_requeues("k") == 20
    assert limiter.when("other") == 0.005
    limiter.forget("k")
    assert limiter.num_requeues("k") == 0
    assert limiter.when("k") == 0.005
    for _ in range(200):  # no overflow however often it fails
        limiter.when("many")
    assert limiter.when("many") == 1000.0


def test_token_bucket_is_10_per_second_after_a_burst_of_100() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(10, 100, clock=clock)
    assert [bucket.when(n) for n in range(100)] == [0.0] * 100
    assert bucket.when("101st") == pytest.approx(0.1)
    assert bucket.when("102nd") == pytest.approx(0.2)
    clock.now += 1.0  # 10 tokens made; 2 were owed
    assert bucket.when("x") == 0.0
    assert bucket.num_requeues("x") == 0


def test_default_controller_rate_limiter_is_the_larger_of_both() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    assert isinstance(limiter, MaxOfRateLimiter)
    # the first 100 failures (of different keys) are within the burst: per-item backoff rules
    assert [limiter.when(f"k{n}") for n in range(100)] == [0.005] * 100
    # the bucket is empty now: 10 per second for everybody
    assert limiter.when("k0") == pytest.approx(0.1)
    clock.now += 100
    delays = [limiter.when("k1") for _ in range(12)]
    assert delays[-1] == pytest.approx(0.005 * 2**12)
    assert limiter.num_requeues("k1") == 13
    limiter.forget("k1")
    assert limiter.num_requeues("k1") == 0


def test_add_rate_limited_forget_and_num_requeues() -> None:
    queue = RateLimitingQueue[str](
        "", ItemExponentialFailureRateLimiter(0.01, 1.0), registry=CollectorRegistry()
    )
    queue.add_rate_limited("k")
    queue.add_rate_limited("k")  # waiting already: the sooner time stays
    assert queue.num_requeues("k") == 2
    assert queue.get(2) == ("k", False)
    queue.forget("k")
    assert queue.num_requeues("k") == 0


def test_metrics_have_client_go_names_and_the_queue_name_label() -> None:
    registry = CollectorRegistry()
    queue: RateLimitingQueue[str] = RateLimitingQueue("pods", registry=registry)
    queue.add("a")
    queue.add("b")
    queue.add("a")
    queue.add_after("c", 60)
    item, _ = queue.get(0)
    time.sleep(0.01)

    def value(metric: str) -> float | None:
        return registry.get_sample_value(metric, {"name": "pods"})

    assert value("workqueue_depth") == 1
    assert value("workqueue_adds_total") == 2
    assert value("workqueue_retries_total") == 1
    assert value("workqueue_queue_duration_seconds_count") == 1
    assert (value("workqueue_unfinished_work_seconds") or 0) >= 0.01
    assert (value("workqueue_longest_running_processor_seconds") or 0) >= 0.01
    queue.done(item)  # type: ignore[arg-type]
    assert value("workqueue_work_duration_seconds_count") == 1
    assert value("workqueue_longest_running_processor_seconds") == 0
    # an unnamed queue is not reported
    RateLimitingQueue[str]("", registry=registry).add("x")
    assert registry.get_sample_value("workqueue_adds_total", {"name": ""}) is None


def test_many_workers_never_share_an_item() -> None:
    queue = new_queue()
    in_flight: set[str] = set()
    clashes: list[str] = []
    lock = threading.Lock()
    processed = 0

    def worker() -> None:
        nonlocal processed
        while True:
            item, down = queue.get()
            if down or item is None:
                return
            with lock:
                if item in in_flight:
                    clashes.append(item)
                in_flight.add(item)
            time.sleep(0.001)
            with lock:
                in_flight.discard(item)
                processed += 1
            queue.done(item)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for n in range(300):
        queue.add(f"k{n % 5}")
    time.sleep(0.1)
    assert queue.shut_down_with_drain(timeout=5)
    for thread in threads:
        thread.join(5)
    assert clashes == []
    assert 5 <= processed <= 300
