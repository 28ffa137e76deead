"""The object store's operations, each written once, sans-IO: a generator that yields etcd
requests (``rpc_pb2.RangeRequest``, ``TxnRequest``, ``LeaseGrantRequest``, ...) and is sent
each response; an etcd failure is thrown into it as the ``errors`` class it maps to. The sync
store (``store.py``) and the asyncio store (``aio.py``) only drive them (``run`` and
``run_async`` below), so the semantics live here alone: the writes and get here, lists in
``ops_list.py``, watches in ``ops_watch.py``.

The semantics are kube-apiserver's storage layer (k8s.io/apiserver/pkg/storage/etcd3/store.go,
watcher.go) with the generic registry's rules around it (registry/generic/registry/store.go,
rest.BeforeCreate/BeforeUpdate): see docs/k8s-objects.md.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from etcdpy.k8s import errors
from etcdpy.k8s.codec import Codec, for_storage, go_json
from etcdpy.k8s.objects import format_time
from etcdpy.k8s.resources import Resource, ResourceRegistry, type_meta
from etcdpy.k8s.types import Preconditions
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.mvccpb import kv_pb2

T = TypeVar("T")
Op = Generator[Any, Any, T]  # yields a request, is sent its response, returns the result
Obj = dict[str, Any]

OPTIMISTIC_LOCK = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
FUTURE_REVISION = "required revision is a future revision"
MAX_LIMIT = 10000  # the API server's cap when it doubles a page that selectors thinned
MAX_UPDATE_ATTEMPTS = 64  # the API server retries forever; a bound keeps a livelock visible
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # names.SimpleNameGenerator's alphabet


@dataclass(frozen=True)
class Context:
    """What every operation needs besides its arguments."""

    root: str
    registry: ResourceRegistry
    codec: Codec = field(default_factory=Codec)
    clock: Callable[[], datetime] = datetime.now
    new_uid: Callable[[], str] = lambda: ""


# --- drivers --------------------------------------------------------------------------------


def run(op: Op[T], execute: Callable[[Any], Any]) -> T:
    """Drives an operation with a sync ``execute(request) -> response``."""
    try:
        request = next(op)
        while True:
            try:
                response = execute(request)
            except errors.StatusError as err:
                request = op.throw(err)
                continue
            request = op.send(response)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_async(op: Op[T], execute: Callable[[Any], Awaitable[Any]]) -> T:
    """Drives an operation with an async ``execute``."""
    try:
        request = next(op)
        while True:
            try:
                response = await execute(request)
            except errors.StatusError as err:
                request = op.throw(err)
                continue
            request = op.send(response)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# --- requests -------------------------------------------------------------------------------


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range end of a prefix (clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


def _get(key: bytes) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(key=key)


def _mod_revision_is(key: bytes, revision: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL,
        target=rpc_pb2.Compare.MOD,
        key=key,
        mod_revision=revision,
    )


def _put_op(key: bytes, value: bytes, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def _delete_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))


def _get_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))


# --- input checks ---------------------------------------------------------------------------


def parse_resource_version(value: str) -> int:
    """A resourceVersion parameter ("" and "0": 0); the API server's BadRequest otherwise."""
    if value in ("", "0"):
        return 0
    if value.isdigit() and value.isascii():
        number = int(value)
        if number < 2**64:
            return number
        why = f'strconv.ParseUint: parsing "{value}": value out of range'
    else:
        why = f'strconv.ParseUint: parsing "{value}": invalid syntax'
    raise errors.BadRequest(
        f'invalid resource version: resourceVersion: Invalid value: "{value}": {why}'
    )


def _path_segment_problem(value: str) -> str | None:
    """apimachinery's ValidatePathSegmentName: what keeps a name inside its etcd key."""
    if value in (".", ".."):
        return f"may not be '{value}'"
    for bad in ("/", "%"):
        if bad in value:
            return f"may not contain '{bad}'"
    return None


