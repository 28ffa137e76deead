"""The object store's operations, each written once, sans-IO: a generator that yields etcd
requests (``rpc_pb2.RangeRequest``, ``TxnRequest``, ``LeaseGrantRequest``, ...) and is sent
each response; an etcd failure is thrown into it as the ``errors`` class it maps to. The sync
store (``store.py``) and the asyncio store (``aio.py``) only drive them (``run`` and
``run_async`` below), so the semantics live here alone.

The semantics are kube-apiserver's storage layer (k8s.io/apiserver/pkg/storage/etcd3/store.go,
watcher.go) with the generic registry's rules around it (registry/generic/registry/store.go,
rest.BeforeCreate/BeforeUpdate): see docs/k8s-objects.md.
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from etcdpy.k8s import continue_token, errors
from etcdpy.k8s.codec import Codec, for_storage, go_json
from etcdpy.k8s.objects import format_time
from etcdpy.k8s.resources import Resource, ResourceRegistry, type_meta
from etcdpy.k8s.selectors import FieldSelector, LabelSelector
from etcdpy.k8s.types import ObjectList, Preconditions
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.mvccpb import kv_pb2

T = TypeVar("T")
Op = Generator[Any, Any, T]  # yields a request, is sent its response, returns the result
Obj = dict[str, Any]

log = logging.getLogger(__name__)

OPTIMISTIC_LOCK = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
LIST_EXPIRED = "The resourceVersion for the provided list is too old."
WATCH_EXPIRED = "The resourceVersion for the provided watch is too old."
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
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


def _decode(ctx: Context, resource: Resource, kv: kv_pb2.KeyValue) -> tuple[Obj, bool]:
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
    obj, stale = _decode(ctx, resource, kv)
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


def _too_large(minimum: int, current: int) -> errors.TooLargeResourceVersion:
    return errors.TooLargeResourceVersion(
        f"Timeout: Too large resource version: {minimum}, current: {current}",
        details={
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def _validate_minimum(resource_version: str, current: int) -> None:
    if resource_version == "":
        return
    minimum = parse_resource_version(resource_version)
    if minimum > current:
        raise _too_large(minimum, current)


def get(
    ctx: Context, resource: Resource, name: str, namespace: str | None, resource_version: str = ""
) -> Op[Obj]:
    namespace = namespace_for(resource, namespace)
    key = _key(ctx, resource, namespace, name)
    parse_resource_version(resource_version)
    response: rpc_pb2.RangeResponse = yield _get(key)
    _validate_minimum(resource_version, response.header.revision)
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
    key = resource.key(ctx.root, namespace, name)
    response: rpc_pb2.RangeResponse = yield _get(key)
    for _ in range(MAX_UPDATE_ATTEMPTS):
        state = _state(ctx, resource, response)
        if state is None:
            raise errors.NotFound.of(resource.group_resource, name)
        if expected and expected != str(state.revision):
            raise errors.Conflict.of(resource.group_resource, name, OPTIMISTIC_LOCK)
        new = _before_update(resource, copy.deepcopy(obj), state.obj)
        result, current = yield from _write(ctx, resource, key, state, new)
        if result is not None:
            return result
        assert current is not None
        response = current
    raise errors.Conflict.of(resource.group_resource, name, OPTIMISTIC_LOCK)


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


# --- list -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """A list's or watch's selection (storage.SelectionPredicate)."""

    labels: LabelSelector
    fields: FieldSelector

    @classmethod
    def parse(cls, resource: Resource, label_selector: str, field_selector: str) -> Predicate:
        return cls(
            LabelSelector.parse(label_selector),
            FieldSelector.parse(field_selector, resource.group, resource.kind),
        )

    def empty(self) -> bool:
        return self.labels.empty() and self.fields.empty()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        return self.labels.matches(metadata.get("labels")) and self.fields.matches(obj)


def _list_options_invalid(why: str) -> errors.Invalid:
    return errors.Invalid(
        f'ListOptions.meta.k8s.io "" is invalid: {why}',
        details={"group": "meta.k8s.io", "kind": "ListOptions"},
    )


def _validate_list_options(
    resource_version: str, resource_version_match: str, continue_: str, limit: int
) -> None:
    """apimachinery's ValidateListOptions."""
    if limit < 0:
        raise errors.BadRequest(f"invalid limit: {limit}: must be greater than or equal to 0")
    if not resource_version_match:
        return
    if resource_version_match not in ("Exact", "NotOlderThan"):
        raise _list_options_invalid(
            f'resourceVersionMatch: Unsupported value: "{resource_version_match}": supported '
            'values: "Exact", "NotOlderThan"'
        )
    if continue_:
        raise _list_options_invalid(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue "
            "is provided"
        )
    if not resource_version:
        raise _list_options_invalid(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
            "resourceVersion is provided"
        )
    if resource_version_match == "Exact" and resource_version == "0":
        raise _list_options_invalid(
            'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for '
            'resourceVersion "0"'
        )


