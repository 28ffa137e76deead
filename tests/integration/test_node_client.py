"""The npm etcd3 client (Node, on @grpc/grpc-js: another HTTP/2 and gRPC implementation than
grpcio's or grpc-go's), unchanged, against etcdpy: KV, txn, lease, watch, an error.

`make test` installs Node (Debian's nodejs and npm, as root, when there is no node) and the
client (`npm ci` in tests/node). As with every tool, a missing one fails in CI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from etcdpy.testing.processes import MemberProcess
from tests.external_tools import missing, require_tool

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def test_npm_etcd3_client(etcdpy_server: MemberProcess) -> None:
    node = require_tool("node")
    if not (NODE_DIR / "node_modules" / "etcd3").is_dir():
        missing("the npm etcd3 client is not installed in tests/node")
    proc = subprocess.run(
        [node, str(NODE_DIR / "client_check.js"), etcdpy_server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["get"] == "1"
    assert seen["prefix"] == {"/registry/pods/a": "1", "/registry/pods/b": "2"}
    assert seen["count"] == 2
    assert seen["txnSucceeded"] is True and seen["afterTxn"] == "11"
    assert seen["leasedBeforeRevoke"] == "v" and seen["leasedAfterRevoke"] is None
    assert seen["watchEvents"] == [f"/registry/nodes/n{i}={i}" for i in range(3)]
    assert seen["deleted"] == 2
    assert seen["futureRevisionError"] == (
        "11 OUT_OF_RANGE: etcdserver: mvcc: required revision is a future revision"
    )
