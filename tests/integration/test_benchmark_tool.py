"""`etcdpy benchmark` drives a real etcd 3.4 and reports what it did in its JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from tests.external_tools import require_tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.first_pass_only(
        "it starts no etcdpy member: etcdpy benchmark drives real etcd 3.4, whatever the front-ends"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def etcd_endpoint(tmp_path: Path) -> Iterator[str]:
    binary = require_tool("etcd")
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    log = (tmp_path / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--name", "b1", "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"b1={peer}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    endpoint = client.removeprefix("http://")
    try:
        _wait_ready(endpoint, proc, tmp_path / "etcd.log")
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"etcd exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with grpc.insecure_channel(endpoint) as channel:
                rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=1)
                return
        except grpc.RpcError:
            time.sleep(0.05)
    pytest.fail(f"etcd did not become ready: {log.read_text(errors='replace')[-2000:]}")


def _benchmark(*argv: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "etcdpy.tools.benchmark", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _count_all_keys(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as channel:
        request = rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True)
        return int(rpc_pb2_grpc.KVStub(channel).Range(request, timeout=5).count)


def test_put_counts_and_writes_the_key_space(etcd_endpoint: str) -> None:
    result = _benchmark(
        "--endpoints", etcd_endpoint, "--conns", "2", "--clients", "4", "--procs", "2",
        "put", "--total", "200", "--key-space-size", "50", "--sequential-keys",
    )  # fmt: skip
    assert (result["op"], result["total"], result["ok"], result["errors"]) == ("put", 200, 200, 0)
    assert result["procs"] == 2 and result["clients"] == 4
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert _count_all_keys(etcd_endpoint) == 50


def test_range_both_consistencies(etcd_endpoint: str) -> None:
    for consistency in ("l", "s"):
        result = _benchmark(
            "--endpoints", f"http://{etcd_endpoint}", "--clients", "3",
            "range", "foo", "--total", "90", "--consistency", consistency,
        )  # fmt: skip
        assert (result["op"], result["ok"], result["errors"]) == ("range", 90, 0)


def test_txn_put_counts_every_outcome(etcd_endpoint: str) -> None:
    result = _benchmark(
        "--endpoints", etcd_endpoint, "--clients", "2", "--procs", "1",
        "txn-put", "--total", "60", "--key-space-size", "5", "--sequential-keys",
    )  # fmt: skip
    assert (result["ok"], result["errors"]) == (60, 0)
    assert result["txn_succeeded"] + result["txn_failed"] == 60
    # One process, keys taken in turn: the first touch of each key creates it (mod_revision 0)
    # and every later update carries the revision the previous answer reported.
    assert result["txn_succeeded"] == 60
    assert _count_all_keys(etcd_endpoint) == 5


def test_unreachable_endpoint_fails_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "etcdpy.tools.benchmark", "--endpoints", f"127.0.0.1:{_free_port()}",
         "--dial-timeout", "0.5", "put", "--total", "5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "could not connect" in done.stderr
