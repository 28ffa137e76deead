"""Auto compaction schedules, against etcd 3.4's periodic and revision compactors."""

from __future__ import annotations

from etcdpy.server.ops.compactor import PeriodicCompactor, RevisionCompactor


class Fake:
    def __init__(self) -> None:
        self.time = 0.0
        self.rev = 1

    def now(self) -> float:
        return self.time

    def revision(self) -> int:
        return self.rev


def run_periodic(period: float, polls: int, writes_per_poll: int) -> list[tuple[float, int]]:
    fake = Fake()
    compactor = PeriodicCompactor(period, fake.now, fake.revision)
    compacted: list[tuple[float, int]] = []
    for _ in range(polls):
        fake.time += compactor.poll_interval
        fake.rev += writes_per_poll
        rev = compactor.due()
        if rev is not None:
            compacted.append((fake.time, rev))
            compactor.finished(True)
        compactor.record()
    return compacted


def test_periodic_first_compaction_after_one_period_keeps_that_much_history() -> None:
    # 10 s retention: polls every 1 s; first compaction at 10 s, at the revision of 0 s.
    compacted = run_periodic(10.0, polls=35, writes_per_poll=3)
    assert compacted[0] == (10.0, 1)
    # then every period, at the oldest of the samples kept (etcd keeps period/poll + 1 of
    # them, taken at the top of each poll: the one from period + one poll ago)
    assert [t for t, _ in compacted] == [10.0, 20.0, 30.0]
    assert compacted[1][1] == 1 + 3 * 9 and compacted[2][1] == 1 + 3 * 19


def test_periodic_long_retention_compacts_hourly() -> None:
    compacted = run_periodic(5 * 3600.0, polls=10 * 8, writes_per_poll=1)
    times = [t for t, _ in compacted]
    assert times[0] == 5 * 3600.0  # first after the whole retention
    assert times[1] - times[0] == 3600.0  # then every hour
    assert compacted[2][1] - compacted[1][1] == 10  # one hour of revisions later


def test_periodic_failure_is_retried_at_the_next_poll() -> None:
    fake = Fake()
    compactor = PeriodicCompactor(10.0, fake.now, fake.revision)
    fake.time = 10.0
    assert compactor.due() == 1
    compactor.finished(False)
    compactor.record()
    fake.time = 11.0
    assert compactor.due() is not None


def test_revision_mode_keeps_retention_revisions() -> None:
    fake = Fake()
    compactor = RevisionCompactor(100, fake.revision)
    fake.rev = 50
    assert compactor.due() is None  # nothing older than the retention yet
    fake.rev = 350
    assert compactor.due() == 250
    compactor.finished(True)
    assert compactor.due() is None  # same revision as last time: skipped
    fake.rev = 351
    assert compactor.due() == 251
