"""The synchronous object store: Kubernetes objects in etcd, under the keys and in the encoding
a kube-apiserver uses, with its semantics (``ops.py``, driven here over ``etcd.EtcdClient``).
Objects go in as ``kubernetes`` models or dicts and come out as models (``typed=True``, for kinds
the package has) or dicts.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from etcdpy.k8s import errors, objects, ops, ops_list, ops_watch
from etcdpy.k8s.codec import Codec
from etcdpy.k8s.etcd import Connection, EtcdClient, EtcdWatch
from etcdpy.k8s.resources import (
    DEFAULT_REGISTRY,
    Resource,
    ResourceRegistry,
    answers_to,
    from_crd,
)
from etcdpy.k8s.types import (
    KubeObject,
    ObjectList,
    Preconditions,
    Transformers,
    WatchEvent,
)

Kind = str | type | Resource

log = logging.getLogger(__name__)

_CONNECTION_FIELDS = ("cacert", "cert", "key", "user", "password", "timeout")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_uid() -> str:
    return str(uuid.uuid4())


class StoreBase:
    """What the sync and asyncio stores share: the context of the operations, the resolution
    of kinds, and the conversion of objects at the edges."""

    def __init__(
        self,
        *,
        root: str,
        registry: ResourceRegistry,
        transformers: Transformers | None,
        typed: bool,
        clock: Callable[[], datetime],
        new_uid: Callable[[], str],
    ) -> None:
        self._ctx = ops.Context(root, registry, Codec(transformers), clock, new_uid)
        self._typed = typed

    @property
    def root(self) -> str:
        return self._ctx.root

    @property
    def registry(self) -> ResourceRegistry:
        return self._ctx.registry

    def _out(self, obj: dict[str, Any]) -> KubeObject:
        return objects.to_model(obj, self._ctx.registry) if self._typed else obj

    def _page(self, page: ObjectList) -> ObjectList:
        return replace(page, items=[self._out(item) for item in page.items])

    def _event(self, event: ops_watch.RawEvent) -> WatchEvent | None:
        """The event with its object as a model; None (logged) when the object does not fit
        its model, as the API server's watcher skips objects it cannot decode."""
        try:
            obj = self._out(event.object)
        except errors.InternalError as err:
            log.warning("watch: skipping an object: %s", err.message)
            return None
        return WatchEvent(event.type, obj, event.resource_version)  # type: ignore[arg-type]

    def _in(self, obj: KubeObject) -> dict[str, Any]:
        plain = objects.to_dict(obj)
        if not isinstance(obj, dict) and not plain.get("kind"):
            # a model without apiVersion/kind: its class says which
            resource = self._ctx.registry.for_object(obj)
            plain = {"kind": resource.kind, "apiVersion": resource.api_version, **plain}
        return plain

    def _try_update(
        self, fn: Callable[[KubeObject], KubeObject | None]
    ) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        def apply(current: dict[str, Any]) -> dict[str, Any] | None:
            result = fn(self._out(current))
            return None if result is None else self._in(result)

        return apply


