"""The node-lifecycle controller (kube-controller-manager's nodelifecycle with its taint
manager): it watches Nodes, their heartbeat Leases (coordination.k8s.io/v1, namespace
kube-node-lease, one per node, spec.renewTime) and Pods. Every monitor period, and on every
change, each node is looked at (node_health.py has the rules):

- no heartbeat for the grace period: the node's conditions become Unknown, and the node is
  tainted `node.kubernetes.io/unreachable:NoExecute`, in one guaranteed update (which gives up
  if the kubelet's heartbeat arrived meanwhile); its pods' Ready conditions become False;
- pods on a NoExecute-tainted node are deleted when their toleration runs out (300 s by
  default), after a DisruptionTarget condition records why;
- when the kubelet posts Ready=True again, the taint comes off.

Simplified: no zones' disruption modes or eviction rate limits (every node is tainted at once),
no DaemonSet exemption; pods are deleted as the store deletes them (graceful deletion is the
store's and the kubelet's business).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from etcdpy.k8s import errors
from etcdpy.k8s.cache import DeletedFinalStateUnknown
from etcdpy.k8s.controller import Controller
from etcdpy.k8s.controllers.clock import Clock, utc_now
from etcdpy.k8s.controllers.command import (
    CommonOptions,
    add_common_arguments,
    positive_seconds,
    run_elected,
)
from etcdpy.k8s.controllers.node_health import (
    DEFAULT_GRACE_S,
    DEFAULT_MONITOR_PERIOD_S,
    DEFAULT_STARTUP_GRACE_S,
    DEFAULT_TOLERATION_S,
    NO_EXECUTE,
    NODE_LEASE_NAMESPACE,
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    HealthTracker,
    disruption_condition,
    eviction_deadline,
    mark_unknown,
    node_taints,
    pod_node,
    pod_ready_false,
    ready_status,
    reconcile_taints,
)
from etcdpy.k8s.controllers.podutil import (
    Obj,
    as_dict,
    being_deleted,
    condition,
    is_active,
    labels,
    metadata,
    mutable,
    set_condition,
    spec,
)
from etcdpy.k8s.informer import Informer
from etcdpy.k8s.store import ObjectStore
from etcdpy.k8s.types import KubeObject, Preconditions
from etcdpy.observability.logging import get_logger

ZONE_LABEL = "topology.kubernetes.io/zone"

log = get_logger("etcdpy.k8s.controllers.node_lifecycle")


class _Skip(Exception):
    """Raised inside a guaranteed update to leave the object as it is."""


class NodeLifecycleController:
    def __init__(
        self,
        store: ObjectStore,
        *,
        workers: int = 4,
        clock: Clock = utc_now,
        registry: CollectorRegistry | None = None,
        grace_period: float = DEFAULT_GRACE_S,
        startup_grace_period: float = DEFAULT_STARTUP_GRACE_S,
        monitor_period: float = DEFAULT_MONITOR_PERIOD_S,
        not_ready_toleration: float = DEFAULT_TOLERATION_S,
        unreachable_toleration: float = DEFAULT_TOLERATION_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monitor_period = monitor_period
        self._defaults: Mapping[str, float] = {
            TAINT_NOT_READY: not_ready_toleration,
            TAINT_UNREACHABLE: unreachable_toleration,
        }
        self.health = HealthTracker(clock, grace_period, startup_grace_period)
        registry = registry if registry is not None else CollectorRegistry()
        self.evictions = Counter(
            "node_collector_evictions",
            "Nodes tainted NoExecute by the node-lifecycle controller, by zone.",
            ["zone"],
            registry=registry,
        )
        self.pod_deletions = Counter(
            "taint_eviction_controller_pod_deletions",
            "Pods deleted because of NoExecute taints.",
            registry=registry,
        )
        self.nodes = Informer(store.lister_watcher("nodes"), name="nodes")
        self.leases = Informer(
            store.lister_watcher("leases.coordination.k8s.io", namespace=NODE_LEASE_NAMESPACE),
            name="node-leases",
        )
        self.pods = Informer(
            store.lister_watcher("pods"), indexers={"node": self._pod_node}, name="pods"
        )
        self.controller = Controller(
            "node_lifecycle_controller", self.sync, workers=workers, registry=registry
        )
        self.nodes.add_event_handlers(
            on_add=self._enqueue_node,
            on_update=lambda old, new: self._enqueue_node(new),
            on_delete=self._node_deleted,
        )
        self.leases.add_event_handlers(
            on_add=self._enqueue_node, on_update=lambda old, new: self._enqueue_node(new)
        )
        self.pods.add_event_handlers(
            on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new)
        )

    @staticmethod
    def _pod_node(obj: KubeObject) -> list[str]:
        return pod_node(as_dict(obj))

    # -- running ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, sync_timeout: float = 60.0) -> None:
        informers = (self.nodes, self.leases, self.pods)
        for informer in informers:
            informer.start()
        monitor = threading.Thread(
            target=self._monitor, args=(stop,), name="node-monitor", daemon=True
        )
        try:
            if not all(informer.wait_for_sync(sync_timeout) for informer in informers):
                raise errors.ServiceUnavailable("node-lifecycle: informers did not sync in time")
            log.info("node-lifecycle controller started")
            monitor.start()
            self.controller.run(stop)
        finally:
            stop.set()
            if monitor.is_alive():
                monitor.join(timeout=5)
            for informer in informers:
                informer.stop()

    def _monitor(self, stop: threading.Event) -> None:
        """monitorNodeHealth's period: look at every node even when nothing changes, since
        silence is what this controller watches for."""
        while not stop.wait(self._monitor_period):
            for key in self.nodes.indexer.list_keys():
                self.controller.enqueue(key)

    # -- event handlers -----------------------------------------------------------------------

    def _enqueue_node(self, obj: KubeObject) -> None:
        self.controller.enqueue(str(metadata(as_dict(obj)).get("name", "")))

    def _node_deleted(self, obj: KubeObject | DeletedFinalStateUnknown) -> None:
        name = (
            obj.key
            if isinstance(obj, DeletedFinalStateUnknown)
            else str(metadata(as_dict(obj)).get("name", ""))
        )
        self.health.forget(name)

    def _pod_changed(self, obj: KubeObject) -> None:
        """A pod (re)bound to a tainted node must be looked at for eviction."""
        for node_name in pod_node(as_dict(obj)):
            cached = self.nodes.indexer.get_by_key(node_name)
            if cached is not None and any(
                t.get("effect") == NO_EXECUTE for t in node_taints(as_dict(cached))
            ):
                self.controller.enqueue(node_name)

    # -- the sync -----------------------------------------------------------------------------

    def sync(self, name: str) -> float | None:
        """One node's look; returns seconds until it must be looked at again."""
        cached = self.nodes.indexer.get_by_key(name)
        if cached is None:
            self.health.forget(name)
            return None
        node = as_dict(cached)
        lease = self.leases.indexer.get_by_key(f"{NODE_LEASE_NAMESPACE}/{name}")
        health = self.health.observe(node, as_dict(lease) if lease is not None else None)
        was_ready = ready_status(node) == "True"
        node = self._update_node(node, health.stale)
        now = self._clock()
        pods = [as_dict(p) for p in self.pods.indexer.by_index("node", name)]
        if ready_status(node) != "True" and (was_ready or health.stale):
            self._mark_pods_not_ready(pods, now)
        next_look = self._evict(node, pods, now)
        if not health.stale:
            next_look = min(next_look, health.seconds_left + 0.05)
        return next_look if next_look < float("inf") else None

    def _update_node(self, node: Obj, stale: bool) -> Obj:
        """One guaranteed update: Unknown conditions if stale, then the lifecycle taints."""
        seen_heartbeat = (condition(node, "Ready") or {}).get("lastHeartbeatTime")
        added: list[str] = []

        def change(current: KubeObject) -> KubeObject:
            updated = mutable(current)
            now = self._clock()
            changed = False
            if stale:
                heartbeat = (condition(updated, "Ready") or {}).get("lastHeartbeatTime")
                if heartbeat != seen_heartbeat:
                    raise _Skip  # the kubelet posted meanwhile: look again next time
                changed = mark_unknown(updated, now)
            before = node_taints(updated)
            taint = reconcile_taints(updated, now)
            added[:] = [taint] if taint else []
            if not changed and node_taints(updated) == before:
                raise _Skip
            return updated

        try:
            written = as_dict(
                self._store.guaranteed_update(
                    "nodes",
                    str(metadata(node).get("name")),
                    change,
                    preconditions=Preconditions(uid=str(metadata(node).get("uid"))),
                )
            )
        except (_Skip, errors.NotFound):
            return node
        if stale:
            log.info("node stopped posting status", node=metadata(node).get("name"))
        for taint in added:
            self.evictions.labels(zone=labels(node).get(ZONE_LABEL, "")).inc()
            log.info("node tainted", node=metadata(node).get("name"), taint=taint)
        return written

    def _mark_pods_not_ready(self, pods: list[Obj], now: datetime) -> None:
        for pod in pods:
            if pod_ready_false(pod) is None or being_deleted(pod):
                continue

            def change(current: KubeObject) -> KubeObject:
                updated = mutable(current)
                new = pod_ready_false(updated)
                if new is None or not set_condition(updated, new, now):
                    raise _Skip
                return updated

            self._update_pod(pod, change)

    def _evict(self, node: Obj, pods: list[Obj], now: datetime) -> float:
        """Delete the pods whose tolerations ran out; seconds until the next one is due."""
        taints = [t for t in node_taints(node) if t.get("effect") == NO_EXECUTE]
        if not taints:
            return float("inf")
        soonest = float("inf")
        for pod in pods:
            if not is_active(pod):
                continue
            deadline = eviction_deadline(pod, taints, self._defaults, now)
            if deadline is None:
                continue
            wait = (deadline - now).total_seconds()
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            self._delete_pod(pod, now)
        return soonest

    def _delete_pod(self, pod: Obj, now: datetime) -> None:
        def mark(current: KubeObject) -> KubeObject:
            updated = mutable(current)
            if not set_condition(updated, disruption_condition(now), now):
                raise _Skip
            return updated

        self._update_pod(pod, mark)
        try:
            self._store.delete(
                "pods",
                str(metadata(pod).get("name")),
                namespace=str(metadata(pod).get("namespace")),
                preconditions=Preconditions(uid=str(metadata(pod).get("uid"))),
            )
        except errors.NotFound:
            return
        self.pod_deletions.inc()
        log.info(
            "pod evicted",
            pod=f"{metadata(pod).get('namespace')}/{metadata(pod).get('name')}",
            node=spec(pod).get("nodeName"),
        )

    def _update_pod(self, pod: Obj, change: Any) -> None:
        try:
            self._store.guaranteed_update(
                "pods",
                str(metadata(pod).get("name")),
                change,
                namespace=str(metadata(pod).get("namespace")),
                preconditions=Preconditions(uid=str(metadata(pod).get("uid"))),
            )
        except (_Skip, errors.NotFound, errors.Conflict):
            return


