"""Start, probe and stop the servers the benchmark compares (real etcd, the null server, etcdpy).

Each runs on free loopback ports with its own temporary data directory, and is stopped by its
PID. `rss_bytes` sums the resident memory of the process and all of its descendants, so a
server that spreads over several processes is measured whole.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.processes import (
    MemberProcess,
    descendants,
    etcd_member,
    etcdpy_member,
    free_port,
)

READY_TIMEOUT_S = 30.0
REPO = Path(__file__).resolve().parent.parent


class StartFailed(Exception):
    """The target could not be started; the message says why."""


@dataclass
class Server:
    name: str
    endpoint: str  # host:port
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process and its live descendants."""
        return sum(_cpu_of(pid) for pid in [self.proc.pid, *descendants(self.proc.pid)])

    def rss_bytes(self) -> int:
        return sum(_rss_of(pid) for pid in [self.proc.pid, *descendants(self.proc.pid)])


def _rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _launch(name: str, argv: list[str], endpoint: str, workdir: Path) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
            )
        except OSError as exc:
            raise StartFailed(f"{argv[0]}: {exc}") from exc
    server = Server(name, endpoint, proc, log_path)
    try:
        _wait_ready(server)
    except StartFailed:
        server.stop()
        raise
    return server


def _wait_ready(server: Server) -> None:
    """Ready means a linearizable Range answers (so a leader exists)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise StartFailed(f"exited with code {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with grpc.insecure_channel(server.endpoint) as channel:
                rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"ready"), timeout=1)
                return
        except grpc.RpcError:
            time.sleep(0.1)
    raise StartFailed(f"not ready after {READY_TIMEOUT_S:.0f}s:\n{server.log_tail()}")


def _start_member(name: str, member: MemberProcess) -> Server:
    """etcd or etcdpy as one member on free ports (etcdpy.testing.processes starts it)."""
    member.data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        member.start(wait=False)
    except OSError as exc:
        raise StartFailed(f"{member.binary[0]}: {exc}") from exc
    assert member.proc is not None and member.log_path is not None
    server = Server(name, member.endpoint, member.proc, member.log_path)
    try:
        member.wait_ready(READY_TIMEOUT_S)
    except (RuntimeError, TimeoutError) as exc:
        server.stop()
        raise StartFailed(str(exc)) from exc
    return server


def start_etcd(workdir: Path) -> Server:
    try:
        member = etcd_member(workdir, name="bench")
    except FileNotFoundError as exc:
        raise StartFailed(str(exc)) from exc
    return _start_member("etcd", member)


def start_null(workdir: Path, engine: str = "grpcio") -> Server:
    port = free_port()
    argv = [
        sys.executable, "-m", "bench.null_server", "--listen", f"127.0.0.1:{port}",
        "--engine", engine,
    ]  # fmt: skip
    name = "null" if engine == "grpcio" else f"null-{engine}"
    return _launch(name, argv, f"127.0.0.1:{port}", workdir)


def start_etcdpy(workdir: Path, frontends: int | None = None) -> Server:
    """etcdpy with its default front-end processes, or exactly ``frontends`` of them."""
    binary = Path(sys.executable).with_name("etcdpy")
    if not binary.exists():
        raise StartFailed(f"{binary} does not exist (run make install)")
    extra = [] if frontends is None else ["--frontend-processes", str(frontends)]
    name = "etcdpy" if frontends is None else f"etcdpy-n{frontends}"
    return _start_member(name, etcdpy_member(workdir, name="bench", extra_args=extra))


STARTERS: dict[str, Callable[[Path], Server]] = {
    "etcd": start_etcd,
    "null": start_null,
    "null-h2grpc": functools.partial(start_null, engine="h2grpc"),
    "etcdpy": start_etcdpy,
    # etcdpy with N front-end processes (--frontend-processes N; n1: the member alone)
    **{f"etcdpy-n{n}": functools.partial(start_etcdpy, frontends=n) for n in (1, 2, 4)},
}
