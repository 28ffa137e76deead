"""client-go's thread-safe indexed store (``tools/cache/thread_safe_store.go``, ``index.go``):
objects by their cache key ("<namespace>/<name>", or "<name>"), and any number of indexes,
each an ``IndexFunc`` that gives an object's index values ("the namespace", "the value of label
app", ...). ``by_index(index, value)`` answers from the index, not by scanning.

An informer writes it; controllers read it. Readers get the stored objects themselves: treat
them as read-only (client-go's rule), copy before changing one.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from etcdpy.k8s import meta
from etcdpy.k8s.types import KubeObject

__all__ = [
    "NAMESPACE_INDEX",
    "DeletedFinalStateUnknown",
    "IndexFunc",
    "Indexer",
    "label_index",
    "namespace_index",
    "object_key",
]

IndexFunc = Callable[[KubeObject], list[str]]

NAMESPACE_INDEX = "namespace"  # client-go's cache.NamespaceIndex


def namespace_index(obj: KubeObject) -> list[str]:
    """client-go's MetaNamespaceIndexFunc: the object's namespace ("" for cluster-scoped)."""
    return [meta.namespace(obj)]


def label_index(label: str) -> IndexFunc:
    """An index of the value of one label (objects without the label are not indexed)."""

    def index(obj: KubeObject) -> list[str]:
        value = meta.labels(obj).get(label)
        return [] if value is None else [value]

    return index


@dataclass(frozen=True)
class DeletedFinalStateUnknown:
    """An object the informer found gone on a relist: it missed the delete event, so ``obj`` is
    the last state it knew, not the state at deletion (client-go's type of the same name)."""

    key: str
    obj: KubeObject


def object_key(obj: KubeObject | DeletedFinalStateUnknown) -> str:
    """client-go's DeletionHandlingMetaNamespaceKeyFunc."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    return meta.cache_key(obj)


class UnknownIndex(KeyError):
    """``by_index`` was asked for an index the indexer does not have."""


class Indexer:
    """Objects by key plus their indexes; every method takes one lock."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._lock = threading.RLock()
        self._items: dict[str, KubeObject] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        # index name -> index value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    # -- reading ---------------------------------------------------------------------------

    def get_by_key(self, key: str) -> KubeObject | None:
        with self._lock:
            return self._items.get(key)

    def get(self, obj: KubeObject) -> KubeObject | None:
        return self.get_by_key(meta.cache_key(obj))

    def list(self) -> builtins.list[KubeObject]:
        with self._lock:
            return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def by_index(self, index: str, value: str) -> builtins.list[KubeObject]:
        with self._lock:
            return [self._items[key] for key in sorted(self._keys_of(index, value))]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        with self._lock:
            return sorted(self._keys_of(index, value))

    def list_index_values(self, index: str) -> builtins.list[str]:
        with self._lock:
            return sorted(self._index(index))

    def _index(self, index: str) -> dict[str, set[str]]:
        try:
            return self._indices[index]
        except KeyError:
            raise UnknownIndex(f"index {index!r} does not exist") from None

    def _keys_of(self, index: str, value: str) -> set[str]:
        return self._index(index).get(value, set())

    # -- writing ---------------------------------------------------------------------------

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """More indexes, built over what is stored already."""
        with self._lock:
            clash = set(indexers) & set(self._indexers)
            if clash:
                raise ValueError(f"indexer conflict: {sorted(clash)}")
            built: dict[str, dict[str, set[str]]] = {name: {} for name in indexers}
            for name, func in indexers.items():
                for key, obj in self._items.items():
                    for value in func(obj):
                        built[name].setdefault(value, set()).add(key)
            self._indexers.update(indexers)
            self._indices.update(built)

    def put(self, obj: KubeObject) -> KubeObject | None:
        """Add or replace the object under its key; the object it replaced, if any."""
        key = meta.cache_key(obj)
        with self._lock:
            old = self._items.get(key)
            self._reindex(key, old, obj)  # first: an index function that raises changes nothing
            self._items[key] = obj
            return old

    def delete(self, key: str) -> KubeObject | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._reindex(key, old, None)
            return old

    def replace(self, objects: Iterable[KubeObject]) -> None:
        """Everything at once (a relist): the old contents and indexes are dropped."""
        items = {meta.cache_key(obj): obj for obj in objects}
        with self._lock:
            indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}
            for name, func in self._indexers.items():
                for key, obj in items.items():
                    for value in func(obj):
                        indices[name].setdefault(value, set()).add(key)
            self._items, self._indices = items, indices

    def _reindex(self, key: str, old: KubeObject | None, new: KubeObject | None) -> None:
        changes = [
            (
                self._indices[name],
                set(func(old)) if old is not None else set(),
                set(func(new)) if new is not None else set(),
            )
            for name, func in self._indexers.items()
        ]
        for index, old_values, new_values in changes:
            for value in old_values - new_values:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]  # no empty sets left behind (client-go's leak fix)
            for value in new_values - old_values:
                index.setdefault(value, set()).add(key)
