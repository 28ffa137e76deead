"""The node-lifecycle controller's decisions, as pure functions of objects and time (facts:
pkg/controller/nodelifecycle and pkg/controller/tainteviction):

- a node is stale when neither its Ready condition's lastHeartbeatTime nor its Lease's
  renewTime has changed for the grace period, measured on this controller's clock from when it
  saw the last change (never by comparing the kubelet's timestamps with our clock, so clock
  skew between machines does not matter); a node that never posted a Ready condition gets the
  longer startup grace period;
- a stale node's Ready, MemoryPressure, DiskPressure and PIDPressure conditions become Unknown
  ("NodeStatusUnknown", "Kubelet stopped posting node status."; a condition never posted gets
  "NodeStatusNeverUpdated", "Kubelet never posted node status.");
- Ready Unknown taints the node `node.kubernetes.io/unreachable:NoExecute`, Ready False
  `node.kubernetes.io/not-ready:NoExecute`, Ready True removes both;
- a pod on a node with NoExecute taints is deleted when it does not tolerate one of them, else
  after the shortest tolerationSeconds of the tolerations it uses, counted from the taint's
  timeAdded; a pod with no toleration at all for not-ready/unreachable gets the API server's
  default (DefaultTolerationSeconds admission: 300 s), as it would have been admitted with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from etcdpy.k8s.controllers.clock import Clock, format_time, parse_time
from etcdpy.k8s.controllers.podutil import Obj, condition, metadata, spec

TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
NO_EXECUTE = "NoExecute"
NODE_LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_GRACE_S = 40.0  # --node-monitor-grace-period
DEFAULT_STARTUP_GRACE_S = 60.0  # --node-startup-grace-period
DEFAULT_MONITOR_PERIOD_S = 5.0  # --node-monitor-period
DEFAULT_TOLERATION_S = 300.0  # --default-{not-ready,unreachable}-toleration-seconds
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
_TAINT_FOR_READY = {"Unknown": TAINT_UNREACHABLE, "False": TAINT_NOT_READY}


@dataclass
class _Observed:
    probe: datetime  # when this controller last saw a heartbeat of any kind
    heartbeat: object  # the Ready condition's lastHeartbeatTime as last seen
    renew: datetime | None  # the Lease's renewTime as last seen


@dataclass(frozen=True)
class Health:
    stale: bool
    grace: float
    seconds_left: float  # until stale (0 when stale)


class HealthTracker:
    """Per node, when a heartbeat was last seen (nodeHealthMap). Used from one thread at a
    time per node (the work queue never hands one key to two workers)."""

    def __init__(self, clock: Clock, grace: float, startup_grace: float) -> None:
        self._clock = clock
        self._grace = grace
        self._startup_grace = startup_grace
        self._seen: dict[str, _Observed] = {}

    def forget(self, node_name: str) -> None:
        self._seen.pop(node_name, None)

    def observe(self, node: Obj, lease: Obj | None) -> Health:
        now = self._clock()
        name = str(metadata(node).get("name", ""))
        ready = condition(node, "Ready")
        heartbeat = ready.get("lastHeartbeatTime") if ready else None
        grace = self._grace if ready is not None else self._startup_grace
        seen = self._seen.get(name)
        if seen is None:
            created = parse_time(metadata(node).get("creationTimestamp"))
            probe = created if ready is None and created is not None else now
            seen = self._seen[name] = _Observed(probe=probe, heartbeat=heartbeat, renew=None)
        elif heartbeat != seen.heartbeat:
            seen.probe, seen.heartbeat = now, heartbeat
        renew = parse_time(spec(lease).get("renewTime")) if lease is not None else None
        if renew is not None and (seen.renew is None or seen.renew < renew):
            seen.probe, seen.renew = now, renew
        left = (seen.probe + timedelta(seconds=grace) - now).total_seconds()
        return Health(stale=left < 0, grace=grace, seconds_left=max(left, 0.0))


def mark_unknown(node: Obj, now: datetime) -> bool:
    """Set the monitored conditions to Unknown; True when the node changed."""
    conditions: list[dict[str, Any]] = node.setdefault("status", {}).setdefault("conditions", [])
    changed = False
    stamp = format_time(now)
    for kind in MONITORED_CONDITIONS:
        current = next((c for c in conditions if c.get("type") == kind), None)
        if current is None:
            conditions.append(
                {
                    "type": kind,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": metadata(node).get("creationTimestamp"),
                    "lastTransitionTime": stamp,
                }
            )
            changed = True
        elif current.get("status") != "Unknown":
            current["status"] = "Unknown"
            current["reason"] = "NodeStatusUnknown"
            current["message"] = "Kubelet stopped posting node status."
            current["lastTransitionTime"] = stamp
            changed = True
    return changed


def ready_status(node: Obj) -> str | None:
    ready = condition(node, "Ready")
    return str(ready.get("status")) if ready else None


def node_taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in spec(node).get("taints") or [] if isinstance(t, dict)]


def wanted_taint(node: Obj) -> str | None:
    """The lifecycle taint the node's Ready condition calls for (None: none of them)."""
    return _TAINT_FOR_READY.get(ready_status(node) or "")


