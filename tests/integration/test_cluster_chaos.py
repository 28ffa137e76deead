"""A short fault run on real processes (the long one is `make chaos`): kill -9 of the leader,
SIGSTOP, a partition and a restart of every member, with concurrent clients; the history must
be linearizable and no acknowledged write lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdpy.testing.chaos import run_chaos

pytestmark = pytest.mark.integration


def test_short_fault_run_is_linearizable_and_loses_nothing(tmp_path: Path) -> None:
    report = run_chaos(
        tmp_path, kill_leader=2, pause=1, restart_all=1, partition=1, clients=4, log=lambda _: None
    )
    summary = report.summary()
    assert report.failures == [], summary
    assert report.linearizable, summary
    assert report.lost_writes == 0, summary
    assert report.acknowledged_writes > 0, summary
    assert report.histories_checked > 0, summary
    assert sum(report.faults.values()) == 5, summary
