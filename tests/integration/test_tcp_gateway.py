"""`etcdpy gateway start` (etcd 3.4's L4 gateway) in front of a three-member etcdpy cluster,
used by Debian's etcdctl; its command line compared with Debian's `etcd gateway start`.

Every process is started on free ports and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.cluster_procs import ProcessCluster
from etcdpy.testing.processes import etcdpy_command, free_port
from tests.external_tools import Etcdctl, eventually, require_tool

pytestmark = pytest.mark.integration

READY = "ready to proxy client requests"
START_SECONDS = 10.0


class Gateway:
    """A gateway process (etcdpy's or etcd's); stdout and stderr go to files."""

    def __init__(self, binary: list[str], args: list[str], tmp: Path, name: str) -> None:
        self.stdout_path = tmp / f"{name}.stdout"
        self.stderr_path = tmp / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*binary, "gateway", "start", *args],
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]

    def wait_for(self, msg: str, timeout: float = START_SECONDS, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.log():
                if entry["msg"] == msg and all(entry.get(k) == v for k, v in fields.items()):
                    return entry
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {msg!r} {fields} in the gateway's log:\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
                raise AssertionError(f"the gateway ignored signal {sig}") from None
        return self.proc.returncode


@contextlib.contextmanager
def gateway(tmp: Path, *args: str, binary: list[str] | None = None) -> Iterator[Gateway]:
    gw = Gateway(binary or etcdpy_command(), list(args), tmp, f"gw{free_port()}")
    try:
        yield gw
    finally:
        gw.stop()


def run_gateway(*args: str, binary: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """A gateway command that should end by itself (help, a refused flag, a failed check)."""
    return subprocess.run(
        [*(binary or etcdpy_command()), "gateway", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )


def etcd_binary() -> list[str]:
    return [require_tool("etcd")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with ProcessCluster.etcdpy(tmp_path_factory.mktemp("cluster")) as c:
        c.leader()
        yield c


def _member_id(endpoint: str) -> int:
    """The member that answers Status on a new TCP connection to ``endpoint``."""
    # gRPC shares connections between channels unless told not to.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(endpoint, options=options) as channel:
        stub = rpc_pb2_grpc.MaintenanceStub(channel)
        return int(stub.Status(rpc_pb2.StatusRequest(), timeout=5).header.member_id)


def _members_in_turn(listen: str, cluster: ProcessCluster) -> bool:
    """Three connections through the gateway reach the three members, one each."""
    through = [_member_id(listen) for _ in cluster.members]
    return sorted(through) == sorted(_member_id(m.endpoint) for m in cluster.members)


def test_etcdctl_put_get_watch_through_the_gateway(cluster: ProcessCluster, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    with gateway(
        tmp_path, "--endpoints", ",".join(cluster.endpoints), "--listen-addr", listen
    ) as gw:
        gw.wait_for(READY)
        ctl = Etcdctl(listen)
        assert ctl.out("put", "gw/a", "1") == "OK\n"
        assert ctl.out("get", "gw/a") == "gw/a\n1\n"

        # The gateway hands connections to the members in turn.
        assert _members_in_turn(listen, cluster)

        watch = subprocess.Popen(
            [ctl.binary, f"--endpoints={listen}", "watch", "gw/w"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, ETCDCTL_API="3"),
            start_new_session=True,
        )
        lines: list[str] = []
        stdout = watch.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.append(line)

        pumping = threading.Thread(target=pump, daemon=True)
        pumping.start()
        try:

            def delivered() -> bool:
                ctl.out("put", "gw/w", "v")  # until the watch, started meanwhile, sees one
                time.sleep(0.2)
                return lines[:3] == ["PUT\n", "gw/w\n", "v\n"]

            eventually(delivered, what="a watch event through the gateway")
        finally:
            watch.kill()
            watch.wait(timeout=10)
            pumping.join(timeout=10)
            stdout.close()
        # A large value both ways (more than one read and the write buffer's high water).
        big = "x" * (1 << 20)
        ctl.run("put", "gw/big", input=big)
        assert ctl.out("get", "gw/big", "--print-value-only") == big + "\n"
    assert gw.proc.returncode == 0


def test_kill9_member_is_skipped_then_retried(cluster: ProcessCluster, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    args = ["--endpoints", ",".join(cluster.endpoints), "--listen-addr", listen]
    with gateway(tmp_path, *args, "--retry-delay", "1s") as gw:
        gw.wait_for(READY, endpoints=cluster.endpoints)
        leader = cluster.leader()
        victim = next(m for m in cluster.members if m is not leader)
        victim.kill9()
        try:
            ctl = Etcdctl(listen)
            # More connections than endpoints: the round robin comes to the dead one.
            for i in range(6):
                assert ctl.out("put", f"gw/after-kill/{i}", str(i)) == "OK\n"
                assert ctl.out("get", f"gw/after-kill/{i}", "--print-value-only") == f"{i}\n"
            entry = gw.wait_for("deactivated endpoint", address=victim.endpoint)
            assert entry["level"] == "warn"
            assert entry["interval"] == 1
            assert "connection refused" in entry["error"]
            gw.wait_for(
                "failed to activate endpoint (stay inactive for another interval)",
                address=victim.endpoint,
            )
        finally:
            victim.start()
        gw.wait_for("activated", address=victim.endpoint)
        eventually(
            lambda: _members_in_turn(listen, cluster),
            what="the restarted member served through the gateway again",
        )


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A TCP peer that sends back what it reads and, after the client's end of stream, a
    trailer: a half-closed connection must still carry the answer."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)
            conn.sendall(b"END")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_half_close_and_a_large_stream(tmp_path: Path) -> None:
    server, thread = _echo_server()
    listen_port = free_port()
    endpoint = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with gateway(
            tmp_path, f"--endpoints={endpoint}", f"--listen-addr=127.0.0.1:{listen_port}"
        ) as gw:
            gw.wait_for(READY)
            payload = os.urandom(8 << 20)
            received = bytearray()
            with socket.create_connection(("127.0.0.1", listen_port), timeout=20) as client:

                def read_all() -> None:
                    while chunk := client.recv(1 << 16):
                        received.extend(chunk)

                reader = threading.Thread(target=read_all, daemon=True)
                reader.start()
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)
                reader.join(timeout=30)
                assert not reader.is_alive()
            assert bytes(received) == payload + b"END"
    finally:
        server.close()
        thread.join(timeout=5)


def test_no_endpoint_active_closes_the_client(tmp_path: Path) -> None:
    listen_port = free_port()
    dead = f"127.0.0.1:{free_port()}"
    with gateway(tmp_path, f"--endpoints={dead}", f"--listen-addr=127.0.0.1:{listen_port}") as gw:
        gw.wait_for(READY)
        for _ in range(2):  # the first finds it dead, the second finds none active
            with socket.create_connection(("127.0.0.1", listen_port), timeout=10) as client:
                assert client.recv(10) == b""
        gw.wait_for("deactivated endpoint", address=dead)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_it_cleanly(tmp_path: Path, sig: int) -> None:
    server, thread = _echo_server()
    listen_port = free_port()
    endpoint = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with gateway(
            tmp_path, f"--endpoints={endpoint}", f"--listen-addr=127.0.0.1:{listen_port}"
        ) as gw:
            gw.wait_for(READY)
            with socket.create_connection(("127.0.0.1", listen_port), timeout=10) as client:
                client.sendall(b"ping")
                assert client.recv(4) == b"ping"
                assert gw.stop(sig) == 0  # with a connection open
                with contextlib.suppress(ConnectionResetError):
                    assert client.recv(10) == b""
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", listen_port), timeout=2).close()
    finally:
        server.close()
        thread.join(timeout=5)


def test_ready_line_is_etcds(tmp_path: Path) -> None:
    endpoints = f"127.0.0.1:{free_port()},http://127.0.0.1:{free_port()}"
    lines = []
    for binary in (etcd_binary(), etcdpy_command()):
        listen = f"--listen-addr=127.0.0.1:{free_port()}"
        with gateway(tmp_path, f"--endpoints={endpoints}", listen, binary=binary) as gw:
            lines.append(gw.wait_for(READY))
    theirs, ours = lines
    assert list(ours) == list(theirs)  # level, ts, caller, msg, endpoints, in that order
    assert ours["level"] == theirs["level"] == "info"
    assert ours["endpoints"] == theirs["endpoints"]  # the scheme stripped
    assert isinstance(ours["ts"], float) and isinstance(theirs["ts"], float)


def test_systemd_is_notified(tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    notify.bind(path)
    notify.settimeout(START_SECONDS)
    gw = Gateway(
        ["env", f"NOTIFY_SOCKET={path}", *etcdpy_command()],
        [f"--listen-addr=127.0.0.1:{free_port()}", f"--endpoints=127.0.0.1:{free_port()}"],
        tmp_path,
        "notify",
    )
    try:
        assert notify.recv(100) == b"READY=1"
    finally:
        gw.stop()
        notify.close()


# -- the command line, next to etcd's ------------------------------------------------------------


def _same_as_etcd(*args: str) -> subprocess.CompletedProcess[str]:
    ours = run_gateway(*args)
    theirs = run_gateway(*args, binary=etcd_binary())
    assert ours.returncode == theirs.returncode, (ours, theirs)
    assert ours.stdout == theirs.stdout.replace("etcd gateway", "etcdpy gateway")
    assert ours.stderr == theirs.stderr.replace("etcd gateway", "etcdpy gateway")
    return ours


@pytest.mark.parametrize(
    "args",
    [
        ["start", "--help"],
        ["start", "-h"],
        [],
        ["--help"],
        ["start", "--bogus"],
        ["start", "-x"],
        ["start", "-listen-addr=127.0.0.1:1"],  # one dash: shorthands, as pflag reads it
        ["start", "--insecure-skip-tls-verify"],  # grpc-proxy's flag, not the gateway's
        ["start", "--retry-delay", "soon"],
        ["start", '--retry-delay="1s"'],  # the value quoted in the message as Go's %q does
        ["start", "--insecure-discovery=maybe"],
        ["start", "--listen-addr"],
        ["--bogus"],
    ],
)
def test_help_and_bad_flags_as_etcd(args: list[str]) -> None:
    result = _same_as_etcd(*args)
    assert result.returncode in (0, 1)


def test_failed_checks_as_etcd() -> None:
    port = free_port()
    for args in (
        ["--endpoints="],
        [f"--endpoints=127.0.0.1:{port}", f"--listen-addr=localhost:{port}"],
        ["--endpoints=a:b:c", "--listen-addr=127.0.0.1:0"],
        ["--endpoints=no-such-host.invalid:1", "--listen-addr=127.0.0.1:0"],
        ["--listen-addr=nohost"],
        ["--listen-addr=127.0.0.1:70000", "--endpoints=127.0.0.1:1"],
    ):
        result = _same_as_etcd("start", *args)
        assert result.returncode == 1


def test_listen_address_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_gateway("start", f"--listen-addr=127.0.0.1:{port}", "--endpoints=127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr == f"listen tcp 127.0.0.1:{port}: bind: address already in use\n"


def test_dns_discovery_is_refused_naming_the_flag() -> None:
    result = run_gateway("start", "--discovery-srv=example.com", "--listen-addr=127.0.0.1:0")
    assert result.returncode == 2
    assert result.stderr.startswith("etcdpy: --discovery-srv=example.com: not built yet in etcdpy")


def test_discovery_only_flags_are_accepted_without_discovery(tmp_path: Path) -> None:
    # As in etcd, they only shape --discovery-srv's lookup and checks.
    with gateway(
        tmp_path,
        f"--listen-addr=127.0.0.1:{free_port()}",
        f"--endpoints=127.0.0.1:{free_port()}",
        "--discovery-srv-name=x",
        "--insecure-discovery",
        f"--trusted-ca-file={tmp_path / 'absent.pem'}",
        "extra-argument",  # cobra ignores it
    ) as gw:
        gw.wait_for(READY)
