"""Watches as the API server's etcd3 watcher makes them, on etcdpy and etcd 3.4."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from etcdpy.k8s import errors
from etcdpy.k8s.store import ObjectStore, ObjectWatch
from etcdpy.k8s.types import WatchEvent
from etcdpy.pb.etcdserverpb import rpc_pb2
from tests.k8s.conftest import Server
from tests.k8s.store_support import make_store, pod

TIMEOUT = 10.0


@pytest.fixture
def store(server: Server) -> Iterator[ObjectStore]:
    with make_store(server) as store:
        yield store


def take(watch: ObjectWatch, count: int) -> list[WatchEvent]:
    """The next ``count`` events; the watch is stopped after TIMEOUT seconds."""
    timer = threading.Timer(TIMEOUT, watch.stop)
    timer.start()
    events: list[WatchEvent] = []
    try:
        for event in watch:
            events.append(event)
            if len(events) == count:
                break
    finally:
        timer.cancel()
    assert len(events) == count, events
    return events


def summary(events: list[WatchEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.object.metadata.name) for e in events]


def relabel(store: ObjectStore, name: str, labels: dict[str, str]) -> Any:
    def change(current: Any) -> Any:
        current.metadata.labels = labels
        return current

    return store.guaranteed_update("pods", name, change)


def test_watch_from_a_resource_version_sees_what_follows(store: ObjectStore) -> None:
    before = store.create(pod("old"))
    with store.watch("pods", resource_version=before.metadata.resource_version) as watch:
        created = store.create(pod("new"))
        modified = relabel(store, "new", {"a": "b"})
        deleted = store.delete("pods", "new")
        events = take(watch, 3)
    assert summary(events) == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new")]
    assert [e.resource_version for e in events] == [
        created.metadata.resource_version,
        modified.metadata.resource_version,
        deleted.metadata.resource_version,
    ]
    gone = events[2].object
    assert gone.metadata.labels == {"a": "b"}  # the object as it was before the delete
    assert gone.metadata.resource_version == deleted.metadata.resource_version


def test_watch_from_zero_starts_with_the_current_objects(store: ObjectStore) -> None:
    store.create(pod("a", namespace="x"))
    store.create(pod("b", namespace="y"))
    with store.watch("pods", resource_version="0") as watch:
        initial = take(watch, 2)
        store.create(pod("c", namespace="x"))
        later = take(watch, 1)
    assert summary(initial) == [("ADDED", "a"), ("ADDED", "b")]
    assert summary(later) == [("ADDED", "c")]
    with store.watch("pods", namespace="y") as watch:
        assert summary(take(watch, 1)) == [("ADDED", "b")]


def test_selectors_turn_modifications_into_adds_and_deletes(store: ObjectStore) -> None:
    start = store.create(pod("w", labels={"tier": "back"}))
    store.create(pod("other", labels={"tier": "back"}))
    with store.watch(
        "pods", resource_version=start.metadata.resource_version, label_selector="tier=front"
    ) as watch:
        relabel(store, "other", {"tier": "back", "x": "1"})  # never matches: no event
        relabel(store, "w", {"tier": "front"})
        relabel(store, "w", {"tier": "front", "v": "2"})
        relabel(store, "w", {"tier": "back"})
        events = take(watch, 3)
    assert summary(events) == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert events[2].object.metadata.labels == {"tier": "front", "v": "2"}


def test_bookmarks_come_from_progress_notifications(store: ObjectStore) -> None:
    start = store.create(pod("b"))
    with store.watch(
        "pods", resource_version=start.metadata.resource_version, allow_bookmarks=True
    ) as watch:
        watch.request_bookmark()
        (bookmark,) = take(watch, 1)
    assert bookmark.type == "BOOKMARK"
    assert int(bookmark.resource_version) >= int(start.metadata.resource_version)
    assert bookmark.object.metadata.resource_version == bookmark.resource_version
    assert bookmark.object.kind == "Pod"


def test_a_compacted_start_is_gone(store: ObjectStore) -> None:
    first = store.create(pod("c1"))
    store.create(pod("c2"))
    store.create(pod("c3"))  # compaction at c3's revision leaves c2's (the start) behind
    revision = int(store.client.range(b"/").header.revision)
    store.client.execute(rpc_pb2.CompactionRequest(revision=revision, physical=True))
    watch = store.watch("pods", resource_version=first.metadata.resource_version)
    timer = threading.Timer(TIMEOUT, watch.stop)
    timer.start()
    try:
        with pytest.raises(errors.Gone) as caught:
            next(watch)
    finally:
        timer.cancel()
        watch.stop()
    assert caught.value.message == "The resourceVersion for the provided watch is too old."
    assert caught.value.code == 410


def test_undecodable_values_are_logged_and_skipped(
    store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    start = store.create(pod("ok1"))
    with store.watch("pods", resource_version=start.metadata.resource_version) as watch:
        store.client.put(f"{store.root}/pods/default/broken".encode(), b"\x01garbage")
        misshapen = (
            b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"odd","namespace":"default"},'
            b'"spec":{"containers":"x"}}'
        )
        store.client.put(f"{store.root}/pods/default/odd".encode(), misshapen)
        store.create(pod("ok2"))
        with caplog.at_level(logging.WARNING, logger="etcdpy.k8s"):
            events = take(watch, 1)
    assert summary(events) == [("ADDED", "ok2")]
    assert "pods/default/broken" in caplog.text
    assert "unable to convert Pod 'default/odd' to V1Pod" in caplog.text


def test_stop_from_another_thread_ends_the_iteration(store: ObjectStore) -> None:
    watch = store.watch("pods", resource_version="0")
    threading.Timer(0.2, watch.stop).start()
    assert list(watch) == []
