"""What every example controller's command shares: the flags (--workers, --leader-elect,
--leader-elect-lease-duration, --metrics-addr), a Prometheus endpoint, and running until SIGINT
or SIGTERM, as leader only when leader election is on (like kube-controller-manager, whose
--leader-elect is on by default).
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

from etcdpy.k8s.leader_election import LeaderElection
from etcdpy.k8s.store import ObjectStore
from etcdpy.observability.logging import LEVELS, configure_logging, get_logger

EXIT_OK, EXIT_FAILED, EXIT_LOST_LEADERSHIP = 0, 1, 1
DEFAULT_LEASE_DURATION_S = 15  # client-go's LeaseDuration in kube-controller-manager

log = get_logger("etcdpy.k8s.controllers")


def host_port(text: str) -> tuple[str, int]:
    """argparse type of --metrics-addr: HOST:PORT (port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        choices=sorted(LEVELS),
        default="info",
        help="etcd's log levels (default %(default)s); logs go to stderr",
    )


def add_common_arguments(parser: argparse.ArgumentParser, *, default_workers: int) -> None:
    add_log_level(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers,
        help="syncs run at once (default %(default)s)",
    )
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run only while leader of an etcd election, so replicas can stand by (default on)",
    )
    parser.add_argument(
        "--leader-elect-lease-duration",
        type=int,
        default=DEFAULT_LEASE_DURATION_S,
        help="TTL in seconds of the leader's etcd lease (default %(default)s)",
    )
    parser.add_argument(
        "--leader-elect-name",
        default="",
        help="the election's etcd key prefix (default: etcdpy-k8s-controller<root>/<name>)",
    )
    parser.add_argument(
        "--metrics-addr",
        type=host_port,
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (default: off)",
    )


@dataclass(frozen=True)
class CommonOptions:
    name: str
    workers: int
    leader_elect: bool
    lease_duration: int
    election: str
    metrics_addr: tuple[str, int] | None
    registry: CollectorRegistry
    log_level: str = "info"

    @classmethod
    def from_args(cls, name: str, args: argparse.Namespace, store: ObjectStore) -> CommonOptions:
        return cls(
            name=name,
            workers=max(1, int(args.workers)),
            leader_elect=bool(args.leader_elect),
            lease_duration=max(1, int(args.leader_elect_lease_duration)),
            election=args.leader_elect_name or f"etcdpy-k8s-controller{store.root}/{name}",
            metrics_addr=args.metrics_addr,
            registry=CollectorRegistry(),
            log_level=str(args.log_level),
        )


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (main thread only; elsewhere the caller stops)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def metrics_endpoint(options: CommonOptions) -> Iterator[None]:
    if options.metrics_addr is None:
        yield
        return
    host, port = options.metrics_addr
    server, thread = start_http_server(port, addr=host, registry=options.registry)
    log.info("serving metrics", address=f"{host}:{server.server_port}")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_elected(
    options: CommonOptions,
    store: ObjectStore,
    start: Callable[[threading.Event], None],
    stop: threading.Event | None = None,
) -> int:
    """Run ``start(stop_event)`` until a signal (or ``stop``); with leader election, only while
    leading. Losing leadership ends the command with exit code 1, as kube-controller-manager
    exits, so that a supervisor restarts it as a candidate; so does a controller that fails
    (it resigns first: a leader that does nothing would hold the others back)."""
    stop = stop or threading.Event()
    configure_logging(options.log_level)
    with stop_on_signals(stop), metrics_endpoint(options):
        if not options.leader_elect:
            start(stop)
            return EXIT_OK
        failures: list[Exception] = []

        def lead(lost: threading.Event) -> None:
            try:
                start(lost)
            except Exception as exc:
                log.error("controller failed", controller=options.name, error=str(exc))
                failures.append(exc)
            finally:
                if not lost.is_set():
                    failures.append(RuntimeError("the controller ended while leading"))
                    stop.set()  # resign and exit

        identity = f"{socket.gethostname()}_{uuid.uuid4()}"
        election = LeaderElection(
            store.client, options.election, identity, ttl=options.lease_duration
        )
        log.info("waiting to lead", election=options.election, identity=identity)
        election.run(lead, stop)
        if failures:
            return EXIT_FAILED
        if stop.is_set():
            return EXIT_OK
        log.error("leader election lost", election=options.election, identity=identity)
        return EXIT_LOST_LEADERSHIP
