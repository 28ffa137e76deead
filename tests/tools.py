"""Helpers shared by tests: tools that must exist in CI, and running etcdctl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest


def require_tool(name: str) -> str:
    """The tool's path. Missing: a failure in CI (CI=true), a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it when run as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
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

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-w", "json").stdout)
