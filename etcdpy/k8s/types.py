"""The shapes the object store, the informers and the encryption providers share: an object
(a ``kubernetes`` model or a plain dict), a list page, a watch event and stream, the
list-and-watch source an informer runs on, delete preconditions, and the value transformers of
encryption at rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# An object as callers see it: a model of the ``kubernetes`` package (V1Pod, ...) or, for kinds
# it has no model for (and for stores built with typed=False), a dict of the object's JSON.
KubeObject = Any

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True, slots=True)
class ObjectList:
    """One page of a list: the items, the list's resourceVersion (the etcd revision it was read
    at), the continue token of the next page ("" on the last) and, when the API server would
    give it, how many items remain after this page."""

    items: list[KubeObject]
    resource_version: str
    continue_: str = ""
    remaining_item_count: int | None = None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A watch event as the API server sends it. For BOOKMARK the object carries only apiVersion,
    kind and metadata.resourceVersion; for DELETED it is the object as it was last stored, with
    the deleting revision as its resourceVersion."""

    type: EventType
    object: KubeObject
    resource_version: str


class WatchStream(Protocol):
    """An open watch: iterate for events (a compacted start raises errors.Gone from the
    iteration); ``stop()`` ends the iteration from any thread; usable as a context manager."""

    def __iter__(self) -> Iterator[WatchEvent]: ...

    def __next__(self) -> WatchEvent: ...

    def stop(self) -> None: ...

    def __enter__(self) -> WatchStream: ...

    def __exit__(self, *exc: object) -> None: ...


class ListerWatcher(Protocol):
    """What an informer lists and watches (client-go's ListerWatcher): one kind, optionally one
    namespace and selectors, fixed when it is made (``ObjectStore.lister_watcher``)."""

    def list(
        self,
        *,
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ObjectList: ...

    def watch(self, *, resource_version: str = "", allow_bookmarks: bool = True) -> WatchStream: ...


@dataclass(frozen=True, slots=True)
class Preconditions:
    """metav1.Preconditions: a delete or update goes ahead only if the stored object has this
    uid and/or resourceVersion (None: not checked)."""

    uid: str | None = None
    resource_version: str | None = None


class ValueTransformer(Protocol):
    """How one resource's values are stored (the API server's value.Transformer): ``etcd_key`` is
    the object's full etcd key (the authenticated data of AES-GCM). ``from_storage`` returns the
    plain bytes and whether they are stale (not written by the first, current provider)."""

    def to_storage(self, plain: bytes, etcd_key: bytes) -> bytes: ...

    def from_storage(self, stored: bytes, etcd_key: bytes) -> tuple[bytes, bool]: ...


class Transformers(Protocol):
    """The transformer of each group-resource ("secrets", "deployments.apps"); None: identity."""

    def for_resource(self, group_resource: str) -> ValueTransformer | None: ...
