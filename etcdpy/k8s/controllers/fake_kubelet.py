"""A pretend kubelet, to watch the example controllers work without a cluster: it registers a
Node, renews the node's heartbeat Lease (kube-node-lease/<node>, as the kubelet's node lease
controller does every 10 s), posts Ready=True, binds pods that no node runs yet to itself (a
one-node scheduler), marks its pods Running and Ready, and finishes the graceful deletion of
its pods. Stop it and the node falls silent: the node-lifecycle controller notices.

    python -m etcdpy.k8s.controllers.fake_kubelet --endpoints 127.0.0.1:2379 --node node-1
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from etcdpy.k8s import errors
from etcdpy.k8s.controllers.clock import Clock, format_micro_time, format_time, utc_now
from etcdpy.k8s.controllers.node_health import NODE_LEASE_NAMESPACE
from etcdpy.k8s.controllers.podutil import (
    Obj,
    as_dict,
    being_deleted,
    condition,
    is_ready,
    metadata,
    mutable,
    set_condition,
    spec,
    status,
)
from etcdpy.k8s.store import ObjectStore
from etcdpy.k8s.types import KubeObject
from etcdpy.observability.logging import get_logger

LEASE_DURATION_S = 40  # the kubelet's nodeLeaseDurationSeconds
_HEALTHY = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)  # fmt: skip

log = get_logger("etcdpy.k8s.controllers.fake_kubelet")


class _Skip(Exception):
    """Raised inside a guaranteed update to leave the object as it is."""


class FakeKubelet:
    def __init__(
        self,
        store: ObjectStore,
        node_name: str,
        *,
        clock: Clock = utc_now,
        schedule: bool = True,
    ) -> None:
        self._store = store
        self.node_name = node_name
        self._clock = clock
        self._schedule = schedule

    # -- the node and its lease ---------------------------------------------------------------

    def _conditions(self) -> list[dict[str, Any]]:
        """The conditions a healthy kubelet posts, with its words."""
        heartbeat = format_time(self._clock())
        return [
            {"type": kind, "status": state, "reason": reason, "message": message,
             "lastHeartbeatTime": heartbeat}
            for kind, state, reason, message in _HEALTHY
        ]  # fmt: skip

    def register(self) -> None:
        """Create the Node (Ready) and its Lease unless they exist."""
        now = self._clock()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {"kubernetes.io/hostname": self.node_name},
            },
            "status": {
                "conditions": [
                    {**c, "lastTransitionTime": format_time(now)} for c in self._conditions()
                ]
            },
        }
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": NODE_LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_DURATION_S,
                "renewTime": format_micro_time(now),
            },
        }
        for obj in (node, lease):
            with contextlib.suppress(errors.AlreadyExists):
                self._store.create(obj)

    def renew_lease(self) -> None:
        def renew(current: KubeObject) -> KubeObject:
            lease = mutable(current)
            lease.setdefault("spec", {})["renewTime"] = format_micro_time(self._clock())
            return lease

        self._store.guaranteed_update(
            "leases.coordination.k8s.io", self.node_name, renew, namespace=NODE_LEASE_NAMESPACE
        )

    def post_ready(self) -> None:
        """Post healthy conditions with a fresh heartbeat (the kubelet's node status update)."""

        def ready(current: KubeObject) -> KubeObject:
            node = mutable(current)
            for posted in self._conditions():
                set_condition(node, posted, self._clock())
            return node

        self._store.guaranteed_update("nodes", self.node_name, ready)

    def heartbeat(self) -> None:
        """Renew the lease; post status too when the node is not Ready=True."""
        self.renew_lease()
        node = as_dict(self._store.get("nodes", self.node_name))
        if (condition(node, "Ready") or {}).get("status") != "True":
            self.post_ready()

    # -- pods ---------------------------------------------------------------------------------

    def sync_pods(self) -> int:
        """Bind unbound pods (if scheduling), run and ready ours, finish our deletions; returns
        how many pods were written."""
        writes = 0
        for pod in (as_dict(p) for p in self._store.list("pods").items):
            node = spec(pod).get("nodeName")
            if being_deleted(pod) and node == self.node_name:
                writes += self._finish_deletion(pod)
            elif not node and self._schedule and not being_deleted(pod):
                writes += self._update_pod(pod, self._bind_and_run)
            elif node == self.node_name and not (
                status(pod).get("phase") == "Running" and is_ready(pod)
            ):
                writes += self._update_pod(pod, self._run)
        return writes

    def _bind_and_run(self, pod: Obj) -> None:
        if spec(pod).get("nodeName"):
            raise _Skip  # someone else bound it meanwhile
        pod.setdefault("spec", {})["nodeName"] = self.node_name
        self._run(pod)

    def _run(self, pod: Obj) -> None:
        if spec(pod).get("nodeName") != self.node_name or being_deleted(pod):
            raise _Skip
        now = self._clock()
        pod_status = pod.setdefault("status", {})
        pod_status["phase"] = "Running"
        pod_status.setdefault("startTime", format_time(now))
        for kind in ("Initialized", "ContainersReady", "Ready", "PodScheduled"):
            set_condition(pod, {"type": kind, "status": "True"}, now)
        pod_status["containerStatuses"] = [
            {
                "name": container.get("name", ""),
                "image": container.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": pod_status["startTime"]}},
            }
            for container in spec(pod).get("containers") or []
            if isinstance(container, dict)
        ]

    def _update_pod(self, pod: Obj, change: Any) -> int:
        def apply(current: KubeObject) -> KubeObject:
            updated = mutable(current)
            change(updated)
            return updated

        try:
            self._store.guaranteed_update(
                "pods",
                str(metadata(pod).get("name")),
                apply,
                namespace=str(metadata(pod).get("namespace")),
            )
        except (_Skip, errors.NotFound, errors.Conflict):
            return 0
        return 1

    def _finish_deletion(self, pod: Obj) -> int:
        try:
            self._store.delete(
                "pods",
                str(metadata(pod).get("name")),
                namespace=str(metadata(pod).get("namespace")),
                grace_period_seconds=0,
            )
        except errors.NotFound:
            return 0
        return 1

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        self.register()
        log.info("fake kubelet started", node=self.node_name)
        while not stop.is_set():
            try:
                self.heartbeat()
                self.sync_pods()
            except errors.StatusError as exc:
                log.warning("fake kubelet sync failed", node=self.node_name, error=str(exc))
            stop.wait(interval)
