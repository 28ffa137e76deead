"""The npm etcd3 client (Node, on @grpc/grpc-js: another HTTP/2 and gRPC implementation than
grpcio's or grpc-go's), unchanged, against etcdpy: KV, txn, lease, watch, an error; and its
auth (user/role API, logging in, etcd's errors as its typed errors, logging in again when a
token expires) against etcdpy and etcd 3.4 with the same assertions.

`make test` installs Node (Debian's nodejs and npm, as root, when there is no node) and the
client (`npm ci` in tests/node). As with every tool, a missing one fails in CI.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etcdpy.testing.processes import MemberProcess
from tests.external_tools import missing, require_tool
from tests.integration.test_client_libraries_auth import start_member

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


TOKEN_TTL_SECONDS = 2


def run_node_script(script: str, *args: str) -> dict[str, Any]:
    """Runs tests/node/<script> and returns the JSON object of its last line."""
    node = require_tool("node")
    if not (NODE_DIR / "node_modules" / "etcd3").is_dir():
        missing("the npm etcd3 client is not installed in tests/node")
    proc = subprocess.run(
        [node, str(NODE_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    seen: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return seen


def test_npm_etcd3_client(etcdpy_server: MemberProcess) -> None:
    seen = run_node_script("client_check.js", etcdpy_server.endpoint)
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


@pytest.fixture(params=["etcd", "etcdpy"])
def short_token_member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemberProcess]:
    ttl = ["--auth-token=simple", f"--auth-token-ttl={TOKEN_TTL_SECONDS}"]
    process = start_member(request.param, tmp_path, ttl)
    try:
        yield process
    finally:
        process.stop()


def _error(name: str, code: str, message: str) -> str:
    return f"{name}: {code}: etcdserver: {message}"


DENIED = _error("EtcdPermissionDeniedError", "7 PERMISSION_DENIED", "permission denied")
BAD_LOGIN = _error(
    "EtcdAuthenticationFailedError",
    "3 INVALID_ARGUMENT",
    "authentication failed, invalid user ID or password",
)


def test_npm_etcd3_client_auth(short_token_member: MemberProcess) -> None:
    seen = run_node_script("auth_check.js", short_token_member.endpoint, str(TOKEN_TTL_SECONDS))
    assert seen == {
        "userExists": _error(
            "EtcdUserExistsError", "9 FAILED_PRECONDITION", "user name already exists"
        ),
        "roleExists": _error(
            "EtcdRoleExistsError", "9 FAILED_PRECONDITION", "role name already exists"
        ),
        "noSuchRole": _error(
            "EtcdRoleNotFoundError", "9 FAILED_PRECONDITION", "role name not found"
        ),
        "users": ["alice", "rita", "root"],
        "roles": ["app", "reader"],
        "appPermissions": ["Readwrite /app/ /app0"],
        "aliceRoles": ["app"],
        "alicePut": "ok",
        "aliceGet": "1",
        "alicePrefix": ["/app/a"],
        "aliceGetDenied": DENIED,
        "alicePutDenied": DENIED,
        "aliceTxnDenied": DENIED,
        "ritaGet": "1",
        "ritaPutDenied": DENIED,
        "aliceUserAddDenied": DENIED,
        "wrongPassword": BAD_LOGIN,
        "unknownUser": BAD_LOGIN,
        "noCredentials": _error(
            "GRPCInvalidArgumentError", "3 INVALID_ARGUMENT", "user name is empty"
        ),
        "aliceWatch": "/app/w1",
        "aliceAfterIdle": "1",  # the token expired; the client logged in again
        "aliceAfterRevoke": DENIED,
        "rootDisablesAuth": "ok",
    }
