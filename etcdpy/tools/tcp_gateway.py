"""The L4 proxy behind ``etcdpy gateway start``, as etcd 3.4's gateway (proxy/tcpproxy) works.

Every accepted TCP connection is piped, bytes as they come, to one endpoint. Endpoints are
taken in turn (round robin); one that refuses the connection (or does not answer within
``CONNECT_TIMEOUT_SECONDS``) is marked inactive, skipped, and tried again every ``retry_delay``
seconds until it accepts a connection. When no endpoint is active the client's connection is
closed.

Each direction is a pair of asyncio protocols writing into each other's transport. Reading stops
while the other side's write buffer is above ``WRITE_BUFFER_HIGH`` (backpressure), and an end of
stream from one side is passed on as a half-close to the other; the connection is closed once
both directions have ended or either side fails.

etcd picks among SRV records by priority and weight; endpoints listed with ``--endpoints`` have
neither, and etcdpy does not do DNS SRV discovery, so picking here is round robin only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from etcdpy.observability.logging import get_logger

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_MONITOR_SECONDS",
    "WRITE_BUFFER_HIGH",
    "Picker",
    "Remote",
    "TCPProxy",
    "notify_systemd",
]

log = get_logger("etcdpy.gateway")

# etcd's dial has no timeout (the OS's, minutes); an endpoint that swallows SYNs would hold
# every client that the round robin sends to it. This bounds that wait.
CONNECT_TIMEOUT_SECONDS = 3.0
# etcd's tcpproxy: a monitor interval of zero means five minutes.
DEFAULT_MONITOR_SECONDS = 300.0
WRITE_BUFFER_HIGH = 256 * 1024
WRITE_BUFFER_LOW = 64 * 1024


@dataclass(slots=True)
class Remote:
    """One endpoint of the gateway."""

    host: str
    port: int
    active: bool = True

    @property
    def addr(self) -> str:
        # As etcd writes it in its log lines: host, colon, port (an IPv6 host unbracketed).
        return f"{self.host}:{self.port}"


class Picker:
    """Round robin over the remotes, skipping inactive ones, as etcd's tcpproxy picks among
    endpoints of one priority and no weight. The turn advances past a skipped remote too."""

    def __init__(self, remotes: Sequence[Remote]) -> None:
        self.remotes = list(remotes)
        self._count = 0

    def pick(self) -> Remote | None:
        """The next active remote, or None when none is active."""
        n = len(self.remotes)
        for _ in range(n):
            remote = self.remotes[self._count % n]
            self._count += 1
            if remote.active:
                return remote
        return None


def _seconds(value: float) -> float | int:
    # zap writes a duration as float seconds, without a fraction when it is whole: 60, 0.5.
    return int(value) if value == int(value) else value


def _dial_error(remote: Remote, exc: BaseException) -> str:
    # Go's words for a failed dial: "dial tcp 127.0.0.1:1: connect: connection refused".
    if isinstance(exc, TimeoutError):
        return f"dial tcp {remote.addr}: i/o timeout"
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"dial tcp {remote.addr}: connect: {reason}"
    return f"dial tcp {remote.addr}: {exc}"


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: what it reads is written to the other socket."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.read_eof = False  # this socket's peer has sent its end of stream
        self.lost = False
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # Go's TCP connections are all no-delay
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:  # a client's bytes before its endpoint is connected: kept
            self.pending.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
        elif peer.transport is not None and not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.read_eof = True
        peer = self.peer
        if peer is None and not self.pipe.closed:
            return True  # passed on once the endpoint is connected
        if peer is None or peer.transport is None or peer.lost or peer.read_eof:
            self.pipe.close()  # both directions have ended (or the other side is gone)
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()  # pass the half-close on; the other way stays open
            return True
        self.pipe.close()
        return False

    def pause_writing(self) -> None:
        self._reading(pause=True)

    def resume_writing(self) -> None:
        self._reading(pause=False)

    def _reading(self, *, pause: bool) -> None:
        peer = self.peer
        if peer is None or peer.transport is None or peer.lost or peer.transport.is_closing():
            return
        if pause:
            peer.transport.pause_reading()
        else:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pipe.close()


class _Pipe:
    """A client's connection and, once connected, the endpoint's."""

    def __init__(self, proxy: TCPProxy) -> None:
        self.proxy = proxy
        self.client: _Side = _ClientSide(self)
        self.upstream: _Side | None = None
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.pipes.discard(self)
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None and not side.lost:
                side.transport.close()  # writes out what is buffered, then closes

    def abort(self) -> None:
        self.closed = True
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None and not side.lost:
                side.transport.abort()


class _ClientSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pipe.proxy.pipes.add(self.pipe)
        # Nothing is read until the endpoint's connection is there to write it to.
        cast(asyncio.Transport, transport).pause_reading()
        self.pipe.proxy.spawn(self.pipe.proxy.connect(self.pipe))


class TCPProxy:
    """Accepts on ``listener`` and pipes each connection to one of ``remotes``."""

    def __init__(
        self,
        listener: socket.socket,
        remotes: Sequence[Remote],
        retry_delay: float,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.listener = listener
        self.picker = Picker(remotes)
        self.retry_delay = retry_delay if retry_delay > 0 else DEFAULT_MONITOR_SECONDS
        self.connect_timeout = connect_timeout
        self.pipes: set[_Pipe] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_pipe(self) -> _Side:
        return _Pipe(self).client

    async def connect(self, pipe: _Pipe) -> None:
        """Connects ``pipe``'s client to the next endpoint that accepts, or closes it."""
        loop = asyncio.get_running_loop()
        while not pipe.closed:
            remote = self.picker.pick()
            if remote is None:
                break
            upstream = _Side(pipe)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: upstream, remote.host, remote.port),  # noqa: B023
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                remote.active = False
                log.warning(
                    "deactivated endpoint",
                    address=remote.addr,
                    interval=_seconds(self.retry_delay),
                    error=_dial_error(remote, exc),
                )
                continue
            if pipe.closed or pipe.client.lost:  # the client left while we dialled
                if upstream.transport is not None:
                    upstream.transport.close()
                pipe.close()
                return
            self._join(pipe, upstream)
            return
        pipe.close()

    @staticmethod
    def _join(pipe: _Pipe, upstream: _Side) -> None:
        client = pipe.client
        pipe.upstream = upstream
        upstream.peer = client
        client.peer = upstream
        assert upstream.transport is not None and client.transport is not None
        if client.pending:
            upstream.transport.writelines(client.pending)
            client.pending.clear()
        if client.read_eof:
            client.read_eof = False
            client.eof_received()
        elif upstream.transport.get_write_buffer_size() <= WRITE_BUFFER_HIGH:
            client.transport.resume_reading()  # else resume_writing will

    async def _reactivate(self, remote: Remote) -> None:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(remote.host, remote.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            log.warning(
                "failed to activate endpoint (stay inactive for another interval)",
                address=remote.addr,
                interval=_seconds(self.retry_delay),
                error=_dial_error(remote, exc),
            )
            return
        writer.close()
        remote.active = True
        log.info("activated", address=remote.addr)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.retry_delay)
            for remote in self.picker.remotes:
                if not remote.active:
                    self.spawn(self._reactivate(remote))

    async def serve(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set; then closes the listener and every connection."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._new_pipe, sock=self.listener)
        notify_systemd()
        log.info(
            "ready to proxy client requests",
            endpoints=[r.addr for r in self.picker.remotes],
        )
        monitor = loop.create_task(self._monitor())
        try:
            await stop.wait()
        finally:
            server.close()
            monitor.cancel()
            for pipe in list(self.pipes):
                pipe.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(monitor, *self._tasks, return_exceptions=True)
            await server.wait_closed()


def notify_systemd() -> None:
    """Tells systemd the gateway is ready (``READY=1`` to ``$NOTIFY_SOCKET``), as etcd does;
    nothing when the variable is not set."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", address)
    except OSError as exc:
        log.error("failed to notify systemd for readiness", error=str(exc))


def run(listener: socket.socket, remotes: Sequence[Remote], retry_delay: float) -> int:
    """Runs the gateway until SIGTERM or SIGINT; returns the exit code (0)."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            log.info("received signal; shutting down", signal=sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await TCPProxy(listener, remotes, retry_delay).serve(stop)
        return 0

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main())
    return uvloop.run(main())