def _invalid(resource: Resource, name: str, field_path: str, why: str) -> errors.Invalid:
    """apierrors.NewInvalid: the message names the GroupKind ("Pod", "Deployment.apps")."""
    group_kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    reason = "FieldValueRequired" if why.startswith("Required value") else "FieldValueInvalid"
    return errors.Invalid(
        f'{group_kind} "{name}" is invalid: {field_path}: {why}',
        details={
            "name": name,
            "group": resource.group,
            "kind": resource.kind,
            "causes": [{"reason": reason, "message": why, "field": field_path}],
        },
    )


def _check_name(resource: Resource, name: str) -> None:
    if not name:
        raise _invalid(
            resource, name, "metadata.name", "Required value: name or generateName is required"
        )
    problem = _path_segment_problem(name)
    if problem:
        raise _invalid(resource, name, "metadata.name", f'Invalid value: "{name}": {problem}')


def namespace_for(resource: Resource, namespace: str | None) -> str:
    """The namespace of a single-object call: "default" when none is given; "" for a
    cluster-scoped kind."""
    if not resource.namespaced:
        return ""
    namespace = namespace or "default"
    problem = _path_segment_problem(namespace)
    if problem:
        raise errors.BadRequest(f'invalid namespace "{namespace}": {problem}')
    return namespace


def _key(ctx: Context, resource: Resource, namespace: str, name: str) -> bytes:
    if not name:
        raise errors.BadRequest("resource name may not be empty")
    problem = _path_segment_problem(name)
    if problem:
        raise errors.BadRequest(f'invalid resource name "{name}": {problem}')
    return resource.key(ctx.root, namespace, name)


def _metadata(obj: Obj) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        obj["metadata"] = metadata
    return metadata


def _with_type(resource: Resource, obj: Obj) -> Obj:
    """Checks and completes apiVersion and kind against the resource."""
    api_version, kind = type_meta(obj)
    if api_version and api_version != resource.api_version:
        raise errors.BadRequest(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({resource.api_version})"
        )
    if kind and kind != resource.kind:
        raise errors.BadRequest(
            f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
        )
    typed = {"kind": resource.kind, "apiVersion": resource.api_version}
    typed.update({k: v for k, v in obj.items() if k not in typed})
    return typed


def decode_kv(ctx: Context, resource: Resource, kv: kv_pb2.KeyValue) -> tuple[Obj, bool]:
    return ctx.codec.decode(kv.value, resource.group_resource, kv.key, kv.mod_revision)


@dataclass
class _State:
    """A stored object as read: the object, its mod revision, its stored plain bytes' stale
    flag."""

    obj: Obj
    revision: int
    stale: bool


def _state(ctx: Context, resource: Resource, response: rpc_pb2.RangeResponse) -> _State | None:
    if not response.kvs:
        return None
    kv = response.kvs[0]
    obj, stale = decode_kv(ctx, resource, kv)
    return _State(obj, kv.mod_revision, stale)


def _storage_error(key: bytes, why: str) -> str:
    """storage.StorageError's text, which the API server puts in a Conflict's message."""
    return (
        f"StorageError: invalid object, Code: 4, Key: {key.decode(errors='replace')}, "
        f"ResourceVersion: 0, AdditionalErrorMsg: {why}"
    )


def _check_preconditions(
    resource: Resource, name: str, key: bytes, preconditions: Preconditions | None, obj: Obj
) -> None:
    if preconditions is None:
        return
    metadata = _metadata(obj)
    uid = str(metadata.get("uid", ""))
    if preconditions.uid is not None and preconditions.uid != uid:
        why = (
            f"Precondition failed: UID in precondition: {preconditions.uid}, "
            f"UID in object meta: {uid}"
        )
        raise errors.Conflict.of(resource.group_resource, name, _storage_error(key, why))
    rv = str(metadata.get("resourceVersion", ""))
    if preconditions.resource_version is not None and preconditions.resource_version != rv:
        why = (
            "Precondition failed: ResourceVersion in precondition: "
            f"{preconditions.resource_version}, ResourceVersion in object meta: {rv}"
        )
        raise errors.Conflict.of(resource.group_resource, name, _storage_error(key, why))


