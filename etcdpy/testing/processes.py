"""Start and stop real etcdpy and etcd member processes on loopback, for tests and benchmarks.

Every process is started on free ports, waited for with a bounded deadline, and stopped by its
PID (SIGTERM, then SIGKILL), so a test never leaves a server behind or touches port 2379.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

START_TIMEOUT_SECONDS = 20.0


# The environment variable of --frontend-processes; the test suite runs once with each of 1 and 2.
FRONTEND_PROCESSES_ENV = "ETCD_FRONTEND_PROCESSES"


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0
) -> int:
    """Sends ``sig`` to ``proc`` by PID and waits; SIGKILL after ``timeout``. Its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    return proc.returncode


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports. The sockets stay bound until all are picked: a port
    released by one pick can be handed out again by the next (a member once got the same
    port for its client and peer URLs and could not listen)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def descendants(root: int) -> list[int]:
    """The live processes below ``root`` (an etcdpy member's front-ends), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        for child in sorted(children.get(pending.pop(), [])):
            found.append(child)
            pending.append(child)
    return found


def etcdpy_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("etcdpy")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "etcdpy"]


@dataclass
class MemberProcess:
    """One member (etcdpy or real etcd) started as a subprocess."""

    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    binary: list[str]
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the child's environment
    peer_scheme: str = "http"  # https: give the TLS flags in extra_args (--peer-auto-tls ...)
    # The working directory; unix(s) peer URLs name a socket file relative to it.
    cwd: Path | None = None
    client_scheme: str = "http"  # https: give the TLS flags in extra_args (--cert-file ...)
    # (CA, certificate, key) the readiness probe dials an https client URL with
    client_tls: tuple[Path, Path, Path] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.client_scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        if self.peer_scheme in ("unix", "unixs"):  # the socket file "<name>.sock:<port>"
            return f"{self.peer_scheme}://{self.name}.sock:{self.peer_port}"
        return f"{self.peer_scheme}://127.0.0.1:{self.peer_port}"

    def args(self) -> list[str]:
        return [
            *self.binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            f"{self.name}={self.peer_url}",
            *self.extra_args,
        ]

    @property
    def is_etcdpy(self) -> bool:
        return self.binary == etcdpy_command()

    def start(self, wait: bool = True) -> None:
        log_path = self.log_path or self.data_dir.with_suffix(".log")
        self.log_path = log_path
        log_file = log_path.open("ab")
        env = dict(os.environ, **self.env)
        env.pop("ETCDCTL_ENDPOINTS", None)
        if not self.is_etcdpy:  # etcdpy's own flag (the suite runs with N=1 and N=2)
            env.pop(FRONTEND_PROCESSES_ENV, None)
        self.proc = subprocess.Popen(
            self.args(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=self.cwd,
        )
        log_file.close()
        if wait:
            self.wait_ready()

    def ready_probe(self, channel: grpc.Channel) -> None:
        """Raises grpc.RpcError until the member serves: a linearizable Range (a leader)."""
        from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

        rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"health"), timeout=1.0)

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Returns once ready_probe passes; raises with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with self.client_channel() as channel:
                    self.ready_probe(channel)
                    return
            except grpc.RpcError as exc:
                last_error = exc
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready: {last_error}\n{self.log_tail()}")

    def client_channel(self) -> grpc.Channel:
        """A channel to the client URL (TLS with ``client_tls`` when it is https)."""
        if self.client_tls is None:
            return grpc.insecure_channel(self.endpoint)
        ca, cert, key = (path.read_bytes() for path in self.client_tls)
        return grpc.secure_channel(self.endpoint, grpc.ssl_channel_credentials(ca, key, cert))

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stops the process by PID; escalates to SIGKILL after ``timeout``."""
        proc = self.proc
        if proc is None:
            return None
        self.proc = None
        return stop_process(proc, sig, timeout)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


def etcdpy_member(
    tmp: Path, name: str = "m1", extra_args: list[str] | None = None
) -> MemberProcess:
    ports = free_ports(2)
    return MemberProcess(
        name=name,
        data_dir=tmp / f"{name}.etcdpy",
        client_port=ports[0],
        peer_port=ports[1],
        binary=etcdpy_command(),
        extra_args=extra_args or [],
    )


def etcd_member(tmp: Path, name: str = "m1", extra_args: list[str] | None = None) -> MemberProcess:
    binary = shutil.which("etcd")
    if binary is None:
        raise FileNotFoundError("etcd (Debian package etcd-server) is not installed")
    ports = free_ports(2)
    return MemberProcess(
        name=name,
        data_dir=tmp / f"{name}.etcd",
        client_port=ports[0],
        peer_port=ports[1],
        binary=[binary],
        extra_args=extra_args or [],
    )
