"""What a controller is waiting to see in its informer after its own writes
(pkg/controller's UIDTrackingControllerExpectations): while creations or deletions it made are
not yet observed, its cache is behind its actions, and acting on the cache again would create or
delete twice. Expectations older than a timeout count as met, so a lost event cannot stall a
controller for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EXPECTATIONS_TIMEOUT_S = 300.0  # controller.ExpectationsTimeout


@dataclass
class _Expected:
    adds: int
    deletes: set[str] = field(default_factory=set)
    set_at: float = 0.0


class Expectations:
    """Thread-safe; keys are the controller's object keys, pods are named by their cache key."""

    def __init__(
        self,
        *,
        timeout: float = EXPECTATIONS_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        """True when nothing is pending, nothing was ever expected, or the wait expired."""
        with self._lock:
            expected = self._by_key.get(key)
            if expected is None:
                return True
            if expected.adds <= 0 and not expected.deletes:
                return True
            return self._monotonic() - expected.set_at > self._timeout

    def expect_creations(self, key: str, count: int) -> None:
        with self._lock:
            self._by_key[key] = _Expected(adds=count, set_at=self._monotonic())

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        with self._lock:
            self._by_key[key] = _Expected(adds=0, deletes=set(pod_keys), set_at=self._monotonic())

    def creation_observed(self, key: str) -> None:
        with self._lock:
            expected = self._by_key.get(key)
            if expected is not None:
                expected.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        with self._lock:
            expected = self._by_key.get(key)
            if expected is not None:
                expected.deletes.discard(pod_key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still awaited."""
        with self._lock:
            expected = self._by_key.get(key)
            return (0, 0) if expected is None else (max(expected.adds, 0), len(expected.deletes))
