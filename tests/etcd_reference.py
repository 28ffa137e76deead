"""What real etcd 3.4 says about its own flags, for tests that compare etcdpy with it.

Tests that need ``etcd`` or etcd's Go source skip without them, except in CI (env CI=true) where
a missing one is a failure (tests.external_tools).
"""

from __future__ import annotations

import re
import subprocess

from tests.external_tools import require_etcd_source, require_tool


def etcd_binary() -> str:
    return require_tool("etcd")


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
    config_go = require_etcd_source("etcdmain/config.go")
    text = config_go.read_text()
    names = set(re.findall(r'fs\.\w+\([^"]*?"([a-z0-9.-]+)",', text))
    ignored = re.search(r"ignored = \[\]string\{(.*?)\}", text, re.DOTALL)
    assert ignored is not None
    names |= set(re.findall(r'"([a-z0-9.-]+)"', ignored.group(1)))
    return names
