"""The informer against etcdpy and etcd 3.4 through the object store: the first paginated list,
watch events, and a compaction while its watch is down, after which the relist must announce
exactly what it missed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import V1ConfigMap, V1ObjectMeta
from structlog.testing import capture_logs

from etcdpy.k8s.cache import label_index, namespace_index
from etcdpy.k8s.etcd import EtcdClient
from etcdpy.k8s.informer import Informer
from etcdpy.k8s.store import ObjectStore
from etcdpy.k8s.types import ListerWatcher, ObjectList, WatchStream
from tests.external_tools import Etcdctl
from tests.k8s.conftest import Server
from tests.k8s.test_informer import FAST, Recorder, wait_until


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    objects = ObjectStore(EtcdClient.connect(server.endpoint), root=server.root, typed=False)
    yield objects
    objects.close()


def config_map(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


class Gate:
    """A real ListerWatcher whose watches the test can break and hold back."""

    def __init__(self, inner: ListerWatcher) -> None:
        self.inner = inner
        self.open = threading.Event()
        self.open.set()
        self.streams: list[WatchStream] = []
        self.lists = 0

    def list(self, **kwargs: Any) -> ObjectList:
        self.lists += 1
        return self.inner.list(**kwargs)

    def watch(self, *, resource_version: str = "", allow_bookmarks: bool = True) -> WatchStream:
        self.open.wait(10)
        stream = self.inner.watch(
            resource_version=resource_version, allow_bookmarks=allow_bookmarks
        )
        self.streams.append(stream)
        return stream

    def break_watch(self) -> None:
        self.open.clear()
        for stream in self.streams:
            stream.stop()


def test_paginated_list_then_events(store: ObjectStore) -> None:
    for n in range(5):
        store.create(config_map(f"cm{n}", "team-a" if n % 2 else "team-b"))
    informer = Informer(
        store.lister_watcher("configmaps"),
        page_size=2,
        indexers={"namespace": namespace_index},
        backoff=FAST,
    )
    recorder = Recorder()
    informer.add_event_handler(recorder)
    informer.start()
    try:
        assert informer.wait_for_sync(10)
        assert sorted(e[1] for e in recorder.wait_for(5)) == [
            "team-a/cm1",
            "team-a/cm3",
            "team-b/cm0",
            "team-b/cm2",
            "team-b/cm4",
        ]
        assert len(informer.indexer.by_index("namespace", "team-a")) == 2
        created = store.create(config_map("late", "team-a"))
        changed = store.get("configmaps", "cm0", namespace="team-b")
        changed["data"] = {"k": "v"}
        changed = store.update(changed)
        store.delete("configmaps", "cm1", namespace="team-a")
        events = recorder.wait_for(8)[5:]
        assert [e[:2] for e in events] == [
            ("add", "team-a/late"),
            ("update", "team-b/cm0"),
            ("delete", "team-a/cm1"),
        ]
        assert events[0][2] == created["metadata"]["resourceVersion"]
        assert events[1][2] == changed["metadata"]["resourceVersion"]
        assert informer.indexer.get_by_key("team-a/cm1") is None
        cached = informer.indexer.get_by_key("team-b/cm0")
        assert cached is not None and cached["data"] == {"k": "v"}
    finally:
        begun = time.monotonic()
        informer.stop()
        assert time.monotonic() - begun < 1.0  # the open etcd watch is cancelled, not waited on


def test_compaction_while_the_watch_is_down_relists_with_the_right_diff(
    server: Server, store: ObjectStore
) -> None:
    for name in ("same", "changed", "vanished"):
        store.create(config_map(name))
    gate = Gate(store.lister_watcher("configmaps", namespace="default"))
    informer = Informer(gate, backoff=FAST)
    recorder = Recorder()
    informer.add_event_handler(recorder)
    informer.start()
    try:
        assert informer.wait_for_sync(10)
        recorder.wait_for(3)
        assert wait_until(lambda: len(gate.streams) == 1)
        gate.break_watch()  # the informer's next watch waits at the gate
        changed = store.get("configmaps", "changed")
        changed["data"] = {"v": "2"}
        changed = store.update(changed)
        store.delete("configmaps", "vanished")
        appeared = store.create(config_map("appeared"))
        revision = store.client.range(b"/").header.revision
        Etcdctl(server.endpoint).out("compact", str(revision))
        gate.open.set()
        events = recorder.wait_for(6, timeout=10)[3:]
        assert sorted(events) == [
            ("add", "default/appeared", appeared["metadata"]["resourceVersion"]),
            ("delete", "unknown:default/vanished", events_rv(recorder, "vanished")),
            ("update", "default/changed", changed["metadata"]["resourceVersion"]),
        ]
        assert gate.lists >= 2  # it relisted
        assert sorted(informer.indexer.list_keys()) == [
            "default/appeared",
            "default/changed",
            "default/same",
        ]
        assert len(recorder.seen()) == 6  # "same" was not announced again
    finally:
        informer.stop()


def events_rv(recorder: Recorder, name: str) -> str:
    """The resourceVersion the informer first saw ``name`` at (its last known state)."""
    return next(rv for kind, key, rv in recorder.seen() if key == f"default/{name}")


def test_an_undecodable_value_never_reaches_the_informer(store: ObjectStore) -> None:
    resource = store.resolve("configmaps")
    store.create(config_map("good"))
    informer = Informer(store.lister_watcher("configmaps"), backoff=FAST)
    recorder = Recorder()
    informer.add_event_handler(recorder)
    informer.start()
    try:
        assert informer.wait_for_sync(10)
        recorder.wait_for(1)
        # a value that arrives by watch: the store logs and skips it
        store.client.put(resource.key(store.root, "default", "garbage"), b"{not json")
        store.create(config_map("after"))
        assert [e[1] for e in recorder.wait_for(2)] == ["default/good", "default/after"]
        assert sorted(informer.indexer.list_keys()) == ["default/after", "default/good"]
    finally:
        informer.stop()


def test_an_undecodable_value_at_list_time_is_skipped_or_retried(store: ObjectStore) -> None:
    """The store either skips it in lists too, or fails the list with the key (as the API
    server answers 500): then the informer logs, backs off, and syncs once the value is gone."""
    resource = store.resolve("configmaps")
    bad_key = resource.key(store.root, "default", "garbage")
    store.client.put(bad_key, b"\x00not an object")
    store.create(config_map("good"))
    informer = Informer(store.lister_watcher("configmaps"), backoff=FAST)
    with capture_logs() as logs:
        informer.start()
        try:
            if not informer.wait_for_sync(0.5):
                failures = [e for e in logs if e["event"] == "list failed"]
                assert failures and "configmaps/default/garbage" in failures[0]["error"]
                assert len(failures) < 60  # backed off, not spinning
                store.client.delete(bad_key)
                assert informer.wait_for_sync(5)
            assert informer.indexer.list_keys() == ["default/good"]
        finally:
            informer.stop()


def test_models_from_a_typed_store_are_cached_and_indexed(server: Server) -> None:
    store = ObjectStore(EtcdClient.connect(server.endpoint), root=server.root)
    try:
        store.create(
            V1ConfigMap(metadata=V1ObjectMeta(name="m", namespace="ns", labels={"app": "x"}))
        )
        informer = Informer(
            store.lister_watcher("configmaps"), indexers={"app": label_index("app")}, backoff=FAST
        )
        informer.start()
        try:
            assert informer.wait_for_sync(10)
            (cached,) = informer.indexer.by_index("app", "x")
            assert isinstance(cached, V1ConfigMap)
            assert informer.indexer.list_keys() == ["ns/m"]
        finally:
            informer.stop()
    finally:
        store.close()
