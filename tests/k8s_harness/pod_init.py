"""The container runtime in miniature, run as root inside a pod's namespaces (``ip netns exec``
gives a private mount namespace, ``unshare --uts`` a hostname of its own): sets the hostname,
bind-mounts the pod's volumes at their mountPaths, drops to the pod's user and execs the
container's command in the same process, so the PID the harness holds is the container's.

Usage: python pod_init.py SPEC.json (written by podspec.ContainerRun.init_spec). Standalone on
purpose: it imports nothing of the harness, so it starts fast.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from pathlib import Path

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, flags: int, fstype: str = "", data: str = "") -> None:
    args = (fstype.encode() or None, flags, data.encode() or None)
    if _libc.mount(source.encode(), target.encode(), *args) != 0:
        error = ctypes.get_errno()
        raise SystemExit(f"pod_init: mount {source} on {target} failed: {os.strerror(error)}")


def _mountpoint(target: Path, is_file: bool) -> None:
    """Makes a missing mountpoint; under another mount it lands in that volume, as the kubelet's
    do. (Those on the host's own filesystem were made, and are removed, by the harness.)"""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_file:
        target.touch()
    else:
        target.mkdir()


def _reveal(paths: list[str]) -> None:
    """The interpreter may live under a directory only root can enter (/root/.pyenv): a tmpfs
    anyone may enter goes over that directory, with the one child needed bind-mounted back."""
    for path in paths:
        child = Path(path)
        fd = os.open(child, os.O_PATH)
        _mount("tmpfs", str(child.parent), 0, fstype="tmpfs", data="mode=755")
        child.mkdir()
        _mount(f"/proc/self/fd/{fd}", str(child), MS_BIND | MS_REC)
        os.close(fd)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    socket.sethostname(spec["hostname"])
    _reveal(spec.get("reveal", []))
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].count("/"))
    # Sources are opened before any mount: a mount at /tmp would hide a source under /tmp.
    sources = [os.open(m["source"], os.O_PATH) for m in mounts]
    for mount, fd in zip(mounts, sources, strict=True):
        target = Path(mount["target"])
        _mountpoint(target, mount["is_file"])
        _mount(f"/proc/self/fd/{fd}", str(target), MS_BIND | MS_REC)
        if mount["readonly"]:
            _mount("none", str(target), MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    if spec.get("readonly_root"):
        # readOnlyRootFilesystem: this namespace's view of / goes read-only; the volumes,
        # mounted above as mounts of their own, stay writable.
        _mount("none", "/", MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.chdir(spec["workdir"])
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as exc:
        raise SystemExit(f"pod_init: cannot run {argv[0]}: {exc}") from exc


if __name__ == "__main__":
    main()
