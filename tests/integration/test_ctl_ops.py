"""etcdpyctl's operator commands against a live server (in the test process through the
console script's ``main``, tests/ctl_inprocess.py; the watcher is a real process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from etcdpy.testing.processes import MemberProcess
from tests.ctl_inprocess import run_ctl
from tests.integration.shared_member import wiped
from tests.integration.test_maintenance import hash_kv

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    """One member for the module, emptied before each test (tests reading absolute revisions
    have one of their own)."""
    return wiped(module_etcdpy_server)


def ctl(
    member: MemberProcess | None, *args: str, real: bool = False
) -> subprocess.CompletedProcess[str]:
    endpoint = ["--endpoints", member.endpoint] if member is not None else []
    if not real:
        return run_ctl([*args, *endpoint])
    binary = str(Path(sys.executable).with_name("etcdpyctl"))
    return subprocess.run([binary, *args, *endpoint], capture_output=True, text=True, timeout=60)


def ok(member: MemberProcess | None, *args: str) -> str:
    proc = ctl(member, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_set_is_put_and_get_reads_it(etcdpy_server: MemberProcess) -> None:
    assert ok(etcdpy_server, "set", "key1", "value1") == "OK\n"
    assert ok(etcdpy_server, "get", "key1") == "key1\nvalue1\n"


def test_snapshot_defrag_alarm_endpoint(own_etcdpy_server: MemberProcess, tmp_path: Path) -> None:
    etcdpy_server = own_etcdpy_server
    for i in range(10):
        ok(etcdpy_server, "put", f"k{i}", "v" * 100)
    expected = hash_kv(etcdpy_server).hash
    assert ok(etcdpy_server, "endpoint", "hashkv") == f"{etcdpy_server.endpoint}, {expected}\n"
    health = ctl(etcdpy_server, "endpoint", "health")  # etcdctl writes these lines on stderr
    assert health.returncode == 0 and "is healthy" in health.stderr, health
    assert ok(etcdpy_server, "alarm", "list") == ""
    assert "Finished defragmenting" in ok(etcdpy_server, "defrag")
    assert hash_kv(etcdpy_server).hash == expected  # defrag changed nothing visible
    snap = tmp_path / "s.db"
    assert ok(etcdpy_server, "snapshot", "save", str(snap)) == f"Snapshot saved at {snap}\n"
    status = ok(etcdpy_server, "snapshot", "status", str(snap), "-w", "json")
    assert '"revision":11' in status
    restored = tmp_path / "restored"
    out = ok(
        None,
        "snapshot",
        "restore",
        str(snap),
        "--data-dir",
        str(restored),
        "--name",
        "x",
        "--initial-cluster",
        "x=http://127.0.0.1:1",
    )
    assert "restored snapshot" in out
    assert (restored / "member" / "snap" / "db").exists()
    bad = ctl(etcdpy_server, "snapshot", "status", str(tmp_path / "missing.db"))
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: ")


def test_table_output(etcdpy_server: MemberProcess) -> None:
    table = ok(etcdpy_server, "member", "list", "-w", "table")
    lines = table.splitlines()
    assert "|" in lines[1] and " ID " in lines[1] and "IS LEARNER" in lines[1]
    assert f" {etcdpy_server.name} |" in table  # cells right-aligned, as etcdctl's
    assert etcdpy_server.client_url in table  # whole values, nothing cut to a width
    status = ok(etcdpy_server, "endpoint", "status", "-w", "table")
    assert etcdpy_server.endpoint in status
    assert "3.4.23" in status


def test_lease_and_watch(etcdpy_server: MemberProcess) -> None:
    import threading
    import time

    granted = ok(etcdpy_server, "lease", "grant", "60")
    lease_id = granted.split()[1]
    assert granted == f"lease {lease_id} granted with TTL(60s)\n"
    ok(etcdpy_server, "put", "lk", "lv", "--lease", lease_id)
    ttl = ok(etcdpy_server, "lease", "timetolive", lease_id, "--keys")
    assert "attached keys([lk])" in ttl  # Go's %v of a []string
    assert ok(etcdpy_server, "lease", "list") == f"found 1 leases\n{lease_id}\n"

    watched: list[subprocess.CompletedProcess[str]] = []
    watcher = threading.Thread(
        # a process: run_ctl owns sys.stdout while it runs, so one at a time in this process
        target=lambda: watched.append(ctl(etcdpy_server, "watch", "wk", "--once", real=True))
    )
    watcher.start()
    time.sleep(1.0)  # let the watch be created; a put before it is simply not seen
    for i in range(20):
        ok(etcdpy_server, "put", "wk", f"v{i}")
        watcher.join(timeout=0.5)
        if not watcher.is_alive():
            break
    watcher.join(timeout=10)
    assert watched and watched[0].returncode == 0, watched
    assert watched[0].stdout.startswith("PUT\nwk\nv")
    assert ok(etcdpy_server, "lease", "revoke", lease_id) == f"lease {lease_id} revoked\n"
    assert ok(etcdpy_server, "get", "lk") == ""