class NodeLifecycleCommand:
    """`etcdpy k8s controller node-lifecycle`."""

    summary = "mark silent nodes Unknown, taint them NoExecute, evict their pods, untaint"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_common_arguments(parser, default_workers=4)
        for flag, default, what in (
            ("--node-monitor-grace-period", DEFAULT_GRACE_S, "silence before Ready=Unknown"),
            ("--node-startup-grace-period", DEFAULT_STARTUP_GRACE_S, "the same, for a node "
             "that never posted Ready"),
            ("--node-monitor-period", DEFAULT_MONITOR_PERIOD_S,
             "how often every node is looked at"),
            ("--default-not-ready-toleration-seconds", DEFAULT_TOLERATION_S,
             "eviction delay for pods without a not-ready toleration"),
            ("--default-unreachable-toleration-seconds", DEFAULT_TOLERATION_S,
             "eviction delay for pods without an unreachable toleration"),
        ):  # fmt: skip
            parser.add_argument(
                flag, type=positive_seconds, default=default, metavar="SECONDS",
                help=f"{what} (default %(default)s)",
            )  # fmt: skip

    def run(self, args: argparse.Namespace, store: ObjectStore) -> int:
        options = CommonOptions.from_args("node-lifecycle", args, store)

        def start(stop: threading.Event) -> None:
            NodeLifecycleController(
                store,
                workers=options.workers,
                registry=options.registry,
                grace_period=args.node_monitor_grace_period,
                startup_grace_period=args.node_startup_grace_period,
                monitor_period=args.node_monitor_period,
                not_ready_toleration=args.default_not_ready_toleration_seconds,
                unreachable_toleration=args.default_unreachable_toleration_seconds,
            ).run(stop)

        return run_elected(options, store, start)
