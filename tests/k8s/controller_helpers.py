"""Helpers of the example controllers' tests: run a controller in a thread, wait for a state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

T = TypeVar("T")


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


@contextmanager
def running(controller: Runnable) -> Iterator[threading.Event]:
    """Run ``controller.run(stop)`` in a thread for the block; stop and join it after."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def target() -> None:
        try:
            controller.run(stop)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=target, name="controller-under-test", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the controller did not stop within 10 s"
    if failures:
        raise failures[0]


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}: last {last!r}")
