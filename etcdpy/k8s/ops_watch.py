"""Watches as the API server's etcd3 watcher makes them (storage/etcd3/watcher.go), sans-IO:
where the etcd watch starts (with the initial ADDED events of a watch from "" or "0") and the
translation of etcd's watch responses into the API server's events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from etcdpy.k8s import errors
from etcdpy.k8s.ops import Context, Obj, Op, parse_resource_version, prefix_end
from etcdpy.k8s.ops_list import Predicate
from etcdpy.k8s.resources import Resource
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.mvccpb import kv_pb2

WATCH_EXPIRED = "The resourceVersion for the provided watch is too old."

log = logging.getLogger(__name__)


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
