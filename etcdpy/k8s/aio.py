"""The object store on asyncio: the same operations as ``store.ObjectStore`` (``ops.py``, driven
here over ``etcd.AsyncEtcdClient``), with ``async def`` methods; a watch is an async iterator
with ``async stop()``. Create it inside the running event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from etcdpy.k8s import errors, ops, ops_list, ops_watch
from etcdpy.k8s.etcd import AsyncEtcdClient, AsyncEtcdWatch, Connection
from etcdpy.k8s.resources import (
    DEFAULT_REGISTRY,
    Resource,
    ResourceRegistry,
    answers_to,
    from_crd,
)
from etcdpy.k8s.store import Kind, StoreBase, _new_uid, _split_connection, _utcnow
from etcdpy.k8s.types import KubeObject, ObjectList, Preconditions, Transformers, WatchEvent


class AsyncObjectStore(StoreBase):
    """Kubernetes objects in etcd, on asyncio."""

    def __init__(
        self,
        client: AsyncEtcdClient,
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
    def connect(cls, endpoints: str | Sequence[str], **kwargs: Any) -> AsyncObjectStore:
        connection, store = _split_connection(dict(kwargs))
        return cls(AsyncEtcdClient(Connection.of(endpoints, **connection)), **store)

    @property
    def client(self) -> AsyncEtcdClient:
        return self._client

    async def _run(self, op: ops.Op[ops.T]) -> ops.T:
        return await ops.run_async(op, self._client.execute)

    async def resolve(self, kind: Kind) -> Resource:
        """As ``ObjectStore.resolve``: unknown names are looked up among the stored CRDs."""
        try:
            return self._ctx.registry.resolve(kind)
        except errors.BadRequest:
            if not isinstance(kind, str):
                raise
            crds = self._ctx.registry.resolve("customresourcedefinitions.apiextensions.k8s.io")
            page = (await self._run(ops_list.list_(self._ctx, crds, None)))[1]
            for crd in page.items:
                resource = from_crd(crd)
                if answers_to(resource, kind):
                    self._ctx.registry.register(resource)
                    return resource
            raise

    async def create(self, obj: KubeObject, *, ttl: int | None = None) -> KubeObject:
        return self._out(await self._run(ops.create(self._ctx, self._in(obj), ttl=ttl)))

    async def get(
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str = "",
    ) -> KubeObject:
        resource = await self.resolve(kind)
        op = ops.get(self._ctx, resource, name, namespace, resource_version)
        return self._out(await self._run(op))

    async def update(self, obj: KubeObject) -> KubeObject:
        return self._out(await self._run(ops.update(self._ctx, self._in(obj))))

    async def guaranteed_update(
        self,
        kind: Kind,
        name: str,
        fn: Callable[[KubeObject], KubeObject | None],
        *,
        namespace: str | None = None,
        preconditions: Preconditions | None = None,
    ) -> KubeObject:
        resource = await self.resolve(kind)
        op = ops.guaranteed_update(
            self._ctx, resource, name, namespace, self._try_update(fn), preconditions
        )
        return self._out(await self._run(op))

    async def delete(
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str | None = None,
        preconditions: Preconditions | None = None,
        grace_period_seconds: int | None = None,
    ) -> KubeObject:
        resource = await self.resolve(kind)
        op = ops.delete(self._ctx, resource, name, namespace, preconditions, grace_period_seconds)
        return self._out(await self._run(op))

    async def list(
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
        resource = await self.resolve(kind)
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
        return self._page((await self._run(op))[1])

    async def watch(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = False,
    ) -> AsyncObjectWatch:
        resource = await self.resolve(kind)
        start = await self._run(
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
        etcd_watch = await self._client.watch(
            start.key,
            start.range_end,
            start_revision=start.start_revision,
            progress_notify=allow_bookmarks,
            prev_kv=True,
        )
        return AsyncObjectWatch(self, start, etcd_watch)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncObjectStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncObjectWatch:
    """An asyncio watch: ``async for event in watch``; ``await stop()`` ends it; a compacted
    start raises ``errors.Gone`` from the iteration."""

    def __init__(
        self, store: AsyncObjectStore, start: ops_watch.WatchStart, etcd_watch: AsyncEtcdWatch
    ) -> None:
        self._store = store
        self._translator = start.translator
        self._pending: deque[ops_watch.RawEvent] = deque(start.initial)
        self._etcd_watch = etcd_watch
        self._stopped = False

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            while not self._pending:
                if self._stopped:
                    raise StopAsyncIteration
                try:
                    response = await self._etcd_watch.__anext__()
                except errors.Gone:
                    raise ops_watch.watch_gone() from None
                self._pending.extend(self._translator.translate(response))
            if self._stopped:
                raise StopAsyncIteration
            event = self._store._event(self._pending.popleft())
            if event is not None:
                return event

    async def stop(self) -> None:
        self._stopped = True
        await self._etcd_watch.cancel()

    async def request_bookmark(self) -> None:
        await self._etcd_watch.request_progress()

    async def __aenter__(self) -> AsyncObjectWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
