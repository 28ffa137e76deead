"""One front-end process: serves the client sockets the core handed it until told to stop.

It lives exactly as long as its core: it asks the kernel for SIGKILL when the core dies
(PR_SET_PDEATHSIG) and exits when the core link closes, so no front-end ever answers for a core
that is gone. SIGTERM stops it gracefully: stop accepting, let calls finish, then exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

import structlog

from etcdpy.auth.tokens import verifier
from etcdpy.clientport.sniffer import ClientFront
from etcdpy.clientport.tls import ClientTLS
from etcdpy.config import EnvKnobs
from etcdpy.corelink.client import CoreLinkClient, InboundDelay
from etcdpy.corelink.stats import ReadCounts, take_counts
from etcdpy.corelink.wire import CORE_HTTP_SOCKET, CORE_LINK_SOCKET, SUBSCRIBE
from etcdpy.frontend.handlers import build_handlers, local_handlers
from etcdpy.frontend.replica import FrontendReplica
from etcdpy.h2grpc.server import GrpcServer, KeepalivePolicy
from etcdpy.observability.logging import configure_logging
from etcdpy.observability.metrics import GrpcStats
from etcdpy.server.watch_sync import WatchSync

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1
SHUTDOWN_GRACE_SECONDS = 5.0
# Sockets in the core's private directory (etcdpy.frontend.supervisor makes them).


def _die_with_parent(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the core died before the request above took effect
        sys.exit(1)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="etcdpy-frontend")
    parser.add_argument("--core-dir", required=True)
    parser.add_argument("--core-pid", type=int, required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--fd", type=int, action="append", default=[])
    parser.add_argument("--tls-fd", type=int, action="append", default=[], help="serves TLS")
    parser.add_argument("--client-tls", help="the client TLS settings, as JSON (clientport.tls)")
    parser.add_argument("--max-receive-bytes", type=int, required=True)
    parser.add_argument("--max-concurrent-streams", type=int, required=True)
    parser.add_argument("--grpc-keepalive", default="0,0,0", help="interval,timeout,min time")
    parser.add_argument("--max-body-bytes", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-outputs", default="default")
    parser.add_argument("--db-path", help="the core's backend file: serve reads from it")
    parser.add_argument("--db-map-size", type=int, default=0)
    parser.add_argument("--watch-progress-notify-interval", type=float, default=600.0)
    parser.add_argument("--max-request-bytes", type=int, default=1536 * 1024)
    parser.add_argument("--max-txn-ops", type=int, default=128)
    parser.add_argument("--auth-token", default="simple", help="the member's --auth-token")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, knobs: EnvKnobs) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    core_lost = False

    def on_core_lost() -> None:
        nonlocal core_lost
        core_lost = True
        stop.set()

    core_dir = args.core_dir
    link = await CoreLinkClient.connect(
        os.path.join(core_dir, CORE_LINK_SOCKET), on_core_lost, _link_delay(knobs, args.slot)
    )
    handlers = build_handlers(link)
    watch_sync = WatchSync()
    replica = await _start_replica(args, link, watch_sync) if args.db_path else None
    if replica is not None:
        assert replica.store is not None
        watch_sync.start(replica.store)
        stats, counts = GrpcStats(), ReadCounts()
        watch_settings = (args.watch_progress_notify_interval, args.max_request_bytes)
        handlers.update(
            local_handlers(replica, link, stats, counts, watch_settings, args.max_txn_ops)
        )
        link.take_stats = functools.partial(take_counts, stats, counts, replica.store)
    interval, timeout, min_time = (float(v) for v in args.grpc_keepalive.split(","))
    grpc_server = GrpcServer(
        handlers,
        args.max_receive_bytes,
        args.max_concurrent_streams,
        KeepalivePolicy(interval, timeout, min_time),
    )
    front = ClientFront(
        None,
        grpc_server,
        args.max_body_bytes,
        http_upstream_path=os.path.join(core_dir, CORE_HTTP_SOCKET),
    )
    for fd in args.fd:
        await front.listen_socket(socket.socket(fileno=fd))
    if args.tls_fd:
        tls = ClientTLS.from_json(args.client_tls)
        for fd in args.tls_fd:
            await front.listen_socket(socket.socket(fileno=fd), tls=tls)
    link.hello(str(args.slot))
    log.debug("front-end serving", slot=args.slot, pid=os.getpid())
    await stop.wait()
    front.stop_accepting()
    await grpc_server.stop(0 if core_lost else SHUTDOWN_GRACE_SECONDS)
    await front.close()
    link.close()
    await watch_sync.stop()
    if replica is not None:
        replica.close()
    return 1 if core_lost else 0


def _link_delay(knobs: EnvKnobs, slot: int) -> InboundDelay | None:
    """A slow core link when a test asks for one (``ETCDPY_CORE_LINK_DELAY_MS``)."""
    if not knobs.core_link_delay_ms:
        return None
    from etcdpy.testing.faults import link_delay  # test-only: never loaded in production

    return link_delay(knobs, slot)


async def _start_replica(
    args: argparse.Namespace, link: CoreLinkClient, watch_sync: WatchSync
) -> FrontendReplica:
    """Subscribe to the core's feed, then restore from the file: nothing committed between the
    two is missed (etcdpy.frontend.replica)."""
    # A JWT is verified here (public key only); simple tokens are the core's to check.
    tokens = verifier(args.auth_token, 0, time.monotonic, time.time)
    replica = FrontendReplica(args.db_path, args.db_map_size, watch_sync.wake, tokens)
    link.on_feed = replica.on_feed
    code, subscribed = await link.call(SUBSCRIBE, b"")
    if code:
        raise RuntimeError(f"the core refused the feed: {subscribed.decode()}")
    replica.start(subscribed)
    return replica


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _die_with_parent(args.core_pid)
    configure_logging(args.log_level, tuple(args.log_outputs.split(",")))
    knobs = EnvKnobs.from_environ(os.environ)  # inherited from the core process
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(serve(args, knobs))
    return uvloop.run(serve(args, knobs))


if __name__ == "__main__":
    sys.exit(main())
