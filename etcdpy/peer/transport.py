"""The peer transport: raft messages between members over TCP on the peer URLs.

A unix:// (unixs://) peer URL is a unix socket, the file ``host:port`` relative to the working
directory, as in etcd; everything else is the same as over TCP (http, https).

Each member keeps one outgoing connection per peer and receives on its listeners; a reply
travels back on the replier's own outgoing connection, so every connection carries traffic in
one direction only. A connection carries frames::

    length (4 bytes, big endian) | kind (1 byte) | payload (length bytes)

The first frame on a connection is HELLO (the sender's member id and cluster id). Every Ready's
messages for one peer go out as one MSGS frame (etcdpy.raft.codec.encode_messages), and
messages that pile up while a write is in flight go out together in the next frame: pipelined
and batched. A lost connection drops what was queued (raft retransmits), tells raft the peer is
unreachable, and is re-dialled at once, then every ``BACKOFF_MAX`` (etcd's rafthttp dials a lost
stream again every 100 ms).

A cut link loses packets silently: nothing is refused, and TCP keeps what it sent, retransmitting
with an exponential timeout (0.2, 0.4, 0.8 ... s) that reaches seconds within a few seconds of
a cut, so after a heal an established connection could stay silent for up to as long again as
the cut lasted. Every peer connection therefore has a TCP_USER_TIMEOUT (``dead_after``: data
unacknowledged that long ends the connection; heartbeats keep data in flight), and a re-dial
sends a fresh SYN every ``DIAL_RETRY`` (a new attempt while earlier ones still wait; the first to
connect wins) instead of waiting for the kernel's SYN retransmissions (1 s, then 3 s).

A snapshot (MsgSnap) goes on a connection of its own, followed by the sender's whole backend
file in chunks, so a large transfer never delays heartbeats. The receiver acknowledges once the
file is on disk; the sender then reports the snapshot's outcome to raft.

Short request/response exchanges (RPC frames holding JSON) serve what etcd serves over peer
HTTP: the member list for a member joining with ``--initial-cluster-state existing``, and the
leader's view of a learner's progress for ``member promote``.

An https peer URL carries the same frames inside TLS (etcdpy.peer.tls has the contexts
and etcd's certificate checks). The listener first sends a plain TLS_OFFER frame and the
dialler starts the handshake only when it has it: the listener upgrades the stream itself (so
that it can log why it refuses a peer), and any byte the dialler sent earlier would be read by
the plain stream and lost to the handshake. After the handshake and etcd's certificate checks
the listener sends TLS_OK, since TLS 1.3 tells a client that its certificate was refused only
after the client considers the handshake done. As in Go's handshake, the dialler's verdict on the
listener's certificate comes first (TLS_CERT_OK, or TLS_BAD_CERT and close); a listener that
refuses the dialler's certificate sends TLS_BAD_CERT. The refused side reports Go's words,
``remote error: tls: bad certificate``. A member that talks plain TCP to a TLS listener,
or TLS to a plain one, is told apart from a broken peer. Such failures are retried with backoff
like any lost connection, and logged at most once per ``TLS_LOG_INTERVAL`` per peer and reason.

PING frames, answered at once with a PONG carrying the answerer's clock, measure the round
trip to each peer (etcdpy.peer.probe, etcd's rafthttp prober) on a connection of their
own, so probes never queue behind raft traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import structlog

from etcdpy.peer.tls import PeerTLS
from etcdpy.raft.codec import decode_message, decode_messages, encode_message, encode_messages
from etcdpy.raft.types import Message, MessageType, SnapshotStatus
from etcdpy.tls.checks import CertRejected

if TYPE_CHECKING:
    from etcdpy.observability.metrics import PeerStats

_Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]
_Accept = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]
log = structlog.get_logger(__name__)

_HEADER: Final = struct.Struct(">IB")
_HELLO: Final = struct.Struct(">QQ")
_SNAP_SIZE: Final = struct.Struct(">Q")

HELLO: Final = 1
MSGS: Final = 2
SNAP_HEAD: Final = 3
SNAP_CHUNK: Final = 4
SNAP_END: Final = 5
ACK: Final = 6
RPC_REQ: Final = 7
RPC_RESP: Final = 8
REJECT: Final = 9
TLS_OK: Final = 10  # the listener accepted our certificate (TLS 1.3 tells the client late)
TLS_OFFER: Final = 11  # plain, first on a TLS listener's connection: start the handshake now
PING: Final = 12
PONG: Final = 13
TLS_CERT_OK: Final = 14  # the dialler accepted the listener's certificate
TLS_BAD_CERT: Final = 15  # the sender refused the other side's certificate (then closes)

MAX_FRAME: Final = 256 * 1024 * 1024
SNAP_CHUNK_BYTES: Final = 1024 * 1024
# Messages queued for a peer beyond this are dropped (raft retransmits what matters).
MAX_QUEUED_MESSAGES: Final = 8192
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 0.1  # etcd's DialRetryFrequency
TLS_BACKOFF_MAX: Final = 1.0
DIAL_TIMEOUT: Final = 1.0
# A new connection attempt starts this often while earlier ones still wait for an answer.
DIAL_RETRY: Final = 0.1
MAX_PENDING_DIALS: Final = 12
# Sent data unacknowledged this long ends a peer connection (TCP_USER_TIMEOUT); at least the
# election timeout (PeerTransport's dead_after).
DEAD_AFTER_MIN: Final = 1.0
TLS_HANDSHAKE_TIMEOUT: Final = 3.0
TLS_LOG_INTERVAL: Final = 30.0
SNAPSHOT_TIMEOUT: Final = 120.0
REJECT_REMOVED: Final = "removed member"
REJECT_CLUSTER: Final = "cluster ID mismatch"
# What Go's crypto/tls reports on the side whose certificate the other refused (etcd's CN,
# host name, SAN and CRL checks run inside the handshake and send a bad_certificate alert).
BAD_CERTIFICATE: Final = "remote error: tls: bad certificate"
# OpenSSL's names of the TLS alerts a peer sends (ssl.SSLError.reason) -> Go's words for them.
_GO_ALERTS: Final = {
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "expired certificate",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "revoked certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "unknown certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "unsupported certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "unknown certificate authority",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol version not supported",
    "TLSV1_ALERT_DECRYPT_ERROR": "error decrypting message",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "certificate required",
}


class PeerRejected(Exception):
    """The peer refused us (we were removed, or belong to another cluster)."""


class TLSMismatch(ConnectionError):
    """One side of a peer connection speaks TLS and the other does not."""


class TLSRefused(ConnectionError):
    """The TLS handshake with a peer failed without an error of its own to tell why."""


# The first bytes of a TLS record (handshake or alert, version 3.x): never a valid frame
# header, whose length would exceed MAX_FRAME.
_TLS_RECORD_STARTS: Final = (b"\x16\x03", b"\x15\x03")


class PeerHandler(Protocol):
    """What the server does with what arrives from peers."""

    def on_messages(self, messages: Sequence[Message]) -> None: ...

    def report_unreachable(self, member_id: int) -> None: ...

    def report_snapshot(self, member_id: int, status: SnapshotStatus) -> None: ...

    async def snapshot_db(self) -> Path:
        """A fresh copy of the backend file to send with a snapshot (deleted after use)."""
        ...

    def snapshot_dir(self) -> Path: ...

    def on_snapshot(self, message: Message, db_path: Path) -> None:
        """A snapshot message whose backend file is now at ``db_path`` (fsynced)."""

    def handle_rpc(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def is_removed(self, member_id: int) -> bool: ...

    def on_removed(self) -> None:
        """A peer told us we were removed from the cluster."""


def _frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), kind) + payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(_HEADER.size)
    length, kind = _HEADER.unpack(header)
    if length > MAX_FRAME:
        if header[:2] in _TLS_RECORD_STARTS:
            raise TLSMismatch("the other side speaks TLS (an https peer URL) and this one does not")
        raise ConnectionError(f"peer frame too large ({length} bytes)")
    payload = await reader.readexactly(length) if length else b""
    return kind, payload


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def _is_tls(url: str) -> bool:
    return url.startswith(("https://", "unixs://"))


def unix_socket_path(url: str) -> str | None:
    """The socket file of a unix:// or unixs:// URL, None for http(s). As in etcd, the URL's
    ``host:port`` is the path itself, relative to the working directory."""
    scheme, sep, rest = url.partition("://")
    return rest if sep and scheme in ("unix", "unixs") else None


def describe_tls_error(exc: BaseException) -> str:
    """An ssl error as a log line says it; an alert from the peer starts with Go's words
    (``remote error: tls: ...``), which harnesses written for etcd look for."""
    text = str(exc)
    go = _GO_ALERTS.get(getattr(exc, "reason", None) or "")
    return f"remote error: tls: {go} ({text})" if go is not None else text


def _set_user_timeout(writer: asyncio.StreamWriter, seconds: float) -> None:
    """Data unacknowledged for ``seconds`` ends the connection (TCP_USER_TIMEOUT, Linux)."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))