# --- create ---------------------------------------------------------------------------------


def create(ctx: Context, obj: Obj, *, ttl: int | None = None) -> Op[Obj]:
    """Creates the object (rest.BeforeCreate, then one Txn: If the key's mod_revision is 0)."""
    resource = ctx.registry.for_object(obj)
    obj = _with_type(resource, copy.deepcopy(obj))
    metadata = _metadata(obj)
    if metadata.get("resourceVersion"):
        raise errors.BadRequest("resourceVersion should not be set on objects to be created")
    name = str(metadata.get("name") or "")
    if not name and metadata.get("generateName"):
        name = str(metadata["generateName"]) + "".join(
            secrets.choice(_NAME_CHARS) for _ in range(5)
        )
        metadata["name"] = name
    _check_name(resource, name)
    namespace = namespace_for(resource, metadata.get("namespace"))
    if resource.namespaced:
        metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    metadata["uid"] = ctx.new_uid()
    metadata["creationTimestamp"] = format_time(ctx.clock().replace(microsecond=0))
    metadata["generation"] = 1
    for cleared in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        metadata.pop(cleared, None)
    key = resource.key(ctx.root, namespace, name)
    value = ctx.codec.encode(obj, resource.group_resource, key)
    lease = 0
    if ttl:
        granted: rpc_pb2.LeaseGrantResponse = yield rpc_pb2.LeaseGrantRequest(TTL=ttl)
        lease = granted.ID
    answer: rpc_pb2.TxnResponse = yield rpc_pb2.TxnRequest(
        compare=[_mod_revision_is(key, 0)], success=[_put_op(key, value, lease)]
    )
    if not answer.succeeded:
        if lease:
            yield rpc_pb2.LeaseRevokeRequest(ID=lease)
        raise errors.AlreadyExists.of(resource.group_resource, name)
    metadata["resourceVersion"] = str(answer.responses[0].response_put.header.revision)
    return obj


# --- get ------------------------------------------------------------------------------------


