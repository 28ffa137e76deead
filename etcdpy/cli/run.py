"""Runs one etcdpy member until SIGTERM/SIGINT: stop accepting, finish in-flight, flush, exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import structlog

from etcdpy.config import ConfigError, EnvKnobs, ServerConfig
from etcdpy.observability.startup import config_fields

if TYPE_CHECKING:
    from etcdpy.peer.transport import PeerFaults

log = structlog.get_logger(__name__)

# How long in-flight RPCs may run after a stop signal before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 5.0


def run(config: ServerConfig) -> int:
    # The member forks only to exec front-end processes: gRPC's fork handlers are not needed,
    # and with them gRPC writes non-JSON lines into the log at each fork. Read when gRPC loads.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    knobs = EnvKnobs.from_environ(os.environ)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(_serve(config, knobs))
    return uvloop.run(_serve(config, knobs))


async def _serve(config: ServerConfig, knobs: EnvKnobs) -> int:
    from etcdpy.api.grpc_server import build_method_handlers
    from etcdpy.clientport.listeners import ClientListeners
    from etcdpy.errors import EtcdError
    from etcdpy.server.cluster_runtime import JoinError
    from etcdpy.server.etcd_server import EtcdServer
    from etcdpy.server.ops.corrupt_check import InitialCorruption

    log.info("starting an etcd server", **config_fields(config))
    server = EtcdServer(config, knobs, _peer_faults(knobs))
    try:
        await server.start()
    except (JoinError, EtcdError, OSError, ConfigError) as exc:
        # joining a cluster failed, a port in use, --auth-token's key files (etcd: etcdmain)
        log.error("cannot start member", error=str(exc))
        return 1
    except InitialCorruption as exc:
        # etcd's two lines (zap), and its default capnslog text for harnesses that grep it.
        log.warning("failed to start etcd", error=str(exc))
        log.critical("discovery failed", error=str(exc), capnslog=f"etcdmain: {exc}")
        return 1
    handlers = build_method_handlers(server)
    # gRPC and HTTP share each client URL (etcdpy.clientport.sniffer), served by this process
    # or by front-end processes (--frontend-processes, etcdpy.frontend).
    listeners = ClientListeners(server, handlers, knobs.client_front)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exit_code = 0

    def on_fatal(exc: BaseException) -> None:
        nonlocal exit_code
        exit_code = 1
        stop.set()

    server.raft.on_fatal = on_fatal
    server.cluster_runtime.on_removed_stop = stop.set  # a removed member stops itself
    if not await listeners.bind():
        await listeners.stop(0)
        await server.stop()
        return 1
    # As etcd: clients are served once this member's attributes are published through the
    # log; until then their connections wait in the listeners' backlog.
    if not await _first(server.cluster_runtime.published, stop) or not await listeners.serve():
        await listeners.stop(0)
        await server.stop()
        return exit_code if stop.is_set() else 1
    from etcdpy.raft.types import StateType
    from etcdpy.server.ops.corrupt_check import CheckedMember, CorruptionChecker

    checked = CheckedMember(
        member_id=server.member_id,
        is_leader=lambda: server.role == StateType.LEADER,
        hash_kv=server.maintenance.hash_kv,
        peer_client_urls=lambda: [
            (m.id, list(m.client_urls))
            for m in server.cluster.sorted_members()
            if m.id != server.member_id
        ],
        confirm_leader=server.linearizable_read,
        alarm=server.maintenance.alarm,
    )
    checker = CorruptionChecker(checked, config.experimental_corrupt_check_time)
    checker.start()
    log.info(
        "ready to serve client requests",
        listen_client_urls=[str(u) for u in config.listen_client_urls],
    )

    await stop.wait()
    log.info("stopping", grace_seconds=SHUTDOWN_GRACE_SECONDS)
    await checker.stop()
    await listeners.stop(SHUTDOWN_GRACE_SECONDS)
    await server.stop()
    log.info("stopped")
    return exit_code


def _peer_faults(knobs: EnvKnobs) -> PeerFaults | None:
    """A test's network partition (``ETCDPY_PEER_FAULTS_FILE``), if it asks for one."""
    if not knobs.peer_faults_file:
        return None
    from etcdpy.testing.faults import peer_faults  # test-only: never loaded in production

    return peer_faults(knobs)


async def _first(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Waits for ``wanted``; False if ``stop`` came first."""
    waits = [asyncio.ensure_future(e.wait()) for e in (wanted, stop)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return wanted.is_set() and not stop.is_set()
