"""What a run leaves behind, and how to remove it: every name starts with ``PREFIX``.

Several runs may share the machine (two helpers, or CI and a developer): each holds a shared
lock while it runs, and leftovers are swept (namespaces, /etc/netns entries, mountpoint
directories made on the host) only by a run that can take the lock exclusively.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

PREFIX = "k8h"
STATE_DIR = Path("/run/etcdpy-k8s-harness")
LOCK_FILE = STATE_DIR / "lock"
# Directories a run made on the host as mountpoints (one path a line): removed when empty.
CREATED_DIRS = STATE_DIR / "created-dirs"


def ip(*args: str, check: bool = True, timeout: float = 20.0) -> str:
    """Runs ``ip``; a failure raises with its message."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def harness_namespaces() -> list[str]:
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def kill_namespace_processes(namespace: str) -> None:
    """SIGKILL every process left in ``namespace`` (a killed run's pods), by PID."""
    for pid in ip("netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def delete_namespace(namespace: str) -> None:
    kill_namespace_processes(namespace)
    ip("netns", "del", namespace, check=False)
    shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)


def record_created_dir(path: Path) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with CREATED_DIRS.open("a") as out:
        out.write(f"{path}\n")


def _remove_empty_tree(root: Path) -> None:
    """Removes ``root`` if it holds only empty directories and empty files (mountpoints)."""
    if not root.is_dir() or root.is_mount():
        return
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            file = Path(dirpath, name)
            if file.stat().st_size == 0:
                file.unlink()
        for name in dirnames:
            with contextlib.suppress(OSError):
                Path(dirpath, name).rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def sweep() -> None:
    """Removes every harness namespace, /etc/netns entry and recorded mountpoint directory.
    Call only with the lock held exclusively."""
    for namespace in harness_namespaces():
        delete_namespace(namespace)
    netns_etc = Path("/etc/netns")
    if netns_etc.is_dir():
        for entry in netns_etc.glob(f"{PREFIX}*"):
            shutil.rmtree(entry, ignore_errors=True)
    if CREATED_DIRS.exists():
        for line in sorted(set(CREATED_DIRS.read_text().split()), reverse=True):
            _remove_empty_tree(Path(line))
        CREATED_DIRS.unlink()


@contextlib.contextmanager
def run_lock() -> Iterator[None]:
    """Held shared for a whole run; leftovers are swept before and after when no other run
    holds it."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as lock:
        if _try_exclusive(lock):
            sweep()
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            if _try_exclusive(lock):
                sweep()
            fcntl.flock(lock, fcntl.LOCK_UN)


def _try_exclusive(lock: object) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
    except BlockingIOError:
        return False
    return True
