"""Maintenance on live servers: HashKV, Defragment, Snapshot save -> `etcdpy snapshot restore`
-> start with the same HashKV, and the NOSPACE alarm round trip with a small quota."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from etcdpy.gofmt import humanize_bytes
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess, etcdpy_command, etcdpy_member
from tests.external_tools import Etcdctl

pytestmark = pytest.mark.integration

NOSPACE = "etcdserver: mvcc: database space exceeded"


def maintenance(member: MemberProcess) -> tuple[grpc.Channel, rpc_pb2_grpc.MaintenanceStub]:
    channel = grpc.insecure_channel(member.endpoint)
    return channel, rpc_pb2_grpc.MaintenanceStub(channel)


def hash_kv(member: MemberProcess, revision: int = 0) -> rpc_pb2.HashKVResponse:
    channel, stub = maintenance(member)
    with channel:
        resp: rpc_pb2.HashKVResponse = stub.HashKV(
            rpc_pb2.HashKVRequest(revision=revision), timeout=10
        )
        return resp


def test_hashkv_revisions_and_errors(etcdpy_server: MemberProcess, etcdctl: Etcdctl) -> None:
    for i in range(5):
        etcdctl.run("put", f"k{i}", f"v{i}")
    at3 = hash_kv(etcdpy_server, 3)
    assert at3.header.revision == 3
    assert hash_kv(etcdpy_server, 3).hash == at3.hash
    now = hash_kv(etcdpy_server)
    assert now.header.revision == 6
    assert now.hash != at3.hash
    with pytest.raises(grpc.RpcError) as err:
        hash_kv(etcdpy_server, 100)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    etcdctl.run("compact", "4")
    with pytest.raises(grpc.RpcError) as err:
        hash_kv(etcdpy_server, 3)
    assert err.value.details() == "etcdserver: mvcc: required revision has been compacted"
    assert hash_kv(etcdpy_server).compact_revision == 4


def test_snapshot_save_restore_start_same_hashkv(
    etcdpy_server: MemberProcess, etcdctl: Etcdctl, tmp_path: Path
) -> None:
    for i in range(20):
        etcdctl.run("put", f"key{i:02}", "x" * i)
    etcdctl.run("del", "key05")
    before = hash_kv(etcdpy_server)
    snap = tmp_path / "backup.db"
    etcdctl.run("snapshot", "save", str(snap))
    data = snap.read_bytes()
    assert len(data) % 512 == 32  # the database, then etcd's trailing sha256
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]

    status = subprocess.run(
        [*etcdpy_command(), "snapshot", "status", str(snap), "-w", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert f'"revision":{before.header.revision}' in status.stdout
    # etcdpy's and etcdpyctl's TOTAL SIZE are etcdctl's (go-humanize), e.g. 33 kB for 32768.
    db_size = len(data) - 32
    table = snapshot_cli("status", str(snap), "-w", "table").stdout
    assert f" {humanize_bytes(db_size)} |" in table
    etcdpyctl = str(Path(sys.executable).with_name("etcdpyctl"))
    ctl_table = subprocess.run(
        [etcdpyctl, "snapshot", "status", str(snap), "-w", "table"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert f" {humanize_bytes(db_size)} |" in ctl_table

    restored = etcdpy_member(tmp_path, name="r")
    proc = subprocess.run(
        [
            *etcdpy_command(),
            "snapshot",
            "restore",
            str(snap),
            "--data-dir",
            str(restored.data_dir),
            "--name",
            "r",
            "--initial-cluster",
            f"r={restored.peer_url}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # as etcdctl: two info lines on stderr, nothing else
    logged = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["msg"] for e in logged] == ["restoring snapshot", "restored snapshot"]
    assert logged[1]["data-dir"] == str(restored.data_dir)
    assert logged[1]["snap-dir"] == str(restored.data_dir / "member" / "snap")
    restored.start()
    try:
        after = hash_kv(restored)
        assert (after.hash, after.header.revision) == (before.hash, before.header.revision)
        assert after.header.cluster_id != before.header.cluster_id  # a new cluster
        ctl = Etcdctl(restored.endpoint)
        assert ctl.run("get", "key19", "--print-value-only").stdout.strip() == "x" * 19
        ctl.run("put", "new", "1")
        assert ctl.run("get", "new", "--print-value-only").stdout.strip() == "1"
    finally:
        restored.stop()


def snapshot_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*etcdpy_command(), "snapshot", *args], capture_output=True, text=True, timeout=60
    )


def test_restore_refuses_corrupt_snapshot_and_existing_dir(tmp_path: Path) -> None:
    """The errors are etcdctl 3.4's words (clientv3/snapshot/v3_snapshot.go): Go's %q and %v."""
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\0" * 512 + b"\1" * 32)
    cmd = ["restore", str(bad), "--name", "a", "--initial-cluster", "a=http://127.0.0.1:1"]
    proc = snapshot_cli(*cmd, "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 1
    got = " ".join(str(b) for b in hashlib.sha256(b"\0" * 512).digest())
    assert (
        proc.stderr.splitlines()[-1]
        == f"Error: expected sha256 [{' '.join(['1'] * 32)}], got [{got}]"
    )
    assert not (tmp_path / "d").exists()
    proc = snapshot_cli(*cmd, "--data-dir", str(tmp_path))
    assert (proc.returncode, proc.stderr) == (1, f'Error: data-dir "{tmp_path}" exists\n')
    proc = snapshot_cli(*cmd, "--data-dir", str(tmp_path / "e"), "--name", "z")
    assert proc.stderr == (
        'Error: couldn\'t find local name "z" in the initial cluster configuration\n'
    )
    missing = str(tmp_path / "missing.db")
    proc = snapshot_cli("restore", missing, "--data-dir", str(tmp_path / "f"))
    assert proc.stderr.splitlines()[-1] == f"Error: open {missing}: no such file or directory"
    proc = snapshot_cli("status", missing)
    assert proc.stderr == f"Error: stat {missing}: no such file or directory\n"
    proc = snapshot_cli("status", str(bad))
    assert (proc.returncode, proc.stderr) == (1, "Error: invalid database\n")


def test_nospace_alarm_round_trip(tmp_path: Path) -> None:
    member = etcdpy_member(tmp_path, extra_args=["--quota-backend-bytes", str(1_500_000)])
    member.start()
    try:
        ctl = Etcdctl(member.endpoint)
        ctl.run("put", "keep", "me")
        big = "v" * 100_000
        refused = None
        for i in range(40):
            proc = ctl.run("put", f"big{i:02}", input=big, check=False)
            if proc.returncode != 0:
                refused = proc
                break
        assert refused is not None, "the quota was never reached"
        assert NOSPACE in refused.stderr
        assert "alarm:NOSPACE" in ctl.run("alarm", "list").stdout
        # endpoint status lists the alarm in its ERRORS column, in etcd's words.
        [status] = ctl.json("endpoint", "status")
        member_id = int(status["Status"]["header"]["member_id"])
        assert status["Status"]["errors"] == [f"memberID:{member_id} alarm:NOSPACE "]
        assert "alarm:NOSPACE" in ctl.run("endpoint", "status", "-w", "table").stdout
        # Writes are refused on every path, reads and deletes go on.
        assert NOSPACE in ctl.run("put", "small", "1", check=False).stderr
        assert ctl.run("get", "keep", "--print-value-only").stdout.strip() == "me"
        ctl.run("del", "big", "--prefix")
        rev = int(ctl.json("get", "keep")["header"]["revision"])
        ctl.run("compact", str(rev))
        size_before = int(ctl.json("endpoint", "status")[0]["Status"]["dbSize"])
        assert "Finished defragmenting" in ctl.run("defrag").stdout
        size_after = int(ctl.json("endpoint", "status")[0]["Status"]["dbSize"])
        assert size_after < size_before / 4
        ctl.run("alarm", "disarm")
        assert ctl.run("alarm", "list").stdout.strip() == ""
        assert "errors" not in ctl.json("endpoint", "status")[0]["Status"]
        ctl.run("put", "small", "1")
        assert ctl.run("get", "keep", "--print-value-only").stdout.strip() == "me"
        assert ctl.run("get", "small", "--print-value-only").stdout.strip() == "1"
    finally:
        member.stop()


def test_nospace_with_a_13_page_quota_as_etcds_e2e_test(tmp_path: Path) -> None:
    """etcd's TestCtlV3Alarm: with a quota of 13 pages a small put still works, 4 KiB puts
    fill the store until NOSPACE, /health says false, and compact + defrag + disarm let a small
    put through again. (etcdpy used to count the whole LMDB file: 61 kB when empty, over the
    quota before the first write.)"""
    page = os.sysconf("SC_PAGE_SIZE")
    member = etcdpy_member(tmp_path, extra_args=["--quota-backend-bytes", str(13 * page)])
    member.start()
    try:
        ctl = Etcdctl(member.endpoint)
        ctl.run("put", "1st_test", "a" * 64)
        buf = "b" * page
        refused = None
        for _ in range(200):
            proc = ctl.run("put", "2nd_test", buf, check=False)
            if proc.returncode != 0:
                refused = proc
                break
        assert refused is not None, "the quota was never reached"
        assert NOSPACE in refused.stderr
        member_id = int(ctl.json("member", "list")["members"][0]["ID"])
        assert f"memberID:{member_id} alarm:NOSPACE" in ctl.run("alarm", "list").stdout
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(member.client_url + "/health", timeout=5)
        assert unhealthy.value.code == 503
        assert json.loads(unhealthy.value.read())["health"] == "false"
        assert NOSPACE in ctl.run("put", "3rd_test", "a" * 64, check=False).stderr
        rev = int(ctl.json("endpoint", "status")[0]["Status"]["header"]["revision"])
        ctl.run("compaction", str(rev), "--physical")
        ctl.run("defrag")
        ctl.run("alarm", "disarm")
        ctl.run("put", "4th_test", "a" * 64)
        assert ctl.run("get", "4th_test", "--print-value-only").stdout.strip() == "a" * 64
    finally:
        member.stop()


def test_periodic_corruption_check_runs_and_finds_nothing(tmp_path: Path) -> None:
    import time

    member = etcdpy_member(tmp_path, extra_args=["--experimental-corrupt-check-time=200ms"])
    member.start()
    try:
        ctl = Etcdctl(member.endpoint)
        ctl.run("put", "a", "1")
        deadline = time.monotonic() + 15
        while "finished peer corruption check" not in member.log_tail(200):
            assert time.monotonic() < deadline, member.log_tail()
            time.sleep(0.1)
        assert ctl.run("alarm", "list").stdout == ""
    finally:
        member.stop()
