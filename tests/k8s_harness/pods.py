"""A pod: a network namespace (its IP) and one container process started in it by PID.

The container's process runs ``ip netns exec NS unshare --uts python pod_init.py SPEC``; each
of those execs the next, so the PID started is the container's own and SIGTERM reaches it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.k8s_harness.cleanup import record_created_dir
from tests.k8s_harness.network import ClusterNetwork, Host
from tests.k8s_harness.podspec import ContainerRun, HttpProbe

POD_INIT = Path(__file__).with_name("pod_init.py")
_host_dirs_lock = threading.Lock()


def make_host_mountpoints(run: ContainerRun) -> None:
    """Mountpoints on the host's own filesystem (not inside another of the container's mounts)
    that do not exist yet: made here and recorded, so the sweep removes them when empty."""
    targets = sorted((Path(m.target), m.is_file) for m in run.mounts)
    with _host_dirs_lock:
        for target, is_file in targets:
            if any(other != target and other in target.parents for other, _ in targets):
                continue  # pod_init makes it inside the outer volume
            if target.exists():
                continue
            top = target
            while not top.parent.exists():
                top = top.parent
            record_created_dir(top)
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_file:
                target.touch()
            else:
                target.mkdir()


@dataclass
class Exit:
    code: int | None  # None: still running
    log: str


class Pod:
    """One pod of the harness; ``start`` runs (or re-runs) its container."""

    def __init__(self, name: str, host: Host, pod_dir: Path) -> None:
        self.name = name
        self.host = host
        self.pod_dir = pod_dir
        self.log_path = pod_dir / "container.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.run: ContainerRun | None = None
        self.restarts = -1
        self.deleted = False

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, run: ContainerRun) -> None:
        make_host_mountpoints(run)
        self.run = run
        self.restarts += 1
        spec = self.pod_dir / f"init-{self.restarts}.json"
        spec.write_text(json.dumps(run.init_spec()))
        spec.chmod(0o600)
        with self.log_path.open("ab") as log:
            log.write(f"--- container start {self.restarts} at {time.time():.3f}\n".encode())
            log.flush()
            argv = [
                "ip",
                "netns",
                "exec",
                self.host.namespace,
                "unshare",
                "--uts",
                sys.executable,
                str(POD_INIT),
                str(spec),
            ]
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL after the grace period (the pod's, unless given)."""
        if self.process is None:
            return
        grace = grace if grace is not None else (self.run.grace_seconds if self.run else 30.0)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log(self, tail_lines: int | None = None) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail_lines:]) if tail_lines else text


def probe_ready(network: ClusterNetwork, client: Host, address: str, probe: HttpProbe) -> bool:
    """The readiness probe, sent from the client namespace as the kubelet would send it."""
    if probe.scheme.upper() != "HTTP":
        raise ValueError("the harness probes plain HTTP only (metrics port, per the contract)")
    url = f"http://{address}:{probe.port}{probe.path}"
    argv = [
        "ip",
        "netns",
        "exec",
        client.namespace,
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "1",
        url,
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return False
    code = proc.stdout.strip()
    return code.isdigit() and 200 <= int(code) < 400