def list_(
    ctx: Context,
    resource: Resource,
    namespace: str | None,
    *,
    label_selector: str = "",
    field_selector: str = "",
    limit: int = 0,
    continue_: str = "",
    resource_version: str = "",
    resource_version_match: str = "",
) -> Op[tuple[list[Obj], ObjectList]]:
    """A list as the API server's GetList: pages of ``limit`` matches (reading on, with the page
    doubled, while selectors leave it short), all at one revision, with a continue token and,
    without selectors, remainingItemCount. Returns (the items, the page with them)."""
    predicate = Predicate.parse(resource, label_selector, field_selector)
    _validate_list_options(resource_version, resource_version_match, continue_, limit)
    key_prefix = resource.prefix(ctx.root, namespace if resource.namespaced else None)
    from_rv = parse_resource_version(resource_version) if resource_version else None
    key = key_prefix
    with_rev = 0
    continue_key = b""
    if continue_:
        try:
            continue_key, continue_rv = continue_token.decode(continue_, key_prefix)
        except continue_token.ContinueError as err:
            raise continue_token.bad_request(err) from None
        if resource_version not in ("", "0"):
            raise errors.BadRequest(
                "specifying resource version is not allowed when using continue"
            )
        key = continue_key
        if continue_rv > 0:
            with_rev = continue_rv
    elif from_rv is not None and (
        resource_version_match == "Exact"
        or (resource_version_match == "" and limit > 0 and from_rv > 0)
    ):
        with_rev = from_rv
    paging = limit > 0
    page = limit
    items: list[Obj] = []
    last_key = b""
    has_more = False
    range_end = prefix_end(key_prefix)
    while True:
        try:
            response: rpc_pb2.RangeResponse = yield rpc_pb2.RangeRequest(
                key=key, range_end=range_end, limit=page if paging else 0, revision=with_rev
            )
        except errors.Gone:
            if continue_:
                token = continue_token.encode(continue_key, key_prefix, -1)
                raise errors.Gone(INCONSISTENT_CONTINUE, continue_=token) from None
            raise errors.Gone(LIST_EXPIRED) from None
        except errors.InternalError as err:
            if FUTURE_REVISION not in err.message:
                raise
            current: rpc_pb2.RangeResponse = yield rpc_pb2.RangeRequest(
                key=key_prefix, range_end=range_end, count_only=True
            )
            raise _too_large(with_rev, current.header.revision) from None
        _validate_minimum(resource_version, response.header.revision)
        has_more = response.more
        if not response.kvs and response.more:
            raise errors.InternalError(
                "no results were found, but etcd indicated there were more values remaining"
            )
        for kv in response.kvs:
            if paging and len(items) >= limit:
                has_more = True
                break
            last_key = kv.key
            obj, _ = _decode(ctx, resource, kv)
            if predicate.matches(obj):
                items.append(obj)
        if not has_more or not paging or len(items) >= limit:
            break
        page = min(page * 2, MAX_LIMIT) if page < MAX_LIMIT else page
        key = last_key + b"\x00"
        if with_rev == 0:
            with_rev = response.header.revision
    if with_rev == 0:
        with_rev = response.header.revision
    next_token = ""
    remaining: int | None = None
    if has_more:
        next_token = continue_token.encode(last_key + b"\x00", key_prefix, with_rev)
        if predicate.empty():
            remaining = response.count - limit
    return items, ObjectList(items, str(with_rev), next_token, remaining)


# --- watch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawEvent:
    """A watch event before the store turns the object into a model."""

    type: str
    object: Obj
    resource_version: str


