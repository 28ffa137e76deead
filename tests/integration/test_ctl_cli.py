"""``etcdpyctl`` against a real etcdpy server, side by side with Debian's etcdctl 3.4 against
the same server: the same words in, the same output out.

Where a test is about the output, etcdpyctl runs in the test process through the console
script's ``main`` (tests/ctl_inprocess.py: no interpreter start per command); the console
script itself runs as a real process where that is the subject: input from a pipe, the
environment, a terminal, a long-running keep-alive."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.testing.processes import MemberProcess, etcdpy_member, free_port
from tests.ctl_inprocess import run_ctl
from tests.external_tools import require_tool

pytestmark = pytest.mark.integration

ETCDPYCTL = str(Path(sys.executable).with_name("etcdpyctl"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    return {**env, "ETCDCTL_API": "3", **extra}


def ours(
    endpoint: str | None,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str = "",
    real: bool = False,
) -> subprocess.CompletedProcess[str]:
    """etcdpyctl in this process, or the console script as a process when ``real``."""
    where = ["--endpoints", endpoint] if endpoint else []
    if not real:
        return run_ctl([*where, *args], stdin=stdin, env=env or _env())
    return subprocess.run([ETCDPYCTL, *where, *args], capture_output=True, text=True,
                          timeout=60, env=env or _env(), input=stdin)  # fmt: skip


def theirs(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("etcdctl"), "--endpoints", endpoint, *args],
                          capture_output=True, text=True, timeout=60, env=_env())  # fmt: skip


def same(endpoint: str, *args: str) -> str:
    a, b = ours(endpoint, *args), theirs(endpoint, *args)
    assert (a.returncode, b.returncode) == (0, 0), (a.stderr, b.stderr)
    assert a.stdout == b.stdout, args
    return a.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemberProcess]:
    require_tool("etcdctl")
    member = etcdpy_member(tmp_path_factory.mktemp("ctl"))
    member.start()
    try:
        yield member
    finally:
        member.stop()


# -- get, put, del: etcdctl's simple output ---------------------------------------------------


def test_writes_print_what_etcdctl_prints(server: MemberProcess) -> None:
    ep = server.endpoint
    runs = {}
    for tool, key in ((ours, "/w/ours"), (theirs, "/w/theirs")):
        runs[key] = [
            tool(ep, "put", key, "one").stdout,
            tool(ep, "put", key, "two words", "--prev-kv").stdout,
            tool(ep, "put", key, "--ignore-value", "--prev-kv").stdout,
            tool(ep, "del", key, "--prev-kv").stdout,
            tool(ep, "del", key).stdout,
        ]
    assert runs["/w/ours"] == ["OK\n", "OK\n/w/ours\none\n", "OK\n/w/ours\ntwo words\n",
                               "1\n/w/ours\ntwo words\n", "0\n"]  # fmt: skip
    assert runs["/w/theirs"] == [o.replace("ours", "theirs") for o in runs["/w/ours"]]


def test_set_is_put_and_the_value_may_come_from_stdin(server: MemberProcess) -> None:
    # the console script as a process, its value on a pipe
    assert ours(server.endpoint, "set", "/s/key1", "value1", real=True).stdout == "OK\n"
    assert ours(server.endpoint, "put", "/s/key2", stdin="from stdin\n", real=True).stdout == (
        "OK\n"
    )
    assert same(server.endpoint, "get", "/s/", "--prefix") == (
        "/s/key1\nvalue1\n/s/key2\nfrom stdin\n\n"
    )
    assert ours(server.endpoint, "put", "/s/k", "--", "-dash").returncode == 0
    assert same(server.endpoint, "get", "/s/k", "--print-value-only") == "-dash\n"


def test_reads_print_what_etcdctl_prints(server: MemberProcess) -> None:
    ep = server.endpoint
    for key, value in (("/r/a", "uno"), ("/r/b", "two words"), ("/r/c", "héllo"), ("/r0", "x")):
        theirs(ep, "put", key, value)
    assert same(ep, "get", "/r/", "--prefix") == "/r/a\nuno\n/r/b\ntwo words\n/r/c\nhéllo\n"
    for args in (
        ["get", "/r/", "--prefix", "--keys-only"],
        ["get", "/r/a", "--print-value-only"],
        ["get", "/r/a", "/r/c", "--limit", "1"],
        ["get", "/r/", "--from-key"],
        ["get", "/r/", "--prefix", "--order", "DESCEND", "--sort-by", "MODIFY"],
        ["get", "/r/", "--prefix", "--consistency", "s", "--hex"],
        ["get", "--prefix", "", "--limit", "2"],
        ["get", "/r/missing"],
    ):
        same(ep, *args)
    # Global options after the command, as etcdctl allows.
    assert same(ep, "get", "/r/a", "-w", "json") != ""
    a = json.loads(ours(ep, "get", "/r/", "--prefix", "-w", "json").stdout)
    b = json.loads(theirs(ep, "get", "/r/", "--prefix", "-w", "json").stdout)
    assert a == b


def test_read_at_a_revision_and_after_compaction(server: MemberProcess) -> None:
    ep = server.endpoint
    theirs(ep, "put", "/rev/k", "old")
    old = json.loads(theirs(ep, "get", "/rev/k", "-w", "json").stdout)["header"]["revision"]
    theirs(ep, "put", "/rev/k", "new")
    assert same(ep, "get", "/rev/k", "--rev", str(old)) == "/rev/k\nold\n"
    assert ours(ep, "compaction", str(old)).stdout == f"compacted revision {old}\n"
    compacted = ["get", "/rev/k", "--rev", str(old - 1)]
    a, b = ours(ep, *compacted), theirs(ep, *compacted)
    assert (a.returncode, a.stderr) == (1, "Error: etcdserver: mvcc: required revision has "
                                           "been compacted\n")  # fmt: skip
    assert b.returncode == 1 and b.stderr.endswith(a.stderr)
    watch = ours(ep, "watch", "/rev/k", "--rev", str(old - 1))
    assert (watch.returncode, watch.stderr) == (5, "Error: watch is canceled by the server: "
                                                   "etcdserver: mvcc: required revision has "
                                                   "been compacted\n")  # fmt: skip


# -- tables, leases, watch, members -----------------------------------------------------------


def test_table_off_a_terminal_is_etcdctls(server: MemberProcess) -> None:
    same(server.endpoint, "member", "list", "-w", "table")
    same(server.endpoint, "endpoint", "hashkv", "-w", "table")
    a = ours(server.endpoint, "endpoint", "status", "-w", "table").stdout.splitlines()
    b = theirs(server.endpoint, "endpoint", "status", "-w", "table").stdout.splitlines()
    assert a[:3] == b[:3]  # rules and headers; the row's indexes move on between the two runs


def test_table_on_a_terminal_is_drawn_by_rich(server: MemberProcess) -> None:
    out = _on_terminal([ETCDPYCTL, "--endpoints", server.endpoint, "member", "list", "-w",
                        "table"], stream="stdout")  # fmt: skip
    assert "╭" in out and server.name in out and "IS LEARNER" in out


def test_lease_commands_print_what_etcdctl_prints(server: MemberProcess) -> None:
    ep = server.endpoint
    grant = json.loads(ours(ep, "lease", "grant", "60", "-w", "json").stdout)
    reference = json.loads(theirs(ep, "lease", "grant", "60", "-w", "json").stdout)
    assert set(grant) == set(reference) and grant["TTL"] == 60
    lease = f"{grant['ID']:016x}"
    ours(ep, "put", "/l/k", "v", "--lease", lease)
    for args in (["lease", "timetolive", lease, "--keys"], ["lease", "timetolive", lease]):
        a, b = ours(ep, *args).stdout, theirs(ep, *args).stdout
        assert a.split("remaining")[0] == b.split("remaining")[0]  # the remaining TTL ticks
        assert a.endswith(", attached keys([/l/k])\n") == ("--keys" in args)
    a_json = json.loads(ours(ep, "lease", "timetolive", lease, "--keys", "-w", "json").stdout)
    b_json = json.loads(theirs(ep, "lease", "timetolive", lease, "--keys", "-w", "json").stdout)
    assert set(a_json) == set(b_json) and a_json["keys"] == b_json["keys"]
    assert (
        json.loads(ours(ep, "lease", "list", "-w", "json").stdout).keys()
        == json.loads(theirs(ep, "lease", "list", "-w", "json").stdout).keys()
    )
    assert ours(ep, "lease", "keep-alive", "--once", lease).stdout == (
        f"lease {lease} keepalived with TTL(60)\n"
    )
    other = f"{reference['ID']:016x}"
    assert theirs(ep, "lease", "revoke", other).stdout == f"lease {other} revoked\n"
    # keep-alive runs until the lease is revoked, then says so and exits 0.
    short = f"{json.loads(ours(ep, 'lease', 'grant', '6', '-w', 'json').stdout)['ID']:016x}"
    proc = subprocess.Popen([ETCDPYCTL, "--endpoints", ep, "lease", "keep-alive", short],
                            stdout=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"lease {short} keepalived with TTL(6)\n"
        assert ours(ep, "lease", "revoke", short).stdout == f"lease {short} revoked\n"
        # The next renewal (due TTL/3 = 2 s later) is answered with the lease gone.
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert rest.endswith(f"lease {short} expired or revoked.\n")
    assert proc.returncode == 0
    gone = ours(ep, "lease", "keep-alive", "--once", short)
    assert (gone.returncode, gone.stderr) == (2, "Error: etcdserver: requested lease not found\n")
    assert ours(ep, "lease", "revoke", lease).stdout == f"lease {lease} revoked\n"
    assert ours(ep, "get", "/l/k").stdout == ""


def test_watch_prints_what_etcdctl_prints(server: MemberProcess) -> None:
    ep = server.endpoint
    theirs(ep, "put", "/wa/k", "v1")
    start = json.loads(theirs(ep, "get", "/wa/k", "-w", "json").stdout)["header"]["revision"]
    theirs(ep, "put", "/wa/k", "v2")
    theirs(ep, "del", "/wa/k")
    # From a past revision both see the same history at once: no timing involved.
    a = ours(ep, "watch", "/wa/", "--prefix", "--rev", str(start), "--prev-kv", "--once")
    assert a.returncode == 0, a.stderr
    expected = "PUT\n/wa/k\nv1\nPUT\n/wa/k\nv1\n/wa/k\nv2\nDELETE\n/wa/k\nv2\n/wa/k\n\n"
    assert a.stdout == expected
    proc = subprocess.Popen([require_tool("etcdctl"), "--endpoints", ep, "watch", "/wa/",
                             "--prefix", "--rev", str(start), "--prev-kv"],
                            stdout=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(expected.count("\n"))]
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert "".join(lines) == expected
    events = json.loads(ours(ep, "watch", "/wa/k", "--rev", str(start), "--once",
                             "-w", "json").stdout)  # fmt: skip
    assert {"Header", "Events", "CompactRevision", "Canceled", "Created"} == set(events)
    assert events["Events"][0]["kv"]["key"] == "L3dhL2s="  # base64 of /wa/k


def test_member_add_update_promote_remove(server: MemberProcess) -> None:
    ep = server.endpoint
    peer = f"http://127.0.0.1:{free_port()}"
    added = ours(ep, "member", "add", "learner1", "--peer-urls", peer, "--learner")
    assert added.returncode == 0, added.stderr
    lines = added.stdout.splitlines()
    member_id = lines[0].split()[1]
    assert lines[0].startswith("Member ") and " added to cluster " in lines[0]
    assert lines[1:3] == ["", 'ETCD_NAME="learner1"']
    cluster = lines[3].removeprefix('ETCD_INITIAL_CLUSTER="').removesuffix('"').split(",")
    assert sorted(cluster) == sorted([f"{server.name}={server.peer_url}", f"learner1={peer}"])
    assert lines[4:] == [f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{peer}"',
                         'ETCD_INITIAL_CLUSTER_STATE="existing"']  # fmt: skip
    listed = same(ep, "member", "list")
    assert f"{member_id}, unstarted, , {peer}, , true" in listed
    moved = f"http://127.0.0.1:{free_port()}"
    assert ours(ep, "member", "update", member_id, f"--peer-urls={moved}").stdout == (
        f"Member {member_id:>16} updated in cluster {lines[0].split()[-1]:>16}\n"
    )
    promote = ours(ep, "member", "promote", member_id)
    assert promote.returncode == 1 and promote.stdout == ""
    assert promote.stderr.startswith("Error: etcdserver: ") and promote.stderr.count("\n") == 1
    removed = ours(ep, "member", "remove", member_id)
    assert removed.stdout.startswith(f"Member {member_id:>16} removed from cluster ")
    assert member_id not in ours(ep, "member", "list").stdout


# -- environment, endpoints, errors -----------------------------------------------------------


def test_environment_as_etcdctl_reads_it(server: MemberProcess) -> None:
    """The console script as a process, with the environment it is given."""
    env = _env(ETCDCTL_ENDPOINTS=server.endpoint, ETCDCTL_WRITE_OUT="json")
    ours(None, "put", "/env/k", "v", env=env, real=True)
    got = json.loads(ours(None, "get", "/env/k", env=env, real=True).stdout)
    assert got["kvs"][0]["value"] == "dg=="  # base64 of v
    # A flag wins over its variable.
    bad = _env(ETCDCTL_ENDPOINTS=f"127.0.0.1:{free_port()}", ETCDCTL_DIAL_TIMEOUT="200ms")
    assert (
        ours(None, "get", "/env/k", "--endpoints", server.endpoint, env=bad, real=True).stdout
        == "/env/k\nv\n"
    )
    rev = got["header"]["revision"]
    watch_env = _env(ETCDCTL_ENDPOINTS=server.endpoint, ETCDCTL_WATCH_KEY="/env/k")
    assert ours(
        None, "watch", "--rev", str(rev), "--once", env=watch_env, real=True
    ).stdout.startswith("PUT\n/env/k\nv\n")


def test_endpoint_commands_over_several_endpoints(server: MemberProcess) -> None:
    down = f"127.0.0.1:{free_port()}"
    eps = f"{server.endpoint},{down}"
    status = ours(eps, "endpoint", "status", "--dial-timeout", "300ms")
    assert status.returncode == 1
    assert status.stdout.startswith(f"{server.endpoint}, ")
    assert status.stderr == (
        f"Failed to get the status of endpoint {down} (context deadline exceeded)\n"
    )
    health = ours(eps, "endpoint", "health", "--dial-timeout", "300ms", "-w", "json")
    assert health.returncode == 1 and health.stderr == "Error: unhealthy cluster\n"
    report = json.loads(health.stdout)
    assert [h["health"] for h in report] == [True, False]
    reference = json.loads(theirs(server.endpoint, "endpoint", "health", "-w", "json").stdout)
    assert set(report[0]) == set(reference[0])
    cluster = ours(server.endpoint, "endpoint", "hashkv", "--cluster")
    assert cluster.stdout.startswith(f"{server.client_url}, ")
    assert ours(eps, "get", "k", "--dial-timeout", "300ms").returncode == 0  # the first answers


@pytest.mark.first_pass_only(
    "the subject is etcdpyctl against a stopped member: once it is stopped nothing listens, "
    "front-end processes or not"
)
def test_a_stopped_server_gives_one_error_line(tmp_path: Path) -> None:
    member = etcdpy_member(tmp_path)
    member.start()
    ep = member.endpoint
    assert ours(ep, "put", "k", "v").returncode == 0
    member.stop()
    save = ["snapshot", "save", str(tmp_path / "s.db")]
    for args in (["get", "k"], ["put", "k", "v"], ["del", "k"], ["member", "list"],
                 ["lease", "grant", "5"], save):  # fmt: skip
        result = ours(ep, *args, "--dial-timeout", "300ms")
        assert result.returncode != 0, args
        assert result.stdout == ""
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, args
        assert "context deadline exceeded" in result.stderr
    a = ours(ep, "get", "k", "--dial-timeout", "300ms", "--command-timeout", "1s")
    b = theirs(ep, "get", "k", "--dial-timeout", "300ms", "--command-timeout", "1s")
    assert (a.returncode, a.stderr) == (b.returncode, b.stderr.splitlines()[-1] + "\n")
    health = ours(ep, "endpoint", "health", "--dial-timeout", "300ms")
    assert health.returncode == 1 and "Traceback" not in health.stderr
    assert health.stderr.endswith("Error: unhealthy cluster\n")


def test_a_bad_flag_fails_as_etcdctl_does(server: MemberProcess) -> None:
    for args in (["get", "--foo"], ["get", "k", "--limit", "abc"], ["gte", "k"]):
        a, b = ours(server.endpoint, *args), theirs(server.endpoint, *args)
        assert a.returncode == b.returncode == 1
        assert a.stdout == "" and a.stderr.count("\n") == 1 and "Traceback" not in a.stderr
        # etcdctl prints the usage, then the same error twice; ours is its first line,
        # with a suggestion for a misspelt command.
        assert a.stderr.startswith(b.stderr.splitlines()[0].replace("etcdctl", "etcdpyctl"))


# -- snapshots and progress -------------------------------------------------------------------


def _on_terminal(argv: list[str], stream: str) -> str:
    """Runs argv with ``stream`` (stdout or stderr) on a pseudo-terminal; returns what it
    wrote there."""
    master, slave = pty.openpty()
    target = {"stdout": slave} if stream == "stdout" else {"stderr": slave}
    other = {"stderr": subprocess.DEVNULL} if stream == "stdout" else {"stdout": subprocess.DEVNULL}
    proc = subprocess.Popen(argv, env=_env(COLUMNS="200"), **target, **other)  # type: ignore[call-overload]
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_snapshot_save_restore_with_progress_on_a_terminal(
    server: MemberProcess, tmp_path: Path
) -> None:
    ep = server.endpoint
    for i in range(3):
        ours(ep, "put", f"/snap/{i}", "v" * 10_000)
    snap = tmp_path / "s.db"
    # Off a terminal: only etcdctl's line.
    assert ours(ep, "snapshot", "save", str(snap)).stdout == f"Snapshot saved at {snap}\n"
    again = tmp_path / "again.db"
    bar = _on_terminal([ETCDPYCTL, "--endpoints", ep, "snapshot", "save", str(again)], "stderr")
    assert "snapshot save" in bar and again.exists()
    restored = tmp_path / "restored"
    bar = _on_terminal([ETCDPYCTL, "snapshot", "restore", str(snap), "--data-dir",
                        str(restored), "--name", "x", "--initial-cluster",
                        "x=http://127.0.0.1:1"], "stderr")  # fmt: skip
    assert "snapshot restore" in bar
    assert (restored / "member" / "snap" / "db").exists()
    bar = _on_terminal([ETCDPYCTL, "--endpoints", ep, "defrag"], "stderr")
    assert "defrag" in bar
    status = json.loads(ours(None, "snapshot", "status", str(snap), "-w", "json").stdout)
    assert status["totalKey"] > 3
