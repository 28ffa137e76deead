"""What ``etcdpy --help`` and ``etcdpy --version`` print."""

from __future__ import annotations

import platform

from etcdpy import ETCD_API_VERSION, __version__
from etcdpy.cli.flag_table import FLAGS, GROUPS

__all__ = ["help_text", "version_text"]

_USAGE = """Usage:

  etcdpy [flags]
    Start an etcdpy server (an etcd v3 compatible member).

  etcdpy --version
    Show the version of etcdpy.

  etcdpy -h | --help
    Show this help.

  etcdpy --config-file <path>
    Read the settings from an etcd YAML configuration file; other flags and ETCD_*
    environment variables are then ignored.

  etcdpy benchmark [options]
    Run the benchmark tool.

Every flag may be written --flag=value, --flag value, -flag=value or -flag value, and set
with an environment variable ETCD_FLAG_NAME (e.g. ETCD_DATA_DIR); a command-line flag
conflicts with the same setting given by environment variable.
Flags marked [not built yet] are accepted only at their default value.
"""


def help_text() -> str:
    """The text ``etcdpy --help`` prints: usage, then the flags in etcd's groups."""
    lines = [_USAGE]
    for group in GROUPS:
        lines.append(f"{group}:")
        for d in FLAGS:
            if d.group != group:
                continue
            lines.append(f"  --{d.name} '{d.shown_default()}'")
            note = " [not built yet]" if d.kind == "not-built" else ""
            lines.append(f"    {d.help}{note}")
        lines.append("")
    return "\n".join(lines)


def version_text() -> str:
    """What ``etcdpy --version`` prints, in the shape of ``etcd --version``."""
    return (
        f"etcdpy Version: {__version__}\n"
        f"API Version: {ETCD_API_VERSION.rsplit('.', 1)[0]}\n"
        f"etcd compatibility: {ETCD_API_VERSION}\n"
        f"Python Version: {platform.python_version()}\n"
        f"OS/Arch: {platform.system().lower()}/{platform.machine()}\n"
    )
