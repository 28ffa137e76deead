"""What real etcd 3.4 says about its own flags, for tests that compare etcdpy with it.

Tests that need ``/usr/bin/etcd`` skip without it, except in CI (env CI=true) where a missing
etcd is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ETCD_SOURCE = Path("/usr/share/gocode/src/go.etcd.io/etcd")


def etcd_binary() -> str:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("etcd (Debian's etcd-server) is required in CI and is missing")
        pytest.skip("etcd is not installed")
    return path


def etcd_help_flags() -> dict[str, str]:
    """{flag name: default as `etcd --help` shows it} (quotes removed)."""
    text = subprocess.run(
        [etcd_binary(), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return parse_help_flags(text)


def parse_help_flags(text: str) -> dict[str, str]:
    flags: dict[str, str] = {}
    for match in re.finditer(r"^  --([a-z0-9-]+)(?: (.*))?$", text, re.MULTILINE):
        default = (match.group(2) or "").strip()
        if len(default) >= 2 and default[0] == default[-1] == "'":
            default = default[1:-1]
        flags[match.group(1)] = default
    return flags


def etcd_source_flags() -> set[str]:
    """Every flag name etcdmain/config.go registers (help does not list them all)."""
    config_go = ETCD_SOURCE / "etcdmain" / "config.go"
    if not config_go.exists():
        pytest.skip("etcd's Go source is not installed")
    text = config_go.read_text()
    names = set(re.findall(r'fs\.\w+\([^"]*?"([a-z0-9.-]+)",', text))
    ignored = re.search(r"ignored = \[\]string\{(.*?)\}", text, re.DOTALL)
    assert ignored is not None
    names |= set(re.findall(r'"([a-z0-9.-]+)"', ignored.group(1)))
    return names
