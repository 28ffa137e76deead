"""The informer's edge cases, on an in-memory ListerWatcher (tests/k8s/fake_source.py): pages,
the relist diff after a compaction, bookmarks, resync, handlers that are slow or raise, a
watch that fails, stop. test_informer_servers.py runs it against etcdpy and etcd 3.4."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from etcdpy.k8s import errors
from etcdpy.k8s.cache import DeletedFinalStateUnknown, namespace_index
from etcdpy.k8s.informer import Backoff, Informer
from tests.k8s.fake_source import FakeSource

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Recorder:
    """An EventHandler writing down what it heard as (type, key, resourceVersion)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    @staticmethod
    def _id(obj: Any) -> tuple[str, str]:
        if isinstance(obj, DeletedFinalStateUnknown):
            return f"unknown:{obj.key}", obj.obj["metadata"]["resourceVersion"]
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}", meta["resourceVersion"]

    def _note(self, kind: str, obj: Any) -> None:
        key, rv = self._id(obj)
        with self.lock:
            self.events.append((kind, key, rv))

    def on_add(self, obj: Any) -> None:
        self._note("add", obj)

    def on_update(self, old: Any, new: Any) -> None:
        self._note("update", new)

    def on_delete(self, obj: Any) -> None:
        self._note("delete", obj)

    def seen(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.events)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, str, str]]:
        assert wait_until(lambda: len(self.seen()) >= count, timeout), self.seen()
        return self.seen()


def started(source: FakeSource, **kwargs: Any) -> tuple[Informer, Recorder]:
    informer = Informer(source, backoff=FAST, **kwargs)
    recorder = Recorder()
    informer.add_event_handler(recorder)
    informer.start()
    assert informer.wait_for_sync(5)
    return informer, recorder


def test_lists_in_pages_then_watches_from_the_list_revision() -> None:
    source = FakeSource()
    for n in range(7):
        source.put(f"cm{n}")
    informer, recorder = started(source, page_size=3, indexers={"namespace": namespace_index})
    try:
        assert [c["limit"] for c in source.list_calls] == [3, 3, 3]
        assert [c["continue"] for c in source.list_calls] == ["", "3", "6"]
        assert len(recorder.wait_for(7)) == 7
        assert {e[0] for e in recorder.seen()} == {"add"}
        assert informer.last_sync_resource_version == "8"
        assert wait_until(lambda: source.watch_calls == ["8"])
        source.put("cm0", tier="x")
        source.delete("cm1")
        source.put("new", namespace="other")
        assert recorder.wait_for(10)[7:] == [
            ("update", "default/cm0", "9"),
            ("delete", "default/cm1", "10"),
            ("add", "other/new", "11"),
        ]
        assert informer.last_sync_resource_version == "11"
        assert len(informer.indexer.by_index("namespace", "default")) == 6
        assert informer.indexer.get_by_key("default/cm1") is None
    finally:
        informer.stop()


def test_relist_after_compaction_delivers_the_diff_and_unknown_deletions() -> None:
    source = FakeSource()
    for name in ("same", "changed", "vanished"):
        source.put(name)
    informer, recorder = started(source)
    try:
        recorder.wait_for(3)
        assert wait_until(lambda: len(source.streams) == 1)
        source.watch_failures.append(errors.ServiceUnavailable("etcd is away"))
        source.break_watches(errors.ServiceUnavailable("connection lost"))
        # meanwhile (the informer hears nothing of it)
        assert wait_until(lambda: len(source.streams) == 0)
        with source.lock:
            source.history.clear()
        source.streams.clear()
        source.put("changed", v="2")
        source.delete("vanished")
        source.put("appeared")
        source.compact()
        before = len(source.list_calls)
        events = recorder.wait_for(6)
        assert sorted(events[3:]) == [
            ("add", "default/appeared", "7"),
            ("delete", "unknown:default/vanished", "4"),
            ("update", "default/changed", "5"),
        ]
        assert len(source.list_calls) == before + 1  # one relist
        keys = ["default/appeared", "default/changed", "default/same"]
        assert sorted(informer.indexer.list_keys()) == keys
        time.sleep(0.05)
        assert len(recorder.seen()) == 6  # "same" is not re-announced
    finally:
        informer.stop()


def test_a_watch_that_ends_is_reopened_from_the_last_revision_and_bookmarks_move_it() -> None:
    source = FakeSource()
    source.put("a")
    informer, recorder = started(source)
    try:
        assert wait_until(lambda: len(source.streams) == 1)
        source.bookmark()
        assert wait_until(lambda: informer.last_sync_resource_version == "3")
        source.break_watches()  # the server closed it
        assert wait_until(lambda: source.watch_calls[-1:] == ["3"] and len(source.streams) == 1)
        source.put("b")
        assert recorder.wait_for(2)[1] == ("add", "default/b", "4")
        assert len(source.list_calls) == 1  # no relist needed
    finally:
        informer.stop()