def reconcile_taints(node: Obj, now: datetime) -> str | None:
    """Put on the taint Ready calls for and take off the other lifecycle taint (the swap of
    SwapNodeControllerTaint); returns the taint added, if one was. A node without a Ready
    condition keeps its taints."""
    if ready_status(node) is None:
        return None
    wanted = wanted_taint(node)
    ours = (TAINT_UNREACHABLE, TAINT_NOT_READY)
    taints = node_taints(node)
    kept = [t for t in taints if t.get("key") not in ours or t.get("effect") != NO_EXECUTE]
    existing = next(
        (t for t in taints if t.get("key") == wanted and t.get("effect") == NO_EXECUTE), None
    )
    added = None
    if wanted is not None:
        if existing is None:
            existing = {"key": wanted, "effect": NO_EXECUTE, "timeAdded": format_time(now)}
            added = wanted
        kept.append(existing)
    if kept != taints:
        node.setdefault("spec", {})["taints"] = kept
    elif not kept and "taints" in spec(node):
        node["spec"].pop("taints")
    return added


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def _seconds(value: object) -> float | None:
    """A toleration's tolerationSeconds; None when absent or not a number (tolerated for ever,
    as a toleration without it is)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def eviction_deadline(
    pod: Obj, taints: list[dict[str, Any]], default_seconds: Mapping[str, float], now: datetime
) -> datetime | None:
    """When the pod must go because of the node's NoExecute taints; None: never."""
    tolerations = [t for t in spec(pod).get("tolerations") or [] if isinstance(t, dict)]
    deadline: datetime | None = None
    for taint in taints:
        if taint.get("effect") != NO_EXECUTE:
            continue
        added = parse_time(taint.get("timeAdded")) or now
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used and taint.get("key") in default_seconds:
            seconds: float | None = default_seconds[str(taint.get("key"))]
        elif not used:
            seconds = 0.0  # not tolerated at all: now
        else:
            bounded = [
                s for s in (_seconds(t.get("tolerationSeconds")) for t in used) if s is not None
            ]
            seconds = max(min(bounded), 0.0) if bounded else None
        if seconds is None:
            continue
        due = added + timedelta(seconds=seconds)
        deadline = due if deadline is None else min(deadline, due)
    return deadline


def pod_node(pod: Mapping[str, Any]) -> list[str]:
    """Index function: the node a pod is bound to."""
    name = spec(pod).get("nodeName")
    return [str(name)] if name else []


def disruption_condition(now: datetime) -> dict[str, Any]:
    """What the taint manager records on a pod before deleting it."""
    return {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": format_time(now),
    }


def pod_ready_false(pod: Obj) -> dict[str, Any] | None:
    """MarkPodsNotReady's change: the pod's Ready condition, now False (None: nothing to do)."""
    ready = condition(pod, "Ready")
    if ready is None or ready.get("status") == "False":
        return None
    return {**ready, "status": "False"}
