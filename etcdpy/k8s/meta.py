"""Read an object's identity whether it is a ``kubernetes`` model or a dict: name, namespace,
resourceVersion, uid, labels, and client-go's cache key ("<namespace>/<name>", or "<name>" for
cluster-scoped objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etcdpy.k8s.types import KubeObject


def _metadata(obj: KubeObject) -> Any:
    if isinstance(obj, Mapping):
        return obj.get("metadata") or {}
    return getattr(obj, "metadata", None)


def _field(obj: KubeObject, json_name: str, attr: str) -> Any:
    metadata = _metadata(obj)
    if metadata is None:
        return None
    if isinstance(metadata, Mapping):
        return metadata.get(json_name)
    return getattr(metadata, attr, None)


def name(obj: KubeObject) -> str:
    return str(_field(obj, "name", "name") or "")


def namespace(obj: KubeObject) -> str:
    return str(_field(obj, "namespace", "namespace") or "")


def resource_version(obj: KubeObject) -> str:
    return str(_field(obj, "resourceVersion", "resource_version") or "")


def uid(obj: KubeObject) -> str:
    return str(_field(obj, "uid", "uid") or "")


def labels(obj: KubeObject) -> dict[str, str]:
    return dict(_field(obj, "labels", "labels") or {})


def cache_key(obj: KubeObject) -> str:
    """client-go's MetaNamespaceKeyFunc."""
    ns = namespace(obj)
    return f"{ns}/{name(obj)}" if ns else name(obj)