def test_a_failing_list_is_retried_with_backoff() -> None:
    source = FakeSource()
    source.put("a")
    calls = 0
    real_list = source.list

    def flaky(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise errors.ServiceUnavailable("no leader")
        return real_list(**kwargs)

    source.list = flaky  # type: ignore[method-assign]
    informer = Informer(source, backoff=FAST)
    informer.start()
    try:
        assert informer.wait_for_sync(5)
        assert calls == 3
        assert informer.indexer.list_keys() == ["default/a"]
    finally:
        informer.stop()


def test_resync_redelivers_every_cached_object_as_an_update() -> None:
    source = FakeSource()
    source.put("a")
    source.put("b")
    informer, recorder = started(source, resync_period=0.05)
    try:
        events = recorder.wait_for(6, timeout=3)
        updates = [e for e in events[2:] if e[0] == "update"]
        assert {e[1] for e in updates} >= {"default/a", "default/b"}
    finally:
        informer.stop()


def test_a_slow_handler_blocks_neither_the_watch_nor_other_handlers() -> None:
    source = FakeSource()
    release = threading.Event()
    slow_calls: list[str] = []

    def slow_add(obj: Any) -> None:
        slow_calls.append(obj["metadata"]["name"])
        release.wait(5)

    informer = Informer(source, backoff=FAST)
    informer.add_event_handler(on_add=slow_add)
    fast = Recorder()
    informer.add_event_handler(fast)
    informer.start()
    try:
        assert informer.wait_for_sync(5)
        assert wait_until(lambda: len(source.streams) == 1)
        for n in range(50):
            source.put(f"p{n}")
        assert len(fast.wait_for(50)) == 50
        assert informer.indexer.get_by_key("default/p49") is not None
        assert slow_calls == ["p0"]
        assert informer.pending_notifications() == 49
        release.set()
        assert wait_until(lambda: len(slow_calls) == 50)
    finally:
        release.set()
        informer.stop()


def test_a_raising_handler_is_logged_and_keeps_getting_events() -> None:
    source = FakeSource()
    seen: list[str] = []

    def broken(obj: Any) -> None:
        seen.append(obj["metadata"]["name"])
        raise RuntimeError("handler bug")

    informer = Informer(source, backoff=FAST, name="broken")
    informer.add_event_handler(on_add=broken)
    with capture_logs() as logs:
        informer.start()
        try:
            assert informer.wait_for_sync(5)
            assert wait_until(lambda: len(source.streams) == 1)
            source.put("a")
            source.put("b")
            assert wait_until(lambda: seen == ["a", "b"])
        finally:
            informer.stop()
    failures = [entry for entry in logs if entry["event"] == "informer handler failed"]
    assert len(failures) == 2
    assert failures[0]["error"] == "RuntimeError('handler bug')"
    assert failures[0]["informer"] == "broken"


def test_a_handler_added_late_hears_adds_for_the_cache() -> None:
    source = FakeSource()
    source.put("a")
    informer, _ = started(source)
    try:
        late = Recorder()
        informer.add_event_handler(late)
        assert late.wait_for(1) == [("add", "default/a", "2")]
        with pytest.raises(TypeError):
            informer.add_event_handler(late, on_add=print)
    finally:
        informer.stop()


def test_stop_ends_every_thread_promptly() -> None:
    source = FakeSource()
    source.put("a")
    before = {t.ident for t in threading.enumerate()}
    informer, _ = started(source, resync_period=10)
    informer.add_event_handler(on_add=lambda obj: None)
    assert wait_until(lambda: len(source.streams) == 1)
    begun = time.monotonic()
    informer.stop()
    assert time.monotonic() - begun < 1.0
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before
    assert source.streams == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Informer(FakeSource(), resync_period=-1)
    with pytest.raises(ValueError):
        Informer(FakeSource(), page_size=-5)
    informer = Informer(FakeSource(), backoff=FAST)
    informer.start()
    try:
        with pytest.raises(RuntimeError):
            informer.start()
    finally:
        informer.stop()


def test_an_expired_continue_token_falls_back_to_one_list_without_pages() -> None:
    source = FakeSource()
    for n in range(5):
        source.put(f"cm{n}")
    real_list = source.list

    def expiring(**kwargs: Any) -> Any:
        if kwargs.get("continue_"):
            raise errors.Gone("The provided continue parameter is too old")
        return real_list(**kwargs)

    source.list = expiring  # type: ignore[method-assign]
    informer = Informer(source, page_size=2, backoff=FAST)
    informer.start()
    try:
        assert informer.wait_for_sync(5)
        assert [c["limit"] for c in source.list_calls] == [2, 0]
        assert len(informer.indexer.list_keys()) == 5
    finally:
        informer.stop()