def too_large(minimum: int, current: int) -> errors.TooLargeResourceVersion:
    return errors.TooLargeResourceVersion(
        f"Timeout: Too large resource version: {minimum}, current: {current}",
        details={
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def validate_minimum(resource_version: str, current: int) -> None:
    if resource_version == "":
        return
    minimum = parse_resource_version(resource_version)
    if minimum > current:
        raise too_large(minimum, current)


def get(
    ctx: Context, resource: Resource, name: str, namespace: str | None, resource_version: str = ""
) -> Op[Obj]:
    namespace = namespace_for(resource, namespace)
    key = _key(ctx, resource, namespace, name)
    parse_resource_version(resource_version)
    response: rpc_pb2.RangeResponse = yield _get(key)
    validate_minimum(resource_version, response.header.revision)
    state = _state(ctx, resource, response)
    if state is None:
        raise errors.NotFound.of(resource.group_resource, name)
    return state.obj


# --- update ---------------------------------------------------------------------------------


def _without(obj: Obj, *names: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in names}


def _before_update(resource: Resource, new: Obj, old: Obj) -> Obj:
    """rest.BeforeUpdate: identity and timestamps from the stored object, the generation
    bumped when anything but metadata and status changed."""
    new = _with_type(resource, new)
    new_meta, old_meta = _metadata(new), _metadata(old)
    name = str(old_meta.get("name", ""))
    if new_meta.get("name", name) != name:
        raise errors.BadRequest(
            f"the name of the object ({new_meta.get('name')}) does not match the name on the "
            f"URL ({name})"
        )
    if resource.namespaced and new_meta.get("namespace", old_meta.get("namespace")) != (
        old_meta.get("namespace")
    ):
        raise errors.BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    uid = old_meta.get("uid", "")
    if new_meta.get("uid") and new_meta["uid"] != uid:
        raise _invalid(
            resource,
            name,
            "metadata.uid",
            f'Invalid value: "{new_meta["uid"]}": field is immutable',
        )
    if new_meta.get("deletionTimestamp") and not old_meta.get("deletionTimestamp"):
        raise _invalid(  # only a delete sets it
            resource,
            name,
            "metadata.deletionTimestamp",
            f'Invalid value: "{new_meta["deletionTimestamp"]}": field is immutable',
        )
    new_meta["name"] = name
    if resource.namespaced:
        new_meta["namespace"] = old_meta.get("namespace")
    if uid:
        new_meta["uid"] = uid
    for kept in ("creationTimestamp", "deletionTimestamp"):
        if old_meta.get(kept):
            new_meta[kept] = old_meta[kept]
    if "deletionGracePeriodSeconds" in old_meta and "deletionGracePeriodSeconds" not in new_meta:
        new_meta["deletionGracePeriodSeconds"] = old_meta["deletionGracePeriodSeconds"]
    generation = int(old_meta.get("generation") or 0)
    if _without(new, "metadata", "status") != _without(old, "metadata", "status"):
        generation += 1
    if generation:
        new_meta["generation"] = generation
    else:
        new_meta.pop("generation", None)
    return new


def _write(
    ctx: Context, resource: Resource, key: bytes, state: _State, new: Obj
) -> Op[tuple[Obj | None, rpc_pb2.RangeResponse | None]]:
    """One conditional write of ``new`` over ``state``: (the result, None) or, on a conflict,
    (None, the key's current value). An object whose deletion is pending and whose last
    finalizer is gone is deleted instead (the registry's ShouldDeleteDuringUpdate); an
    unchanged encoding is not written (the API server's short cut)."""
    metadata = _metadata(new)
    if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
        answer: rpc_pb2.TxnResponse = yield rpc_pb2.TxnRequest(
            compare=[_mod_revision_is(key, state.revision)],
            success=[_delete_op(key)],
            failure=[_get_op(key)],
        )
        if not answer.succeeded:
            return None, answer.responses[0].response_range
        metadata["resourceVersion"] = str(answer.responses[0].response_delete_range.header.revision)
        return new, None
    value = ctx.codec.encode(new, resource.group_resource, key)
    if not state.stale and _same_object(new, state.obj):
        return state.obj, None
    answer = yield rpc_pb2.TxnRequest(
        compare=[_mod_revision_is(key, state.revision)],
        success=[_put_op(key, value)],
        failure=[_get_op(key)],
    )
    if not answer.succeeded:
        return None, answer.responses[0].response_range
    metadata["resourceVersion"] = str(answer.responses[0].response_put.header.revision)
    return new, None


def _same_object(new: Obj, old: Obj) -> bool:
    """Equal as stored (resourceVersion is never stored)."""
    return go_json(for_storage(new)) == go_json(for_storage(old))


def update(ctx: Context, obj: Obj) -> Op[Obj]:
    """Replaces the object; its metadata.resourceVersion, when set, must be the stored one
    (else Conflict); without one the update is unconditional, as for most built-in kinds."""
    resource = ctx.registry.for_object(obj)
    obj = _with_type(resource, copy.deepcopy(obj))
    metadata = _metadata(obj)
    name = str(metadata.get("name") or "")
    _check_name(resource, name)
    namespace = namespace_for(resource, metadata.get("namespace"))
    expected = str(metadata.get("resourceVersion") or "")
    if expected:
        parse_resource_version(expected)

    def replace(current: Obj) -> Obj:
        # The stored object's resourceVersion is its mod revision (codec.decode_kv).
        if expected and expected != str(_metadata(current).get("resourceVersion", "")):
            raise errors.Conflict.of(resource.group_resource, name, OPTIMISTIC_LOCK)
        return obj

    # The API server's Update is a GuaranteedUpdate whose update function checks the version.
    return (yield from guaranteed_update(ctx, resource, name, namespace, replace))


def guaranteed_update(
    ctx: Context,
    resource: Resource,
    name: str,
    namespace: str | None,
    try_update: Callable[[Obj], Obj | None],
    preconditions: Preconditions | None = None,
) -> Op[Obj]:
    """Reads, applies ``try_update`` to a copy, writes if it changed; retries on conflict with
    the fresh object (the API server's GuaranteedUpdate). ``try_update`` may raise to abort;
    None means no change."""
    namespace = namespace_for(resource, namespace)
    key = _key(ctx, resource, namespace, name)
    response: rpc_pb2.RangeResponse = yield _get(key)
    for _ in range(MAX_UPDATE_ATTEMPTS):
        state = _state(ctx, resource, response)
        if state is None:
            raise errors.NotFound.of(resource.group_resource, name)
        _check_preconditions(resource, name, key, preconditions, state.obj)
        updated = try_update(copy.deepcopy(state.obj))
        if updated is None:
            return state.obj
        new = _before_update(resource, copy.deepcopy(updated), state.obj)
        result, current = yield from _write(ctx, resource, key, state, new)
        if result is not None:
            return result
        assert current is not None
        response = current
    raise errors.Conflict.of(resource.group_resource, name, OPTIMISTIC_LOCK)


# --- delete ---------------------------------------------------------------------------------


def delete(
    ctx: Context,
    resource: Resource,
    name: str,
    namespace: str | None,
    preconditions: Preconditions | None = None,
    grace_period_seconds: int | None = None,
) -> Op[Obj]:
    """Deletes the object in one Txn (If mod_revision is the one read, else retry); an object
    with finalizers is not deleted but marked: deletionTimestamp and deletionGracePeriodSeconds
    are set, and the finalizers' owners delete it by removing them."""
    namespace = namespace_for(resource, namespace)
    key = _key(ctx, resource, namespace, name)
    if grace_period_seconds is not None and grace_period_seconds < 0:
        raise _invalid(
            resource,
            name,
            "gracePeriodSeconds",
            f"Invalid value: {grace_period_seconds}: must be greater than or equal to 0",
        )
    response: rpc_pb2.RangeResponse = yield _get(key)
    for _ in range(MAX_UPDATE_ATTEMPTS):
        state = _state(ctx, resource, response)
        if state is None:
            raise errors.NotFound.of(resource.group_resource, name)
        _check_preconditions(resource, name, key, preconditions, state.obj)
        metadata = _metadata(state.obj)
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return state.obj  # already being deleted: the finalizers' owners finish it
            grace = grace_period_seconds or 0
            marked = copy.deepcopy(state.obj)
            marked_meta = _metadata(marked)
            now = ctx.clock().replace(microsecond=0)
            marked_meta["deletionTimestamp"] = format_time(now + timedelta(seconds=grace))
            marked_meta["deletionGracePeriodSeconds"] = grace
            result, current = yield from _write(ctx, resource, key, state, marked)
        else:
            answer: rpc_pb2.TxnResponse = yield rpc_pb2.TxnRequest(
                compare=[_mod_revision_is(key, state.revision)],
                success=[_delete_op(key)],
                failure=[_get_op(key)],
            )
            if answer.succeeded:
                revision = answer.responses[0].response_delete_range.header.revision
                metadata["resourceVersion"] = str(revision)
                return state.obj
            result, current = None, answer.responses[0].response_range
        if result is not None:
            return result
        assert current is not None
        response = current
    raise errors.Conflict.of(resource.group_resource, name, OPTIMISTIC_LOCK)
