"""Lists as the API server's GetList makes them (storage/etcd3/store.go), sans-IO like the
rest of ``ops``: the selection predicate, ListOptions' validation, and the paging loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcdpy.k8s import continue_token, errors
from etcdpy.k8s.ops import (
    FUTURE_REVISION,
    MAX_LIMIT,
    Context,
    Obj,
    Op,
    decode_kv,
    parse_resource_version,
    prefix_end,
    too_large,
    validate_minimum,
)
from etcdpy.k8s.resources import Resource
from etcdpy.k8s.selectors import FieldSelector, LabelSelector
from etcdpy.k8s.types import ObjectList
from etcdpy.pb.etcdserverpb import rpc_pb2

LIST_EXPIRED = "The resourceVersion for the provided list is too old."
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


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
            raise too_large(with_rev, current.header.revision) from None
        validate_minimum(resource_version, response.header.revision)
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
            obj, _ = decode_kv(ctx, resource, kv)
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
