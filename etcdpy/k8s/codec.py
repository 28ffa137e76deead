"""Stored values as the kube-apiserver writes and reads them.

JSON (what this store writes): Go's encoding/json output of the typed object: ``kind`` and
``apiVersion`` first (TypeMeta's field order), then ``metadata`` in ObjectMeta's field order,
``spec``, ``status`` and the rest as given; compact, with Go's escapes of ``<``, ``>``, ``&``,
U+2028 and U+2029, and the trailing newline of Go's json.Encoder. ``resourceVersion`` and
``selfLink`` are never stored (the API server's PrepareObjectForStorage): a read sets
``metadata.resourceVersion`` from the key's mod_revision.

Protobuf (what an API server with the default storage media type writes): ``k8s\\x00`` and a
runtime.Unknown (typeMeta, raw, contentEncoding, contentType). Such a value is decoded to a
dict with apiVersion, kind and the ObjectMeta read from field 1 of ``raw``; the object's other
fields are not decoded. The raw bytes are kept, base64, under the key ``PROTOBUF_RAW``, and the
store refuses to write such a dict back (it would replace the API server's protobuf with a
JSON object lacking everything but the metadata).

Anything else (not JSON, not the protobuf magic) is ``errors.InternalError`` naming the key;
bytes are never guessed at.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError

from etcdpy.k8s import errors
from etcdpy.k8s.types import Transformers, ValueTransformer
from etcdpy.pb.k8s import runtime_pb2

PROTOBUF_MAGIC = b"k8s\x00"
PROTOBUF_RAW = "x-etcdpy-protobuf-raw"

# metav1.ObjectMeta's JSON field order (Go's struct order).
_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
_TOP_ORDER = ("kind", "apiVersion", "metadata", "spec", "status")
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_GO_ESCAPES["\u2029"] = "\\u2029"


def _ordered(obj: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: obj[k] for k in _TOP_ORDER if k in obj}
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        ordered_meta = {k: metadata[k] for k in _META_ORDER if k in metadata}
        ordered_meta.update({k: v for k, v in metadata.items() if k not in ordered_meta})
        out["metadata"] = ordered_meta
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def go_json(obj: Mapping[str, Any]) -> bytes:
    """The bytes Go's json.Encoder writes for ``obj`` (keys in the API server's order)."""
    text = json.dumps(_ordered(obj), separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        if char in text:
            text = text.replace(char, escaped)
    return text.encode() + b"\n"


def for_storage(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as it is stored: no resourceVersion, no selfLink."""
    stored = dict(obj)
    metadata = dict(stored.get("metadata") or {})
    metadata.pop("resourceVersion", None)
    metadata.pop("selfLink", None)
    stored["metadata"] = metadata
    return stored


def _time(value: runtime_pb2.Time) -> str:
    moment = datetime.fromtimestamp(value.seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _protobuf_meta(meta: runtime_pb2.ObjectMeta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("name", "generateName", "namespace", "uid", "generation"):
        if meta.HasField(name):
            out[name] = getattr(meta, name)
    for name in ("creationTimestamp", "deletionTimestamp"):
        if meta.HasField(name):
            out[name] = _time(getattr(meta, name))
    if meta.HasField("deletionGracePeriodSeconds"):
        out["deletionGracePeriodSeconds"] = meta.deletionGracePeriodSeconds
    if meta.labels:
        out["labels"] = dict(meta.labels)
    if meta.annotations:
        out["annotations"] = dict(meta.annotations)
    if meta.ownerReferences:
        out["ownerReferences"] = [
            {
                "apiVersion": ref.apiVersion,
                "kind": ref.kind,
                "name": ref.name,
                "uid": ref.uid,
                **({"controller": ref.controller} if ref.HasField("controller") else {}),
                **(
                    {"blockOwnerDeletion": ref.blockOwnerDeletion}
                    if ref.HasField("blockOwnerDeletion")
                    else {}
                ),
            }
            for ref in meta.ownerReferences
        ]
    if meta.finalizers:
        out["finalizers"] = list(meta.finalizers)
    return out


def decode_protobuf(value: bytes, key: bytes) -> dict[str, Any]:
    """apiVersion, kind and ObjectMeta of a protobuf value (see the module's docstring)."""
    try:
        unknown = runtime_pb2.Unknown.FromString(value[len(PROTOBUF_MAGIC) :])
        if unknown.contentEncoding:
            raise DecodeError(f"content encoding {unknown.contentEncoding!r}")
        obj = runtime_pb2.ObjectWithMeta.FromString(unknown.raw)
    except DecodeError as err:
        raise errors.InternalError(
            f"unable to decode protobuf value of key {key.decode(errors='replace')!r}: {err}"
        ) from None
    decoded: dict[str, Any] = {
        "kind": unknown.typeMeta.kind,
        "apiVersion": unknown.typeMeta.apiVersion,
        "metadata": _protobuf_meta(obj.metadata),
    }
    decoded[PROTOBUF_RAW] = base64.b64encode(unknown.raw).decode()
    return decoded


def decode_json(value: bytes, key: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(value)
    except (UnicodeDecodeError, ValueError) as err:
        raise errors.InternalError(
            f"unable to decode value of key {key.decode(errors='replace')!r}: {err}"
        ) from None
    if not isinstance(decoded, dict):
        raise errors.InternalError(
            f"unable to decode value of key {key.decode(errors='replace')!r}: not an object"
        )
    return decoded


def decode_plain(value: bytes, key: bytes) -> dict[str, Any]:
    """A value's object, by its first bytes: protobuf magic, else JSON (an object)."""
    if value.startswith(PROTOBUF_MAGIC):
        return decode_protobuf(value, key)
    if value.lstrip()[:1] == b"{":
        return decode_json(value, key)
    raise errors.InternalError(
        f"unable to decode value of key {key.decode(errors='replace')!r}: "
        "neither JSON nor Kubernetes protobuf (is it encrypted with a key this store lacks?)"
    )


class Codec:
    """Encodes and decodes one store's values, applying the resource's transformer (encryption
    at rest) around the JSON, keyed by the full etcd key."""

    def __init__(self, transformers: Transformers | None = None) -> None:
        self.transformers = transformers

    def _transformer(self, group_resource: str) -> ValueTransformer | None:
        return None if self.transformers is None else self.transformers.for_resource(group_resource)

    def encode(self, obj: Mapping[str, Any], group_resource: str, key: bytes) -> bytes:
        if PROTOBUF_RAW in obj:
            raise errors.BadRequest(
                "the object was stored by an API server as protobuf; this store reads its "
                "metadata only and cannot write it back"
            )
        plain = go_json(for_storage(obj))
        transformer = self._transformer(group_resource)
        return plain if transformer is None else transformer.to_storage(plain, key)

    def decode(
        self, value: bytes, group_resource: str, key: bytes, mod_revision: int
    ) -> tuple[dict[str, Any], bool]:
        """(the object with its resourceVersion, whether the value is stale for encryption)."""
        stale = False
        transformer = self._transformer(group_resource)
        if transformer is not None:
            try:
                value, stale = transformer.from_storage(value, key)
            except errors.StatusError:
                raise
            except Exception as err:  # a provider's own error: the key's value is unreadable
                raise errors.InternalError(
                    f"unable to transform key {key.decode(errors='replace')!r}: {err}"
                ) from None
        obj = decode_plain(value, key)
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
            obj["metadata"] = metadata
        metadata["resourceVersion"] = str(mod_revision)
        return obj, stale
