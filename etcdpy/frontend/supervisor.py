"""Starts, watches and stops the front-end processes (``--frontend-processes N``, N >= 2).

The core binds every client URL here, once per front-end, with SO_REUSEPORT (the kernel spreads
new connections over the sockets) and hands each front-end its sockets. The core keeps its copies
open: a front-end that dies is started again on the same sockets, and connections that arrived
meanwhile wait in the accept queue instead of being refused. Before binding, one plain bind of
each address checks that nobody else holds the port (a second etcdpy would otherwise share it
silently through SO_REUSEPORT).

The sockets of https URLs are marked (``secure_flags``): a front-end serves TLS on them with the
client TLS settings the core hands it as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple
from typing import TYPE_CHECKING

import structlog

from etcdpy.config import TLS_SCHEMES, URL, ConfigError

if TYPE_CHECKING:
    from etcdpy.h2grpc.server import GrpcServer

log = structlog.get_logger(__name__)

# A front-end restores its read replica's key index before it serves: about 0.5 s per 100,000
# keys here, so a full 8 GiB store may take minutes.
HELLO_TIMEOUT_SECONDS = 600.0
BACKLOG = 1024
RESTART_BACKOFF_MAX_SECONDS = 5.0
# A front-end that ran this long before dying restarts at once (not a crash loop).
STABLE_SECONDS = 10.0


def _addresses(url: URL) -> list[tuple[int, tuple[object, ...]]]:
    infos = socket.getaddrinfo(
        url.host or None, url.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    seen: list[tuple[int, tuple[object, ...]]] = []
    for family, _, _, _, address in infos:
        if (family, address) not in seen:
            seen.append((family, address))
    return seen


def _listening_socket(family: int, address: tuple[object, ...], reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if reuse_port:
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url_addresses(urls: Sequence[URL]) -> list[tuple[URL, int, tuple[object, ...]]]:
    """Every address of every URL; one address given both as http and https is refused (etcd
    serves both on it; etcdpy would need to tell TLS from plain text before the handshake)."""
    found: list[tuple[URL, int, tuple[object, ...]]] = []
    for url in urls:
        for family, address in _addresses(url):
            for other, other_family, other_address in found:
                same = (other_family, other_address) == (family, address)
                if same and (other.scheme in TLS_SCHEMES) != (url.scheme in TLS_SCHEMES):
                    raise ConfigError(
                        f"{other} and {url} share one address: etcdpy cannot serve plain "
                        "text and TLS on one port yet"
                    )
            found.append((url, family, address))
    return found


def secure_flags(urls: Sequence[URL]) -> list[bool]:
    """For each socket ``bind_client_sockets`` makes (in its order): does it serve TLS?"""
    return [url.scheme in TLS_SCHEMES for url, _, _ in _url_addresses(urls)]


def bind_client_sockets(urls: Sequence[URL], count: int) -> list[list[socket.socket]]:
    """``count`` lists of listening sockets, one socket per address of every URL."""
    addresses = [(family, address) for _, family, address in _url_addresses(urls)]
    for family, address in addresses:  # is the port free? (raises OSError when it is not)
        _listening_socket(family, address, reuse_port=False).close()
    slots: list[list[socket.socket]] = []
    try:
        for _ in range(count):
            slots.append([_listening_socket(f, a, reuse_port=True) for f, a in addresses])
    except BaseException:
        for sockets in slots:
            for sock in sockets:
                sock.close()
        raise
    return slots


class FrontendSupervisor:
    def __init__(
        self,
        slots: list[list[socket.socket]],
        core_dir: str,
        grpc_server: GrpcServer,
        max_body_bytes: int,
        log_level: str,
        log_outputs: Sequence[str],
        replica_args: Sequence[str] = (),
        on_exit: Callable[[], None] | None = None,
        secure: Sequence[bool] = (),
        client_tls_json: str | None = None,
    ) -> None:
        self._slots = slots
        self._secure = list(secure) or [False] * len(slots[0] if slots else ())
        self._client_tls_json = client_tls_json  # the TLS settings of the https sockets
        self._replica_args = list(replica_args)  # where the backend is, watch settings
        self._on_exit = on_exit
        self._core_dir = core_dir
        self._grpc = grpc_server  # the front-ends serve with its limits
        self._max_body_bytes = max_body_bytes
        self._log_level = log_level
        self._log_outputs = log_outputs
        self._processes: list[asyncio.subprocess.Process | None] = [None] * len(slots)
        self._ready = [asyncio.Event() for _ in slots]
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.returncode is None]

    def on_hello(self, payload: bytes) -> None:
        """A front-end's client listeners are up (the core link's HELLO record)."""
        with contextlib.suppress(ValueError, IndexError):
            self._ready[int(payload)].set()

    async def start(self) -> bool:
        """Starts every front-end; False (logged) when one exits before it serves."""
        for slot in range(len(self._slots)):
            await self._spawn(slot)
        waits = [self._wait_serving(slot) for slot in range(len(self._slots))]
        results = await asyncio.gather(*waits)
        if not all(results):
            return False
        for slot in range(len(self._slots)):
            self._watchers.append(asyncio.create_task(self._watch(slot)))
        return True

    async def _wait_serving(self, slot: int) -> bool:
        process = self._processes[slot]
        assert process is not None
        ready = asyncio.create_task(self._ready[slot].wait())
        exited = asyncio.create_task(process.wait())
        done, _ = await asyncio.wait(
            {ready, exited}, timeout=HELLO_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        exited.cancel()
        if ready in done:
            return True
        log.error("front-end process did not start", slot=slot, exit_code=process.returncode)
        return False

    async def _spawn(self, slot: int) -> None:
        self._ready[slot].clear()
        fds = [sock.fileno() for sock in self._slots[slot]]
        argv = [
            sys.executable,
            "-m",
            "etcdpy.cli.frontend_run",
            "--core-dir",
            self._core_dir,
            "--core-pid",
            str(os.getpid()),
            "--slot",
            str(slot),
            "--max-receive-bytes",
            str(self._grpc.max_receive_bytes),
            "--max-concurrent-streams",
            str(self._grpc.max_concurrent_streams),
            "--grpc-keepalive",
            ",".join(str(v) for v in astuple(self._grpc.keepalive)),
            "--max-body-bytes",
            str(self._max_body_bytes),
            "--log-level",
            self._log_level,
            "--log-outputs",
            ",".join(self._log_outputs),
        ]
        for fd, is_tls in zip(fds, self._secure, strict=True):
            argv += ["--tls-fd" if is_tls else "--fd", str(fd)]
        if self._client_tls_json is not None:
            argv += ["--client-tls", self._client_tls_json]
        argv += self._replica_args
        self._processes[slot] = await asyncio.create_subprocess_exec(*argv, pass_fds=fds)

    async def _watch(self, slot: int) -> None:
        backoff = 0.1
        while not self._stopping:
            process = self._processes[slot]
            assert process is not None
            started = time.monotonic()
            code = await process.wait()
            if self._stopping:
                return
            log.warning("front-end process exited; starting it again", slot=slot, exit_code=code)
            if self._on_exit is not None:
                self._on_exit()
            if time.monotonic() - started > STABLE_SECONDS:
                backoff = 0.1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_SECONDS)
            if self._stopping:
                return
            self.restarts += 1
            await self._spawn(slot)

    async def stop(self, grace: float) -> None:
        """SIGTERM every front-end, wait for them (then SIGKILL), and close the sockets."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        running = [p for p in self._processes if p is not None and p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), grace + 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for sockets in self._slots:
            for sock in sockets:
                sock.close()
