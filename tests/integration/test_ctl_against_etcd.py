"""etcdpyctl against a real etcd 3.4 prints what etcdctl 3.4 prints for the same commands."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.ctl_inprocess import run_ctl
from tests.external_tools import require_tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.first_pass_only(
        "it starts no etcdpy member: etcdpyctl against real etcd 3.4, whatever the front-ends"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def etcdpyctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """In this process (tests/ctl_inprocess.py): the output is the subject."""
    return run_ctl(["--endpoints", endpoint, *args])


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("etcdctl"), "--endpoints", endpoint, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("etcd")
    require_tool("etcdctl")
    tmp = tmp_path_factory.mktemp("etcd")
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    with (tmp / "etcd.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "--name", "c1", "--data-dir", str(tmp / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"c1={peer}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    target = client.removeprefix("http://")
    try:
        deadline = time.monotonic() + 20
        while etcdctl(target, "get", "probe").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail((tmp / "etcd.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        yield target
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def same_output(endpoint: str, *args: str) -> str:
    ours, theirs = etcdpyctl(endpoint, *args), etcdctl(endpoint, *args)
    assert (ours.returncode, theirs.returncode) == (0, 0), (ours.stderr, theirs.stderr)
    assert ours.stdout.rstrip("\n") == theirs.stdout.rstrip("\n")
    return ours.stdout


def test_writes_print_what_etcdctl_prints(endpoint: str) -> None:
    outputs = {}
    for tool, key in ((etcdpyctl, "/t1/ours"), (etcdctl, "/t1/theirs")):
        outputs[key] = [
            tool(endpoint, "put", key, "one").stdout.rstrip("\n"),
            tool(endpoint, "put", key, "uno", "--prev-kv").stdout.rstrip("\n"),
            tool(endpoint, "del", key, "--prev-kv").stdout.rstrip("\n"),
            tool(endpoint, "del", key).stdout.rstrip("\n"),
        ]
    assert outputs["/t1/ours"] == ["OK", "OK\n/t1/ours\none", "1\n/t1/ours\nuno", "0"]
    assert outputs["/t1/theirs"] == [o.replace("ours", "theirs") for o in outputs["/t1/ours"]]


def test_reads_print_what_etcdctl_prints(endpoint: str) -> None:
    etcdctl(endpoint, "put", "/t1/a", "uno")
    etcdctl(endpoint, "put", "/t1/b", "two words")
    assert same_output(endpoint, "get", "/t1/", "--prefix") == "/t1/a\nuno\n/t1/b\ntwo words\n"
    same_output(endpoint, "get", "/t1/", "--prefix", "--keys-only")
    same_output(endpoint, "get", "/t1/a", "--print-value-only")
    same_output(endpoint, "get", "/t1/a", "/t1/z", "--limit", "1")
    # etcdctl 3.4 has no --count-only (3.5 has); ours prints the count
    assert etcdpyctl(endpoint, "get", "/t1/", "--prefix", "--count-only").stdout == "2\n"
    same_output(endpoint, "get", "/t1/", "--from-key")


def test_json_output_equals_etcdctl(endpoint: str) -> None:
    etcdctl(endpoint, "put", "/t2/k", "v")
    for args in (
        ("get", "/t2/", "--prefix", "-w", "json"),
        ("get", "/t2/missing", "-w", "json"),
        ("member", "list", "-w", "json"),
    ):
        ours, theirs = etcdpyctl(endpoint, *args), etcdctl(endpoint, *args)
        assert json.loads(ours.stdout) == json.loads(theirs.stdout), args


def test_get_at_revision_and_compaction(endpoint: str) -> None:
    etcdctl(endpoint, "put", "/t3/k", "old")
    header = json.loads(etcdctl(endpoint, "get", "/t3/k", "-w", "json").stdout)["header"]
    old_rev = header["revision"]
    etcdctl(endpoint, "put", "/t3/k", "new")
    assert same_output(endpoint, "get", "/t3/k", "--rev", str(old_rev)) == "/t3/k\nold\n"
    assert etcdpyctl(endpoint, "compaction", str(old_rev + 1)).stdout == (
        f"compacted revision {old_rev + 1}\n"
    )
    ours = etcdpyctl(endpoint, "get", "/t3/k", "--rev", str(old_rev))
    assert ours.returncode == 1
    assert ours.stderr == "Error: etcdserver: mvcc: required revision has been compacted\n"


def test_member_list_and_endpoint_status(endpoint: str) -> None:
    same_output(endpoint, "member", "list")
    ours = etcdpyctl(endpoint, "endpoint", "status").stdout.split(", ")
    theirs = etcdctl(endpoint, "endpoint", "status").stdout.split(", ")
    # endpoint, ID, version, db size, is leader, is learner, raft term (indexes move on)
    assert ours[:7] == theirs[:7]
    status = json.loads(etcdpyctl(endpoint, "endpoint", "status", "-w", "json").stdout)
    assert status[0]["Endpoint"] == endpoint
    assert status[0]["Status"]["version"].startswith("3.4.")


def test_unreachable_endpoint_fails_fast() -> None:
    result = etcdpyctl(f"127.0.0.1:{_free_port()}", "--dial-timeout", "300ms", "get", "k")
    assert result.returncode == 1
    assert result.stderr == "Error: context deadline exceeded\n"