async def _dial(
    url: str, tls: PeerTLS, dead_after: float | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await _open(url, dead_after)
    return await _secure(url, tls, reader, writer)


async def _open(
    url: str, dead_after: float | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The TCP (or unix socket) connection of a dial (``dead_after``: its TCP_USER_TIMEOUT)."""
    path = unix_socket_path(url)
    if path is not None:
        return await asyncio.wait_for(asyncio.open_unix_connection(path), DIAL_TIMEOUT)
    host, port = _host_port(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), DIAL_TIMEOUT)
    if dead_after is not None:
        _set_user_timeout(writer, dead_after)
    return reader, writer


async def _secure(
    url: str, tls: PeerTLS, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """For an https (unixs) URL, TLS on a connection ``_open`` made (closed if that fails).

    As in Go's handshake, the dialler checks the listener's certificate first and tells it the
    outcome (TLS_CERT_OK, or TLS_BAD_CERT before closing); only then does the listener check
    ours and answer TLS_OK or TLS_BAD_CERT."""
    if not _is_tls(url):
        return reader, writer
    host, _port = _host_port(url)  # a unixs URL's host names the server, as in Go
    try:
        await _expect(
            reader,
            TLS_OFFER,
            "the peer did not offer TLS: is its peer URL http, or is it stopping?",
        )
        await _start_tls(writer, tls.client, server_hostname=host)
        try:
            tls.check_dialed(writer.get_extra_info("ssl_object"))
        except CertRejected:
            with contextlib.suppress(OSError):
                writer.write(_frame(TLS_BAD_CERT, b""))
            raise
        writer.write(_frame(TLS_CERT_OK, b""))
        await _expect(
            reader,
            TLS_OK,
            "the peer closed the connection after the TLS handshake: it refused our "
            "certificate (its log says why)",
        )
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _start_tls(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, server_hostname: str | None = None
) -> None:
    """``writer.start_tls``. When the other side closes as the handshake ends, asyncio's
    start_tls gets no transport: the writer keeps None (and fails with an AttributeError),
    which its ``__del__`` trips over later ("Exception ignored in StreamWriter.__del__").
    Then keep the plain one, closed, and fail as a lost connection."""
    plain = writer.transport
    try:
        await writer.start_tls(
            context, server_hostname=server_hostname, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
        )
    except AttributeError:
        if writer.transport is not None:
            raise
    if writer.transport is None:
        writer._transport = plain  # type: ignore[attr-defined]
        plain.close()
        raise ConnectionResetError("the peer closed the connection during the TLS handshake")


async def _expect(reader: asyncio.StreamReader, kind: int, failure: str) -> None:
    """The next frame must be ``kind``; a silent peer or a closed connection means ``failure``."""
    try:
        got, _ = await asyncio.wait_for(_read_frame(reader), TLS_HANDSHAKE_TIMEOUT)
    except ssl.SSLError:
        raise
    except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
        raise TLSRefused(failure) from None
    if got == TLS_BAD_CERT:
        raise TLSRefused(
            f"{BAD_CERTIFICATE} (the peer refused our certificate after the TLS handshake; its "
            "log says why)"
        )
    if got != kind:
        raise ConnectionError(f"unexpected peer frame {got} while starting TLS")


def _check_not_tls_offer(kind: int) -> None:
    if kind == TLS_OFFER:
        raise TLSMismatch("the peer's listener is https (it offers TLS) but our URL for it is http")


class _Throttle:
    """Logs a warning per key at most once per interval: a refused peer retries every second."""

    def __init__(self, interval: float = TLS_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def warning(self, key: str, event: str, **fields: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return
        if len(self._last) > 1024:  # forget old reasons rather than grow without bound
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        self._last[key] = now
        log.warning(event, **fields)


_TLS_FAILURES: Final = (ssl.SSLError, CertRejected, TLSMismatch, TLSRefused)


async def peer_rpc(
    urls: Sequence[str],
    request: dict[str, Any],
    timeout: float = 2.0,
    tls: PeerTLS | None = None,
) -> dict[str, Any]:
    """Ask the first peer (of ``urls``) that answers; raises ConnectionError if none does.

    ``tls`` is needed for https URLs (without it, peers are verified with the system's CAs).
    """
    tls = tls or PeerTLS()
    last: Exception | None = None
    for url in urls:
        try:
            return await asyncio.wait_for(_rpc_once(url, request, tls), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            if isinstance(exc, _TLS_FAILURES):
                log.warning("peer request failed", url=url, error=describe_tls_error(exc))
            last = exc
    raise ConnectionError(f"no peer answered {request.get('op')}: {last!r}")


async def _rpc_once(url: str, request: dict[str, Any], tls: PeerTLS) -> dict[str, Any]:
    reader, writer = await _dial(url, tls)
    try:
        writer.write(_frame(HELLO, _HELLO.pack(0, 0)))
        writer.write(_frame(RPC_REQ, json.dumps(request).encode()))
        await writer.drain()
        kind, payload = await _read_frame(reader)
        _check_not_tls_offer(kind)
        if kind != RPC_RESP:
            raise ConnectionError(f"unexpected peer answer kind {kind}: {payload!r}")
        answer: dict[str, Any] = json.loads(payload)
        return answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One round trip on a probe connection (PeerTransport.open_probe): the peer's clock, in
    unix nanoseconds, from its PONG."""
    writer.write(_frame(PING, b""))
    await writer.drain()
    kind, payload = await _read_frame(reader)
    if kind != PONG or len(payload) != 8:
        raise ConnectionError(f"unexpected answer to a probe: frame kind {kind}")
    return int.from_bytes(payload, "big")


class _Peer:
    """The outgoing side towards one member: a queue and the task that drains it."""

    def __init__(self, transport: PeerTransport, member_id: int, urls: Sequence[str]) -> None:
        self.transport = transport
        self.member_id = member_id
        self.urls = list(urls)
        self.queue: list[Message] = []
        self.wakeup = asyncio.Event()
        self.active_since: float | None = None
        self._url_index = 0
        self.task = asyncio.create_task(self._run(), name=f"peer-{member_id:x}")

    def enqueue(self, msgs: Sequence[Message]) -> None:
        if len(self.queue) >= MAX_QUEUED_MESSAGES:
            self.transport.handler.report_unreachable(self.member_id)
            return
        self.queue.extend(msgs)
        self.wakeup.set()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                url, reader, writer = await self._connect()
            except (OSError, TimeoutError) as exc:
                await asyncio.sleep(backoff)  # refused or unreachable: the peer is down
                # A TLS failure is a configuration error: no point in a handshake every 0.1 s.
                most = TLS_BACKOFF_MAX if isinstance(exc, _TLS_FAILURES) else BACKOFF_MAX
                backoff = min(backoff * 2, most)
                continue
            backoff = BACKOFF_MIN
            try:
                await self._stream(reader, writer)
            except PeerRejected:
                return
            except (OSError, ConnectionError, asyncio.IncompleteReadError, RuntimeError) as exc:
                # (uvloop raises RuntimeError for a write to a transport the peer already
                # closed, e.g. a dial that connected to a member as it died: a lost connection
                # like any other. Escaping here ended this peer's task, and the member was never
                # dialled again: a restarted member that never heard from its new leader.)
                self._log_failure(url, exc)
                log.warning(
                    "lost TCP streaming connection with remote peer",
                    remote_peer_id=f"{self.member_id:x}",
                    error=repr(exc),
                )
            finally:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
            self._lost()

    async def _connect(self) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the peer. A new TCP connection attempt starts every DIAL_RETRY while
        earlier ones still wait (each up to DIAL_TIMEOUT), going round the peer's URLs: a SYN
        lost to a cut link is resent by the kernel only after 1 s, then 3 s, so a fresh one goes
        out every DIAL_RETRY instead. The first attempt to connect wins (and only it starts TLS).
        Each failed attempt counts as a lost connection (``_lost``); when every attempt has
        failed, the last error is raised."""
        t = self.transport
        attempts: dict[asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]], str] = {}
        winner: tuple[str, asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while winner is None:
                if len(attempts) < MAX_PENDING_DIALS:
                    url = self.urls[self._url_index % len(self.urls)]
                    self._url_index += 1
                    attempts[asyncio.create_task(_open(url, t.dead_after))] = url
                done, _ = await asyncio.wait(
                    attempts, timeout=DIAL_RETRY, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    url = attempts.pop(task)
                    exc = task.exception()
                    if exc is None:
                        if winner is None:
                            winner = (url, *task.result())
                        else:
                            task.result()[1].close()
                        continue
                    if not isinstance(exc, OSError | TimeoutError):
                        raise exc
                    self._lost()
                    if not attempts and winner is None:
                        raise exc
        finally:
            for task in attempts:
                task.cancel()
                task.add_done_callback(_close_dialled)
        url, reader, writer = winner
        try:
            return (url, *await _secure(url, t.tls, reader, writer))
        except (OSError, TimeoutError) as exc:
            self._log_failure(url, exc)
            self._lost()
            raise

    def _log_failure(self, url: str, exc: BaseException) -> None:
        """TLS failures are configuration errors worth a line; a peer that is down is not."""
        if isinstance(exc, _TLS_FAILURES):
            peer = f"{self.member_id:x}"
            error = describe_tls_error(exc)
            self.transport.tls_log.warning(
                f"dial:{peer}:{error}",
                "cannot connect to peer over TLS",
                remote_peer_id=peer,
                url=url,
                error=error,
            )

    def _lost(self) -> None:
        stats = self.transport.stats
        if stats is not None:  # ops
            stats.send_failed(f"{self.member_id:x}")
        self.active_since = None
        if self.queue:
            self.queue = []
        self.transport.handler.report_unreachable(self.member_id)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t = self.transport
        writer.write(_frame(HELLO, _HELLO.pack(t.member_id, t.cluster_id)))
        await writer.drain()
        watcher = asyncio.create_task(self._watch_close(reader))
        # The watcher ends only when the connection does; it wakes the writer to notice.
        watcher.add_done_callback(lambda _t: self.wakeup.set())
        self.active_since = time.monotonic()
        log.info(
            "established TCP streaming connection with remote peer",
            remote_peer_id=f"{self.member_id:x}",
        )
        pair = (f"{t.member_id:x}", f"{self.member_id:x}")
        if t.stats is not None:  # ops: etcd_network_active_peers
            t.stats.connected(*pair)
        try:
            while True:
                if not self.queue:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                if watcher.done():
                    watcher.result()  # raises PeerRejected / connection errors
                    raise ConnectionError("peer closed the connection")
                if not self.queue:
                    continue
                batch, self.queue = self.queue, []
                frame = _frame(MSGS, encode_messages(batch))
                writer.write(frame)
                await writer.drain()
                if t.stats is not None:  # ops
                    t.stats.sent(f"{self.member_id:x}", len(frame))
        finally:
            watcher.cancel()
            if t.stats is not None:  # ops: etcd_network_disconnected_peers_total
                t.stats.disconnected_from(*pair)

    async def _watch_close(self, reader: asyncio.StreamReader) -> None:
        """The peer only ever writes to our outgoing connection to reject us, or closes it."""
        kind, payload = await _read_frame(reader)
        _check_not_tls_offer(kind)
        if kind == REJECT:
            reason = payload.decode(errors="replace")
            if reason == REJECT_REMOVED:
                self.transport.handler.on_removed()
            raise PeerRejected(reason)
        raise ConnectionError(f"unexpected frame {kind} from peer")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _close_dialled(
    task: asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
) -> None:
    """A dial attempt that lost the race: close its connection if it made one."""
    if not task.cancelled() and task.exception() is None:
        task.result()[1].close()


class PeerFaults(Protocol):
    """A partition a test imposes (etcdpy.testing.faults.PeerFaultFile); None in production."""

    @property
    def blocked(self) -> frozenset[int]:
        """The members this one cannot talk to, now."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PeerTransport:
    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        handler: PeerHandler,
        tls: PeerTLS | None = None,
        dead_after: float = DEAD_AFTER_MIN,
        faults: PeerFaults | None = None,
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.handler = handler
        self.tls = tls or PeerTLS()
        # TCP_USER_TIMEOUT of peer connections (seconds): a silent (cut) link ends them.
        self.dead_after = max(DEAD_AFTER_MIN, dead_after)
        self.tls_log = _Throttle()
        self.faults = faults
        self._peers: dict[int, _Peer] = {}
        self._servers: list[asyncio.Server] = []
        self._unix_sockets: list[tuple[str, int]] = []  # (path, inode): removed on stop
        self._snap_tasks: set[asyncio.Task[None]] = set()
        # Accepted connections, registered as they are accepted (before their handler task
        # first runs), so that stop() closes every one of them; none are accepted once stopped.
        self._inbound: set[asyncio.StreamWriter] = set()
        self._stopped = False
        # ops: rafthttp's series for /metrics (etcdpy.observability.metrics.PeerStats)
        self.stats: PeerStats | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def listen(self, urls: Sequence[str]) -> None:
        if self.faults is not None:
            self.faults.start()
        for url in urls:
            serve = self._accepted(
                self._serve_tls_connection if _is_tls(url) else self._serve_connection
            )
            if _is_tls(url) and self.tls.server is None:
                raise ValueError(f"no peer TLS certificate to serve {url}")
            path = unix_socket_path(url)
            if path is None:
                host, port = _host_port(url)
                server = await asyncio.start_server(serve, host, port, reuse_address=True)
            else:
                # etcd removes whatever the path holds first, and the socket when it stops.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                server = await asyncio.start_unix_server(serve, path)
                self._unix_sockets.append((path, os.stat(path).st_ino))
            self._servers.append(server)

    def _accepted(
        self, serve: _Serve
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        # A plain function: asyncio calls it from connection_made, so the connection is known
        # before its handler task starts (stop() may come in between).
        def accepted(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> Coroutine[Any, Any, None] | None:
            if self._stopped:
                writer.close()
                return None
            self._inbound.add(writer)
            return serve(reader, writer)

        return accepted

    async def stop(self) -> None:
        self._stopped = True
        if self.faults is not None:
            self.faults.stop()
        for server in self._servers:
            server.close()
        for writer in list(self._inbound):
            writer.close()
        for peer in list(self._peers.values()):
            await peer.close()
        self._peers.clear()
        for task in list(self._snap_tasks):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for path, inode in self._unix_sockets:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:  # still ours, not a successor's
                    os.remove(path)
        self._unix_sockets.clear()

    # -- peers ------------------------------------------------------------------------------

    def set_peer(self, member_id: int, urls: Sequence[str]) -> None:
        """Add a peer, or point it at new URLs."""
        if member_id == self.member_id or not urls:
            return
        peer = self._peers.get(member_id)
        if peer is not None:
            peer.urls = list(urls)
            return
        self._peers[member_id] = _Peer(self, member_id, urls)

    def remove_peer(self, member_id: int) -> None:
        peer = self._peers.pop(member_id, None)
        if peer is not None:
            peer.task.cancel()

    def peer_ids(self) -> list[int]:
        return sorted(self._peers)

    async def open_probe(
        self, member_id: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to ``member_id`` for PING frames (None: not a peer)."""
        peer = self._peers.get(member_id)
        if peer is None:
            return None
        reader, writer = await _dial(peer.urls[0], self.tls, self.dead_after)
        writer.write(_frame(HELLO, _HELLO.pack(self.member_id, self.cluster_id)))
        return reader, writer

    def active_since(self, member_id: int) -> float | None:
        """When the connection to ``member_id`` came up (monotonic), None when it is down."""
        peer = self._peers.get(member_id)
        return peer.active_since if peer is not None else None

    # -- sending ----------------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        by_peer: dict[int, list[Message]] = {}
        if self.faults is not None and self.faults.blocked:
            messages = [m for m in messages if m.to not in self.faults.blocked]
        for msg in messages:
            if msg.type == MessageType.SNAP:
                self._send_snapshot(msg)
                continue
            by_peer.setdefault(msg.to, []).append(msg)
        for to, msgs in by_peer.items():
            peer = self._peers.get(to)
            if peer is not None:
                peer.enqueue(msgs)

    def _send_snapshot(self, msg: Message) -> None:
        peer = self._peers.get(msg.to)
        if peer is None:
            self.handler.report_snapshot(msg.to, SnapshotStatus.FAILURE)
            return
        task = asyncio.create_task(self._stream_snapshot(peer, msg))
        self._snap_tasks.add(task)
        task.add_done_callback(self._snap_tasks.discard)

    async def _stream_snapshot(self, peer: _Peer, msg: Message) -> None:
        status = SnapshotStatus.FAILURE
        db_path: Path | None = None
        try:
            db_path = await self.handler.snapshot_db()
            size = db_path.stat().st_size
            log.info("sending snapshot", to=f"{msg.to:x}", index=_snap_index(msg), db_bytes=size)
            reader, writer = await _dial(peer.urls[0], self.tls, self.dead_after)
            try:
                writer.write(_frame(HELLO, _HELLO.pack(self.member_id, self.cluster_id)))
                writer.write(_frame(SNAP_HEAD, _SNAP_SIZE.pack(size) + encode_message(msg)))
                with db_path.open("rb") as f:
                    while chunk := f.read(SNAP_CHUNK_BYTES):
                        writer.write(_frame(SNAP_CHUNK, chunk))
                        await writer.drain()
                writer.write(_frame(SNAP_END, b""))
                await writer.drain()
                kind, _ = await asyncio.wait_for(_read_frame(reader), SNAPSHOT_TIMEOUT)
                if kind == ACK:
                    status = SnapshotStatus.FINISH
            finally:
                writer.close()
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.warning("snapshot send failed", to=f"{msg.to:x}", error=repr(exc))
        finally:
            if db_path is not None:
                with contextlib.suppress(OSError):
                    db_path.unlink()
            self.handler.report_snapshot(msg.to, status)

    # -- receiving --------------------------------------------------------------------------

    async def _serve_tls_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The handshake and etcd's certificate checks, then the same frames as plain TCP."""
        peername = writer.get_extra_info("peername")
        # A unix socket's dialler has no address (""); etcd's SAN check then fails, as here.
        remote = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        assert self.tls.server is not None
        try:
            # Nothing is read before this offer: the dialler waits for it to begin the handshake.
            writer.write(_frame(TLS_OFFER, b""))
            await _start_tls(writer, self.tls.server)
            # The dialler's verdict on our certificate comes first, as in Go's handshake.
            verdict, _ = await asyncio.wait_for(_read_frame(reader), TLS_HANDSHAKE_TIMEOUT)
            if verdict == TLS_BAD_CERT:
                raise CertRejected(
                    f"{BAD_CERTIFICATE} (the peer refused our certificate; its log says why)"
                )
            if verdict != TLS_CERT_OK:
                raise ConnectionError(f"unexpected peer frame {verdict} while starting TLS")
            try:
                await self.tls.check_accepted(writer.get_extra_info("ssl_object"), remote)
            except CertRejected:
                writer.write(_frame(TLS_BAD_CERT, b""))
                raise
            writer.write(_frame(TLS_OK, b""))
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, ssl.SSLError | CertRejected):
                error = describe_tls_error(exc)
                if getattr(exc, "reason", None) == "WRONG_VERSION_NUMBER":
                    error += " (the peer does not speak TLS: is its peer URL http?)"
                self.tls_log.warning(
                    f"accept:{remote}:{error}",
                    "rejected peer connection",
                    remote_addr=remote,
                    error=error,
                )
            self._inbound.discard(writer)
            writer.close()
            return
        await self._serve_connection(reader, writer)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._inbound.add(writer)  # also reached from a TLS connection after its handshake
        try:
            kind, payload = await _read_frame(reader)
            if kind != HELLO or len(payload) != _HELLO.size:
                return
            from_id, cluster_id = _HELLO.unpack(payload)
            if from_id and cluster_id != self.cluster_id:
                writer.write(_frame(REJECT, REJECT_CLUSTER.encode()))
                await writer.drain()
                return
            if from_id and self.handler.is_removed(from_id):
                writer.write(_frame(REJECT, REJECT_REMOVED.encode()))
                await writer.drain()
                return
            await self._receive(from_id, reader, writer)
        except TLSMismatch:
            peername = writer.get_extra_info("peername")
            remote = str(peername[0]) if peername else ""
            self.tls_log.warning(
                f"accept:{remote}:tls",
                "rejected peer connection",
                remote_addr=remote,
                error="the peer speaks TLS to this plain (http) peer URL",
            )
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # a bad frame must not take the member down
            log.warning("bad peer connection", error=repr(exc))
        finally:
            self._inbound.discard(writer)
            writer.close()

    async def _receive(
        self, from_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        handler = self.handler
        while True:
            kind, payload = await _read_frame(reader)
            if kind == MSGS:
                if from_id and handler.is_removed(from_id):  # removed while connected
                    writer.write(_frame(REJECT, REJECT_REMOVED.encode()))
                    await writer.drain()
                    return
                if self.faults is not None and from_id in self.faults.blocked:
                    continue
                if self.stats is not None:  # ops
                    self.stats.received(f"{from_id:x}", len(payload) + _HEADER.size)
                handler.on_messages(decode_messages(payload))
            elif kind == SNAP_HEAD:
                await self._receive_snapshot(payload, reader, writer)
                return
            elif kind == PING:  # the prober's round trip: answer at once, with our clock
                if self.faults is not None and from_id in self.faults.blocked:
                    continue
                writer.write(_frame(PONG, time.time_ns().to_bytes(8, "big")))
                await writer.drain()
            elif kind == RPC_REQ:
                answer = handler.handle_rpc(json.loads(payload))
                writer.write(_frame(RPC_RESP, json.dumps(answer).encode()))
                await writer.drain()
                return
            else:
                raise ConnectionError(f"unexpected frame kind {kind}")

    async def _receive_snapshot(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        (size,) = _SNAP_SIZE.unpack_from(head, 0)
        msg = decode_message(head[_SNAP_SIZE.size :])
        index = _snap_index(msg)
        final = self.handler.snapshot_dir() / f"{index:016x}.snap.db"
        partial = final.with_suffix(".db.part")
        received = 0
        with partial.open("wb") as f:
            while True:
                kind, payload = await _read_frame(reader)
                if kind == SNAP_CHUNK:
                    f.write(payload)
                    received += len(payload)
                    continue
                if kind == SNAP_END:
                    break
                raise ConnectionError(f"unexpected frame kind {kind} in a snapshot")
            f.flush()
            os.fsync(f.fileno())
        if received != size:
            partial.unlink()
            raise ConnectionError(f"snapshot truncated: {received} of {size} bytes")
        partial.rename(final)
        log.info("received snapshot", index=index, db_bytes=size)
        self.handler.on_snapshot(msg, final)
        writer.write(_frame(ACK, b""))
        await writer.drain()


def _snap_index(msg: Message) -> int:
    return msg.snapshot.metadata.index if msg.snapshot is not None else 0
