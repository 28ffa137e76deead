"""Helpers shared by tests: tools that must exist in CI, and running etcdctl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest

ETCD_GO_SOURCE = Path("/usr/share/gocode/src/go.etcd.io/etcd")


def missing(message: str) -> NoReturn:
    """A missing tool is a failure in CI (CI=true), a skip elsewhere."""
    message += " (make test installs it when run as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The tool's path, from PATH."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path


def require_etcd_source(relative: str) -> Path:
    """A file of etcd 3.4's Go source (Debian's golang-etcd-server-dev), read for facts."""
    path = ETCD_GO_SOURCE / relative
    if not path.exists():
        missing(f"etcd's Go source ({path}) is not installed")
    return path


class Etcdctl:
    """Debian's etcdctl 3.4, run as a user would run it."""

    def __init__(self, endpoint: str) -> None:
        self.binary = require_tool("etcdctl")
        self.endpoint = endpoint

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, ETCDCTL_API="3")
        env.pop("ETCDCTL_ENDPOINTS", None)
        proc = subprocess.run(
            [self.binary, f"--endpoints={self.endpoint}", "--dial-timeout=5s", *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"etcdctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
            )
        return proc

    def out(self, *args: str, input: str | None = None) -> str:
        return self.run(*args, input=input).stdout

    def member_add(self, *args: str, timeout: float = 20.0) -> str:
        """``etcdctl member add``, retried while the cluster answers "unhealthy cluster": as
        etcd, a member refuses to add one until every voter has been connected for 5 s."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.run("member", "add", *args, check=False)
            if proc.returncode == 0:
                return proc.stdout
            if "unhealthy cluster" not in proc.stderr or time.monotonic() > deadline:
                raise AssertionError(f"etcdctl member add {' '.join(args)} failed: {proc.stderr}")
            time.sleep(0.5)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-w", "json").stdout)


WAIT_SECONDS = 20.0
# What a check may raise while the condition does not hold yet (a member still starting, ...).
NOT_YET = (AssertionError, OSError, grpc.RpcError)


def eventually(
    check: Callable[[], Any], timeout: float = WAIT_SECONDS, what: str = "the condition"
) -> Any:
    """Polls ``check`` until it returns something truthy without raising; returns that."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except NOT_YET as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s: {last!r}")
