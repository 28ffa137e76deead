"""The command line of ``python -m etcdpy.k8s.controllers``: ``NAME`` is a controller of
``CONTROLLERS`` or ``fake-kubelet``; the connection flags are ``etcdpy k8s``'s (ctl.py)."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

from etcdpy.k8s import errors
from etcdpy.k8s.controllers import CONTROLLERS
from etcdpy.k8s.controllers.command import add_log_level, positive_seconds, stop_on_signals
from etcdpy.k8s.controllers.fake_kubelet import FakeKubelet
from etcdpy.k8s.ctl import add_connection_flags, store_from_args
from etcdpy.k8s.store import ObjectStore
from etcdpy.observability.logging import configure_logging


class FakeKubeletCommand:
    summary = "play a node's kubelet: lease heartbeats, Ready, run the pods bound to it"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--node", default="node-1", help="the node's name (default node-1)")
        parser.add_argument(
            "--interval", type=positive_seconds, default=2.0, metavar="SECONDS",
            help="seconds between heartbeats (default 2)",
        )  # fmt: skip
        parser.add_argument(
            "--no-schedule", action="store_true", help="do not bind unbound pods to this node"
        )
        add_log_level(parser)

    def run(self, args: argparse.Namespace, store: ObjectStore) -> int:
        configure_logging(args.log_level)
        stop = threading.Event()
        with stop_on_signals(stop):
            FakeKubelet(store, args.node, schedule=not args.no_schedule).run(stop, args.interval)
        return 0


def main(argv: Sequence[str]) -> int:
    commands = {**CONTROLLERS, "fake-kubelet": FakeKubeletCommand()}
    parser = argparse.ArgumentParser(prog="python -m etcdpy.k8s.controllers")
    subparsers = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, command in commands.items():
        sub = subparsers.add_parser(name, help=command.summary, description=command.summary)
        add_connection_flags(sub)
        command.add_arguments(sub)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    store = store_from_args(args)
    try:
        return commands[args.name].run(args, store)
    except errors.StatusError as exc:
        print(f"{args.name}: {exc}")
        return 1
    finally:
        store.close()
