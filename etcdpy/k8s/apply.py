"""``etcdpy k8s apply``: manifests (YAML or JSON, several documents, Lists) read and checked as a
whole before anything is written, then each object created or updated as ``kubectl apply`` does
it client-side: the ``kubectl.kubernetes.io/last-applied-configuration`` annotation kubectl
writes, and a three-way JSON merge (apimachinery's jsonmergepatch: fields removed since the last
apply are deleted, fields in the file win, everything else on the live object is kept: uid,
creationTimestamp, status, what controllers added). Lists merge as wholes, as a JSON merge patch
does (kubectl's strategic merge would merge some lists by key; see docs/k8s-cli.md).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from etcdpy.k8s import errors
from etcdpy.k8s.types import Preconditions

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# etcd's default --max-request-bytes (1.5 MiB): an object bigger than this cannot be written
# (etcd answers "request is too large"); checked before anything of the file is written.
MAX_OBJECT_BYTES = 1536 * 1024

# What the API server owns: never taken from a manifest (resourceVersion is a precondition).
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

Outcome = Literal["created", "configured", "unchanged"]


class ManifestError(ValueError):
    """A file that cannot be read as manifests; the message is kubectl's."""


class ResourceLike(Protocol):
    """What apply needs of a resource (etcdpy.k8s.resources.Resource has it)."""

    @property
    def kind(self) -> str: ...

    @property
    def group(self) -> str: ...

    @property
    def namespaced(self) -> bool: ...

    @property
    def group_resource(self) -> str: ...


class StoreLike(Protocol):
    """The part of ObjectStore apply uses (dicts in and out: a store made with typed=False)."""

    def get(self, kind: Any, name: str, *, namespace: str | None = None) -> Any: ...

    def create(self, obj: Any) -> Any: ...

    def guaranteed_update(
        self,
        kind: Any,
        name: str,
        fn: Callable[[Any], Any],
        *,
        namespace: str | None = None,
        preconditions: Preconditions | None = None,
    ) -> Any: ...


# --- reading manifests ------------------------------------------------------------------------


def read_source(path: str, stdin_text: Callable[[], str]) -> str:
    """The text of ``-f PATH`` ("-" is standard input)."""
    if path == "-":
        return stdin_text()
    file = Path(path)
    if not file.exists():
        raise ManifestError(f'the path "{path}" does not exist')
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"error reading {path}: {err}") from err


def parse_manifests(text: str, source: str) -> list[dict[str, Any]]:
    """Every object of a file: YAML documents or JSON, Lists flattened, empty documents
    skipped; each must have apiVersion and kind."""
    try:
        documents = list(yaml.load_all(text, Loader=_ManifestLoader))
    except yaml.YAMLError as err:
        raise ManifestError(f"error parsing {source}: {_yaml_problem(err)}") from err
    objects: list[dict[str, Any]] = []
    for document in documents:
        if document is None:
            continue
        objects.extend(_flatten(document, source))
    return objects


class _ManifestLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as kubectl reads it into JSON: timestamps stay strings."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"error converting YAML to JSON: yaml: {where}{problem}"