def _split_connection(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    connection = {k: kwargs.pop(k) for k in _CONNECTION_FIELDS if k in kwargs}
    return connection, kwargs


class ObjectStore(StoreBase):
    """Kubernetes objects in etcd, synchronously. Thread-safe."""

    def __init__(
        self,
        client: EtcdClient,
        *,
        root: str = "/registry",
        registry: ResourceRegistry = DEFAULT_REGISTRY,
        transformers: Transformers | None = None,
        typed: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        new_uid: Callable[[], str] = _new_uid,
    ) -> None:
        super().__init__(
            root=root,
            registry=registry,
            transformers=transformers,
            typed=typed,
            clock=clock,
            new_uid=new_uid,
        )
        self._client = client

    @classmethod
    def connect(cls, endpoints: str | Sequence[str], **kwargs: Any) -> ObjectStore:
        """A store on a new client: Connection's fields (cacert, user, ...) and the store's."""
        connection, store = _split_connection(dict(kwargs))
        return cls(EtcdClient(Connection.of(endpoints, **connection)), **store)

    @property
    def client(self) -> EtcdClient:
        return self._client

    def _run(self, op: ops.Op[ops.T]) -> ops.T:
        return ops.run(op, self._client.execute)

    def resolve(self, kind: Kind) -> Resource:
        """The resource of a kind name, short name, plural, model class or "plural.group"; an
        unknown name is looked up among the stored CustomResourceDefinitions."""
        try:
            return self._ctx.registry.resolve(kind)
        except errors.BadRequest:
            if not isinstance(kind, str):
                raise
            found = self._crd(kind)
            if found is None:
                raise
            return found

    def _crd(self, name: str) -> Resource | None:
        crds = self._ctx.registry.resolve("customresourcedefinitions.apiextensions.k8s.io")
        page = self._run(ops_list.list_(self._ctx, crds, None))[1]
        for crd in page.items:
            resource = from_crd(crd)
            if answers_to(resource, name):
                self._ctx.registry.register(resource)
                return resource
        return None

    def create(self, obj: KubeObject, *, ttl: int | None = None) -> KubeObject:
        return self._out(self._run(ops.create(self._ctx, self._in(obj), ttl=ttl)))

    def get(
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str = "",
    ) -> KubeObject:
        resource = self.resolve(kind)
        return self._out(self._run(ops.get(self._ctx, resource, name, namespace, resource_version)))

    def update(self, obj: KubeObject) -> KubeObject:
        return self._out(self._run(ops.update(self._ctx, self._in(obj))))

    def guaranteed_update(
        self,
        kind: Kind,
        name: str,
        fn: Callable[[KubeObject], KubeObject | None],
        *,
        namespace: str | None = None,
        preconditions: Preconditions | None = None,
    ) -> KubeObject:
        resource = self.resolve(kind)
        op = ops.guaranteed_update(
            self._ctx, resource, name, namespace, self._try_update(fn), preconditions
        )
        return self._out(self._run(op))

    def delete(
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str | None = None,
        preconditions: Preconditions | None = None,
        grace_period_seconds: int | None = None,
    ) -> KubeObject:
        resource = self.resolve(kind)
        op = ops.delete(self._ctx, resource, name, namespace, preconditions, grace_period_seconds)
        return self._out(self._run(op))

    def list(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ObjectList:
        resource = self.resolve(kind)
        op = ops_list.list_(
            self._ctx,
            resource,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            continue_=continue_,
            resource_version=resource_version,
            resource_version_match=resource_version_match,
        )
        return self._page(self._run(op)[1])

    def watch(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = False,
    ) -> ObjectWatch:
        resource = self.resolve(kind)
        start = self._run(
            ops_watch.start_watch(
                self._ctx,
                resource,
                namespace,
                resource_version=resource_version,
                label_selector=label_selector,
                field_selector=field_selector,
                allow_bookmarks=allow_bookmarks,
            )
        )
        etcd_watch = self._client.watch(
            start.key,
            start.range_end,
            start_revision=start.start_revision,
            progress_notify=allow_bookmarks,
            prev_kv=True,
        )
        return ObjectWatch(self, start, etcd_watch)

    def lister_watcher(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> StoreListerWatcher:
        return StoreListerWatcher(
            self, self.resolve(kind), namespace, label_selector, field_selector
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectWatch:
    """A watch of the object store (types.WatchStream): iterate for WatchEvents; ``stop()``
    from any thread ends the iteration; a compacted start raises ``errors.Gone`` from it."""

    def __init__(
        self, store: ObjectStore, start: ops_watch.WatchStart, etcd_watch: EtcdWatch
    ) -> None:
        self._store = store
        self._translator = start.translator
        self._pending: deque[ops_watch.RawEvent] = deque(start.initial)
        self._etcd_watch = etcd_watch
        self._stopped = threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            while not self._pending:
                if self._stopped.is_set():
                    raise StopIteration
                try:
                    response = next(self._etcd_watch)
                except errors.Gone:
                    raise ops_watch.watch_gone() from None
                self._pending.extend(self._translator.translate(response))
            if self._stopped.is_set():
                raise StopIteration
            event = self._store._event(self._pending.popleft())
            if event is not None:
                return event

    def stop(self) -> None:
        self._stopped.set()
        self._etcd_watch.cancel()

    def request_bookmark(self) -> None:
        """Asks etcd for a progress notification: a BOOKMARK when bookmarks are allowed."""
        self._etcd_watch.request_progress()

    def __enter__(self) -> ObjectWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StoreListerWatcher:
    """One kind (and namespace, selectors) of a store, as an informer lists and watches it."""

    def __init__(
        self,
        store: ObjectStore,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        field_selector: str,
    ) -> None:
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector

    def list(
        self,
        *,
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ObjectList:
        return self.store.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=limit,
            continue_=continue_,
            resource_version=resource_version,
            resource_version_match=resource_version_match,
        )

    def watch(self, *, resource_version: str = "", allow_bookmarks: bool = True) -> ObjectWatch:
        return self.store.watch(
            self.resource,
            namespace=self.namespace,
            resource_version=resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            allow_bookmarks=allow_bookmarks,
        )
