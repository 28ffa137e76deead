"""--auto-compaction-mode periodic: history older than the retention gets compacted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from etcdpy.testing.processes import etcdpy_member
from tests.external_tools import Etcdctl

pytestmark = pytest.mark.integration


def test_periodic_auto_compaction(tmp_path: Path) -> None:
    member = etcdpy_member(
        tmp_path,
        extra_args=["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"],
    )
    member.start()
    try:
        ctl = Etcdctl(member.endpoint)
        for i in range(5):
            ctl.out("put", "k", str(i))  # revisions 2..6
        deadline = time.monotonic() + 15
        compacted = False
        while time.monotonic() < deadline and not compacted:
            time.sleep(0.3)
            proc = ctl.run("get", "k", "--rev", "2", check=False)
            compacted = "required revision has been compacted" in proc.stderr
        assert compacted, "revision 2 was never compacted"
        assert ctl.out("get", "k", "--print-value-only").strip() == "4"  # the present stays
    finally:
        member.stop()
