"""The example controllers of ``etcdpy k8s controller NAME``: a ReplicaSet controller
(``replicaset.py``) and the node-lifecycle controller (``node_lifecycle.py``, its rules in
``node_health.py``), each a ``ControllerCommand`` in ``CONTROLLERS``; ``command.py`` has their
shared flags, metrics endpoint and leader election; ``fake_kubelet.py`` plays a node's kubelet so
both can be watched at work. Built on the object store and the informers of ``etcdpy.k8s``.

May import: the base.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from etcdpy.k8s.controllers.node_lifecycle import NodeLifecycleCommand
from etcdpy.k8s.controllers.replicaset import ReplicaSetCommand
from etcdpy.k8s.store import ObjectStore


class ControllerCommand(Protocol):
    """One controller as a command: its flags, then run until SIGINT/SIGTERM (exit code)."""

    summary: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, store: ObjectStore) -> int: ...


CONTROLLERS: dict[str, ControllerCommand] = {
    "replicaset": ReplicaSetCommand(),
    "node-lifecycle": NodeLifecycleCommand(),
}
