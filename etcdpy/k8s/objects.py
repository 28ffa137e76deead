"""Objects at the store's edges: a ``kubernetes`` model or a dict in, the object's JSON as a dict
inside, a model (or a dict, for kinds the package has no model of) out. The ``kubernetes``
package's ApiClient does the field-name mapping; times are written as the API server writes
metav1.Time: RFC 3339 in UTC with "Z", whole seconds (sub-second times keep microseconds, as
metav1.MicroTime does).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from etcdpy.k8s import errors
from etcdpy.k8s.resources import ResourceRegistry
from etcdpy.k8s.types import KubeObject


def format_time(moment: datetime) -> str:
    """metav1.Time's JSON: "2024-05-01T12:00:00Z"."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_CLIENT: Any = None


def _client() -> Any:
    """The ``kubernetes`` package's ApiClient, with datetimes written as the API server writes
    them; made (and the package imported, about 0.7 s) on first use only."""
    global _CLIENT
    if _CLIENT is None:
        from kubernetes.client import ApiClient

        class _Client(ApiClient):  # type: ignore[misc]
            def sanitize_for_serialization(self, obj: Any) -> Any:
                if isinstance(obj, datetime):
                    return format_time(obj)
                if isinstance(obj, date):
                    return obj.isoformat()
                return super().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]

        _CLIENT = _Client()
    return _CLIENT


def to_dict(obj: KubeObject) -> dict[str, Any]:
    """The object's JSON as a dict (a deep copy: the caller's object is never changed)."""
    if isinstance(obj, Mapping):
        return copy.deepcopy(dict(obj))
    if not hasattr(obj, "openapi_types"):
        raise errors.BadRequest(
            f"not a Kubernetes object: {type(obj).__name__} (give a kubernetes model or a dict)"
        )
    plain = _client().sanitize_for_serialization(obj)
    if not isinstance(plain, dict):
        raise errors.BadRequest(f"not a Kubernetes object: {type(obj).__name__}")
    return plain


def to_model(data: Mapping[str, Any], registry: ResourceRegistry) -> KubeObject:
    """A model of the ``kubernetes`` package for the object's apiVersion and kind; a dict when
    the package has none. Fields the model does not know are dropped (``typed=False`` keeps
    them); a field of the wrong shape is an ``errors.InternalError``."""
    api_version, kind = str(data.get("apiVersion", "")), str(data.get("kind", ""))
    resource = registry.for_gvk(api_version, kind)
    if resource is None or resource.model is None:
        return dict(data)
    try:
        return _client().deserialize(json.dumps(data), resource.model, None)
    except ValueError as err:  # pydantic's ValidationError: a field of the wrong shape
        metadata = data.get("metadata") or {}
        where = "/".join(str(p) for p in (metadata.get("namespace"), metadata.get("name")) if p)
        first = [line.strip() for line in str(err).splitlines()[:2]]
        raise errors.InternalError(
            f"unable to convert {kind} {where!r} to {resource.model}: {' '.join(first)}"
        ) from None
