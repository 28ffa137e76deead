"""The asyncio store drives the same operations: a round of each call on etcdpy and etcd 3.4."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes.client import V1ConfigMap, V1ObjectMeta

from etcdpy.k8s import errors
from etcdpy.k8s.aio import AsyncObjectStore
from etcdpy.k8s.types import Preconditions, WatchEvent
from tests.k8s.conftest import Server
from tests.k8s.store_support import NOW, pod

TIMEOUT = 10.0


def make(server: Server) -> AsyncObjectStore:
    uids = iter(f"uid-{i}" for i in range(1000))
    return AsyncObjectStore.connect(
        server.endpoint, root=server.root, clock=lambda: NOW, new_uid=lambda: next(uids)
    )


async def crud(server: Server) -> None:
    async with make(server) as store:
        created = await store.create(pod("a", labels={"x": "1"}))
        assert created.metadata.uid == "uid-0"
        raw = (await store.client.range(f"{store.root}/pods/default/a".encode())).kvs[0].value
        assert json.loads(raw)["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
        got = await store.get("po", "a")
        assert got.metadata.resource_version == created.metadata.resource_version
        got.spec.containers[0].image = "nginx"
        updated = await store.update(got)
        assert updated.metadata.generation == 2

        def label(current: Any) -> Any:
            current.metadata.labels = {"x": "2"}
            return current

        relabeled = await store.guaranteed_update("pods", "a", label)
        assert relabeled.metadata.labels == {"x": "2"}
        with pytest.raises(errors.Conflict):
            await store.update(updated)
        with pytest.raises(errors.AlreadyExists):
            await store.create(pod("a"))
        await store.create(V1ConfigMap(metadata=V1ObjectMeta(name="c"), data={"k": "v"}))
        page = await store.list("pods", limit=1)
        assert [p.metadata.name for p in page.items] == ["a"] and page.continue_ == ""
        with pytest.raises(errors.Conflict):
            await store.delete("pods", "a", preconditions=Preconditions(uid="nope"))
        deleted = await store.delete("pods", "a")
        assert int(deleted.metadata.resource_version) > int(relabeled.metadata.resource_version)
        with pytest.raises(errors.NotFound):
            await store.get("pods", "a")


async def watch(server: Server) -> list[WatchEvent]:
    async with make(server) as store:
        start = await store.create(pod("w0"))
        events: list[WatchEvent] = []
        stream = await store.watch(
            "pods", resource_version=start.metadata.resource_version, allow_bookmarks=True
        )
        async with stream:
            await store.create(pod("w1"))
            await store.delete("pods", "w1")
            await stream.request_bookmark()
            async with asyncio.timeout(TIMEOUT):
                async for event in stream:
                    events.append(event)
                    if event.type == "BOOKMARK":
                        break
        return events


def test_async_crud(server: Server) -> None:
    asyncio.run(crud(server))


def test_async_watch(server: Server) -> None:
    events = asyncio.run(watch(server))
    assert [e.type for e in events] == ["ADDED", "DELETED", "BOOKMARK"]
    assert events[1].object.metadata.name == "w1"