def _flatten(document: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise ManifestError(f'unable to decode "{source}": not an object but a {kind}')
    compact = json.dumps(document, separators=(",", ":"), sort_keys=True, default=str)
    for field in ("kind", "apiVersion"):
        if not isinstance(document.get(field), str) or not document[field]:
            raise ManifestError(
                f"unable to decode \"{source}\": Object '{field[0].upper()}{field[1:]}' "
                f"is missing in '{compact}'"
            )
    items = document.get("items")
    if document["kind"].endswith("List") and isinstance(items, list):
        flat: list[dict[str, Any]] = []
        for item in items:
            flat.extend(_flatten(item, source))
        return flat
    # YAML may hold what JSON cannot (dates, binary): keep only what JSON can say.
    plain: dict[str, Any] = json.loads(json.dumps(document, default=str))
    return [plain]


# --- preparing an object ----------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """An object of a manifest ready to apply: where it goes and what is written."""

    resource: ResourceLike
    name: str
    namespace: str | None
    obj: dict[str, Any]  # with the last-applied annotation
    resource_version: str  # from the manifest: a precondition ("" for none)


def prepare(obj: Mapping[str, Any], resource: ResourceLike, namespace: str | None) -> Prepared:
    """Check one object and give it kubectl's namespace and last-applied annotation.
    ``namespace`` is -n's value (None: not given)."""
    applied = copy.deepcopy(dict(obj))
    metadata = applied.get("metadata")
    if metadata is None:
        metadata = applied["metadata"] = {}
    if not isinstance(metadata, dict):
        raise errors.BadRequest("metadata must be an object")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise errors.Invalid("resource name may not be empty")
    own = metadata.get("namespace")
    if resource.namespaced:
        if own and namespace and own != namespace:
            raise errors.BadRequest(
                f'the namespace from the provided object "{own}" does not match the namespace '
                f"\"{namespace}\". You must pass '--namespace={own}' to perform this operation."
            )
        metadata["namespace"] = own or namespace or "default"
    else:
        metadata.pop("namespace", None)
    resource_version = str(metadata.get("resourceVersion") or "")
    for field in _SERVER_METADATA:
        metadata.pop(field, None)
    applied.pop("status", None)
    annotations = metadata.get("annotations")
    annotations = dict(annotations) if isinstance(annotations, dict) else {}
    annotations.pop(LAST_APPLIED, None)
    # kubectl serialises the object with its annotations emptied of the last-applied one
    # (so "annotations":{} when there were none), then adds it.
    metadata["annotations"] = annotations
    last_applied = json.dumps(applied, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        last_applied = last_applied.replace(raw, escaped)
    metadata["annotations"] = {**annotations, LAST_APPLIED: last_applied + "\n"}
    size = len(json.dumps(applied, separators=(",", ":")).encode())
    if size > MAX_OBJECT_BYTES:
        raise errors.RequestEntityTooLarge(
            f'{resource.group_resource} "{name}" is too large: {size} bytes, more than '
            f"etcd's default request limit of {MAX_OBJECT_BYTES} bytes"
        )
    return Prepared(resource, name, metadata.get("namespace"), applied, resource_version)


# --- the three-way merge ----------------------------------------------------------------------


def _deletions(original: Mapping[str, Any], modified: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of the last apply that the file no longer has: set to None (deleted)."""
    patch: dict[str, Any] = {}
    for key, value in original.items():
        if key not in modified:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(modified[key], dict):
            nested = _deletions(value, modified[key])
            if nested:
                patch[key] = nested
    return patch


def _changes(current: Mapping[str, Any], modified: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of the file that differ from the live object (nothing is deleted here)."""
    patch: dict[str, Any] = {}
    for key, value in modified.items():
        live = current.get(key)
        if key in current and live == value:
            continue
        if isinstance(value, dict) and isinstance(live, dict):
            nested = _changes(live, value)
            if nested:
                patch[key] = nested
        else:
            patch[key] = value
    return patch


def _merge_patches(first: dict[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_patches(merged[key], value)
        else:
            merged[key] = value
    return merged


def three_way_patch(
    original: Mapping[str, Any], modified: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """jsonmergepatch.CreateThreeWayJSONMergePatch: deletions from original to modified,
    then what modified changes on current."""
    return _merge_patches(_deletions(original, modified), _changes(current, modified))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: None deletes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _last_applied_of(live: Mapping[str, Any]) -> dict[str, Any] | None:
    metadata = live.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    text = annotations.get(LAST_APPLIED) if isinstance(annotations, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        original = json.loads(text)
    except ValueError:
        return None
    return original if isinstance(original, dict) else None


# --- applying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    warning: str = ""  # kubectl's warning when the live object had no last-applied annotation


def apply(store: StoreLike, prepared: Prepared) -> Applied:
    """Create the object, or patch the live one with the three-way merge."""
    resource, name, namespace = prepared.resource, prepared.name, prepared.namespace
    try:
        store.get(resource, name, namespace=namespace)
    except errors.NotFound:
        if prepared.resource_version:
            # The API server's answer to a create that names a resourceVersion.
            raise errors.BadRequest(
                "resourceVersion should not be set on objects to be created"
            ) from None
        try:
            store.create(prepared.obj)
            return Applied("created")
        except errors.AlreadyExists:
            pass  # created meanwhile: patch it like any live object
    warned: list[str] = []
    changed: list[bool] = []

    def patched(live: Any) -> Any:
        original = _last_applied_of(live)
        if original is None and not warned:
            warned.append(
                f"Warning: resource {resource.group_resource}/{name} is missing the "
                f"{LAST_APPLIED} annotation which is required by etcdpy k8s apply. "
                "The missing annotation will be patched automatically.\n"
            )
        patch = three_way_patch(original or {}, prepared.obj, live)
        changed[:] = [bool(patch)]
        return merge_patch(live, patch) if patch else None

    preconditions = (
        Preconditions(resource_version=prepared.resource_version)
        if prepared.resource_version
        else None
    )
    store.guaranteed_update(
        resource, name, patched, namespace=namespace, preconditions=preconditions
    )
    return Applied("configured" if changed and changed[0] else "unchanged", "".join(warned))


def prepare_all(
    objects: Sequence[Mapping[str, Any]],
    resolve: Callable[[Mapping[str, Any]], ResourceLike],
    namespace: str | None,
) -> list[Prepared]:
    """Check every object before any is written: a bad one stops the whole apply."""
    return [prepare(obj, resolve(obj), namespace) for obj in objects]
