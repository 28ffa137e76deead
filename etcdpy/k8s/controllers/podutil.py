"""Pods and owner references as the controllers read them, on the JSON form of objects (dicts):
readiness and availability (k8s.io/api's podutil), the controller reference
(metav1.GetControllerOf), and the order in which a ReplicaSet gives up pods
(pkg/controller's ActivePods).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from etcdpy.k8s import objects
from etcdpy.k8s.controllers.clock import format_time, parse_time
from etcdpy.k8s.types import KubeObject

Obj = dict[str, Any]


def as_dict(obj: KubeObject) -> Obj:
    """The object's JSON as a dict (models are converted; dicts pass as they are: callers must
    copy before they change one that came from an informer's cache)."""
    if isinstance(obj, dict):
        return obj
    return objects.to_dict(obj)


def mutable(obj: KubeObject) -> Obj:
    """A private copy to change and write back."""
    return copy.deepcopy(as_dict(obj))


def metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    value = obj.get("spec")
    return value if isinstance(value, dict) else {}


def status(obj: Mapping[str, Any]) -> dict[str, Any]:
    value = obj.get("status")
    return value if isinstance(value, dict) else {}


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    value = metadata(obj).get("labels")
    return dict(value) if isinstance(value, dict) else {}


def being_deleted(obj: Mapping[str, Any]) -> bool:
    return bool(metadata(obj).get("deletionTimestamp"))


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The owner reference with controller=true (metav1.GetControllerOf)."""
    for ref in metadata(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def owner_reference(owner: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """metav1.NewControllerRef."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": metadata(owner).get("name", ""),
        "uid": metadata(owner).get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status(obj).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def set_condition(obj: dict[str, Any], new: dict[str, Any], now: datetime) -> bool:
    """podutil.UpdatePodCondition: replaces the condition of the same type, keeping its
    lastTransitionTime unless the status changes; True when anything changed."""
    conditions: list[dict[str, Any]] = obj.setdefault("status", {}).setdefault("conditions", [])
    for index, old in enumerate(conditions):
        if old.get("type") != new["type"]:
            continue
        merged = dict(new)
        if old.get("status") == new.get("status"):
            merged["lastTransitionTime"] = old.get("lastTransitionTime")
        else:
            merged.setdefault("lastTransitionTime", format_time(now))
        if merged == old:
            return False
        conditions[index] = merged
        return True
    conditions.append(
        {**new, "lastTransitionTime": new.get("lastTransitionTime") or format_time(now)}
    )
    return True


def is_active(pod: Mapping[str, Any]) -> bool:
    """controller.IsPodActive: not finished and not being deleted."""
    phase = status(pod).get("phase")
    return phase not in ("Succeeded", "Failed") and not being_deleted(pod)


def is_ready(pod: Mapping[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least min_ready_seconds (podutil.IsPodAvailable)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = status(pod).get("containerStatuses") or []
    return max(
        (int(s.get("restartCount") or 0) for s in statuses if isinstance(s, dict)), default=0
    )


def deletion_rank(pod: Mapping[str, Any], now: datetime) -> tuple[Any, ...]:
    """Sort key: the pods a ReplicaSet should delete first sort first (controller.ActivePods:
    unscheduled before scheduled, Pending before Unknown before Running, not ready before
    ready, ready for less time first, more restarts first, newer first)."""
    ready_since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    ready_for = (now - ready_since).total_seconds() if is_ready(pod) and ready_since else 0.0
    created = parse_time(metadata(pod).get("creationTimestamp"))
    created_at = created.timestamp() if created else float("inf")
    return (
        bool(spec(pod).get("nodeName")),
        _PHASE_ORDINAL.get(str(status(pod).get("phase")), 0),
        is_ready(pod),
        ready_for,
        -_restarts(pod),
        -created_at,
    )