class WatchTranslator:
    """The etcd3 watcher's transform, sans-IO: etcd's watch responses in, the API server's
    events out (selectors applied with its MODIFIED -> ADDED/DELETED rule, DELETED carrying the
    previous object at the deleting revision, progress notifications as BOOKMARKs)."""

    def __init__(
        self, ctx: Context, resource: Resource, predicate: Predicate, allow_bookmarks: bool
    ) -> None:
        self.ctx = ctx
        self.resource = resource
        self.predicate = predicate
        self.allow_bookmarks = allow_bookmarks

    def _decode(self, kv: kv_pb2.KeyValue, revision: int) -> Obj | None:
        try:
            obj, _ = self.ctx.codec.decode(kv.value, self.resource.group_resource, kv.key, revision)
        except errors.StatusError as err:
            log.warning(
                "watch: skipping an object that does not decode: key=%s error=%s",
                kv.key.decode(errors="replace"),
                err.message,
            )
            return None
        return obj

    def initial(self, response: rpc_pb2.RangeResponse) -> list[RawEvent]:
        """The current objects as ADDED (a watch from resourceVersion "" or "0")."""
        events = []
        for kv in response.kvs:
            obj = self._decode(kv, kv.mod_revision)
            if obj is not None and self.predicate.matches(obj):
                events.append(RawEvent("ADDED", obj, str(kv.mod_revision)))
        return events

    def translate(self, response: rpc_pb2.WatchResponse) -> list[RawEvent]:
        if not response.events:
            if not self.allow_bookmarks:
                return []
            revision = str(response.header.revision)
            bookmark = {
                "kind": self.resource.kind,
                "apiVersion": self.resource.api_version,
                "metadata": {"resourceVersion": revision},
            }
            return [RawEvent("BOOKMARK", bookmark, revision)]
        out = []
        for event in response.events:
            translated = self._event(event)
            if translated is not None:
                out.append(translated)
        return out

    def _event(self, event: kv_pb2.Event) -> RawEvent | None:
        revision = event.kv.mod_revision
        rv = str(revision)
        old = (
            self._decode(event.prev_kv, revision)
            if event.HasField("prev_kv") and event.prev_kv.value
            else None
        )
        if event.type == kv_pb2.Event.DELETE:
            if old is None or not self.predicate.matches(old):
                return None
            return RawEvent("DELETED", old, rv)
        current = self._decode(event.kv, revision)
        if current is None:
            return None
        if event.kv.create_revision == event.kv.mod_revision:
            return RawEvent("ADDED", current, rv) if self.predicate.matches(current) else None
        if self.predicate.empty():
            return RawEvent("MODIFIED", current, rv)
        now = self.predicate.matches(current)
        before = old is not None and self.predicate.matches(old)
        if now and before:
            return RawEvent("MODIFIED", current, rv)
        if now:
            return RawEvent("ADDED", current, rv)
        if before:
            assert old is not None
            return RawEvent("DELETED", old, rv)
        return None


@dataclass(frozen=True)
class WatchStart:
    """Where an etcd watch for the API server's watch starts, and what comes before it."""

    key: bytes
    range_end: bytes
    start_revision: int
    initial: list[RawEvent]
    translator: WatchTranslator


def start_watch(
    ctx: Context,
    resource: Resource,
    namespace: str | None,
    *,
    resource_version: str = "",
    label_selector: str = "",
    field_selector: str = "",
    allow_bookmarks: bool = False,
) -> Op[WatchStart]:
    """From a resourceVersion: the events after it. From "" or "0": the current objects as
    ADDED, then the events after the revision they were read at (the etcd3 watcher's sync)."""
    predicate = Predicate.parse(resource, label_selector, field_selector)
    revision = parse_resource_version(resource_version)
    key_prefix = resource.prefix(ctx.root, namespace if resource.namespaced else None)
    range_end = prefix_end(key_prefix)
    translator = WatchTranslator(ctx, resource, predicate, allow_bookmarks)
    initial: list[RawEvent] = []
    if revision == 0:
        response: rpc_pb2.RangeResponse = yield rpc_pb2.RangeRequest(
            key=key_prefix, range_end=range_end
        )
        initial = translator.initial(response)
        revision = response.header.revision
    return WatchStart(key_prefix, range_end, revision + 1, initial, translator)


def watch_gone() -> errors.Gone:
    return errors.Gone(WATCH_EXPIRED)
