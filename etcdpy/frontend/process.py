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
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence

import grpc
import structlog

from etcdpy.api.grpc_options import generic_handlers
from etcdpy.corelink.client import CoreLinkClient
from etcdpy.frontend.handlers import build_handlers
from etcdpy.observability.logging import configure_logging
from etcdpy.server.client_front import ClientFront, PrivateSocket

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1
SHUTDOWN_GRACE_SECONDS = 5.0
# Sockets in the core's private directory (etcdpy.server.frontends makes them).
CORE_HTTP_SOCKET = "front.sock"
CORE_LINK_SOCKET = "link.sock"


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
    parser.add_argument("--grpc-options", required=True, help="the core's, as JSON")
    parser.add_argument("--max-body-bytes", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-outputs", default="default")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
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
    link = await CoreLinkClient.connect(os.path.join(core_dir, CORE_LINK_SOCKET), on_core_lost)
    options = [(str(name), int(value)) for name, value in json.loads(args.grpc_options)]
    grpc_server = grpc.aio.server(options=options)
    grpc_server.add_generic_rpc_handlers(generic_handlers(build_handlers(link)))
    private = PrivateSocket()
    grpc_server.add_insecure_port(private.grpc_address)
    await grpc_server.start()
    front = ClientFront(
        None,
        private.path,
        args.max_body_bytes,
        http_upstream_path=os.path.join(core_dir, CORE_HTTP_SOCKET),
    )
    for fd in args.fd:
        await front.listen_socket(socket.socket(fileno=fd))
    link.hello(str(args.slot))
    log.debug("front-end serving", slot=args.slot, pid=os.getpid())
    await stop.wait()
    front.stop_accepting()
    if not core_lost:
        await grpc_server.stop(SHUTDOWN_GRACE_SECONDS)
    else:
        await grpc_server.stop(0)
    await front.close()
    link.close()
    private.cleanup()
    return 1 if core_lost else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _die_with_parent(args.core_pid)
    configure_logging(args.log_level, tuple(args.log_outputs.split(",")))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(serve(args))
    return uvloop.run(serve(args))
