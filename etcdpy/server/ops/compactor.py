"""Auto compaction (--auto-compaction-mode / --auto-compaction-retention), as etcd 3.4 does it.

Periodic mode keeps ``period`` of history: it samples the current revision every
``min(period, 1h) / 10`` and, once ``period`` has passed since the last success (then every
``min(period, 1h)``), compacts at the revision sampled ``period`` ago. Revision mode compacts at
``current - retention`` every 5 minutes. Both only act on the leader.

The schedulers are pure: the server asks them what to do at each poll and reports the outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

HOUR = 3600.0
RETRY_DIVISOR = 10
REVISION_MODE_INTERVAL = 300.0


class PeriodicCompactor:
    def __init__(
        self, period: float, now: Callable[[], float], revision: Callable[[], int]
    ) -> None:
        self.period = period
        self.poll_interval = min(period, HOUR) / RETRY_DIVISOR
        self._compact_interval = min(period, HOUR)
        self._now = now
        self._revision = revision
        self._revs: deque[int] = deque(maxlen=int(period / self.poll_interval) + 1)
        self._last_success = now()
        self._base_interval = period
        self.record()

    def record(self) -> None:
        """Sample the current revision; the oldest sample is the one ``period`` ago."""
        self._revs.append(self._revision())

    def due(self) -> int | None:
        """The revision to compact at now, or None."""
        if self._now() - self._last_success < self._base_interval:
            return None
        if self._base_interval == self.period:
            self._base_interval = self._compact_interval
        return self._revs[0]

    def finished(self, ok: bool) -> None:
        if ok:
            self._last_success = self._now()


class RevisionCompactor:
    poll_interval = REVISION_MODE_INTERVAL

    def __init__(self, retention: int, revision: Callable[[], int]) -> None:
        self.retention = retention
        self._revision = revision
        self._previous = 0
        self._pending = 0

    def record(self) -> None:
        pass

    def due(self) -> int | None:
        rev = self._revision() - self.retention
        if rev <= 0 or rev == self._previous:
            return None
        self._pending = rev
        return rev

    def finished(self, ok: bool) -> None:
        if ok:
            self._previous = self._pending
