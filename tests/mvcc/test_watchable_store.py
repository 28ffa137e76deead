"""Targeted tests of the watchable store: writers never wait, slow watchers cost bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.watchable_store import WatchableStore
from etcdpy.mvcc.watcher import ERR_DUPLICATE_ID, ERR_EMPTY_RANGE, WatchResponse, WatchStream


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WatchableStore]:
    s = WatchableStore(Backend(tmp_path / "db"), stream_capacity=8, stream_max_events=32)
    yield s
    s.close()


def _put(store: WatchableStore, key: bytes, value: bytes) -> None:
    with store.write() as txn:
        txn.put(key, value)


def _settle(store: WatchableStore, stream: WatchStream) -> list[WatchResponse]:
    out: list[WatchResponse] = []
    for _ in range(10_000):
        out.extend(stream.drain())
        if not store.has_pending_work:
            return out
        store.move_victims()
        store.sync_watchers()
    raise AssertionError("never settled")


def _revs(responses: list[WatchResponse], watch_id: int) -> list[int]:
    return [
        e.kv.mod_revision
        for r in responses
        if r.watch_id == watch_id and r.batch is not None
        for e in r.events
    ]


def test_a_stream_that_never_reads_holds_bounded_memory(store: WatchableStore) -> None:
    slow = store.new_stream()
    fast = store.new_stream()
    slow_id = slow.watch(b"k", b"l")
    fast_id = fast.watch(b"k", b"l")
    got_fast: list[WatchResponse] = []
    for i in range(2000):
        _put(store, b"k%d" % (i % 50), b"v" * 100)  # never blocks, whatever the slow one does
        got_fast.extend(fast.drain())
        assert len(slow) <= slow.capacity + len(slow.watchers)
        assert slow.queued_events <= slow.max_events
        if i % 100 == 0:
            store.move_victims()
            store.sync_watchers()
    # The slow watcher was parked holding one revision, not two thousand.
    assert store.victims
    assert all(len(b.events) == 1 for b in store.victims.values())
    assert _revs(got_fast, fast_id) == list(range(2, 2002))
    # Once it reads again it catches up from history: everything, in order, once.
    got_slow = _settle(store, slow)
    assert _revs(got_slow, slow_id) == list(range(2, 2002))
    assert not store.victims and slow_id in [w.id for w in store.synced]


def test_a_parked_watcher_behind_a_compaction_gets_the_compacted_response(
    store: WatchableStore,
) -> None:
    slow = store.new_stream()
    wid = slow.watch(b"a", None)
    for i in range(60):
        _put(store, b"a", b"%d" % i)
    assert store.victims  # it stopped getting events once its queue was full
    compact_rev = store.current_revision
    store.compact(compact_rev)
    got = _settle(store, slow)
    last = got[-1]
    assert last.watch_id == wid and last.canceled and last.compact_revision == compact_rev
    revs = _revs(got, wid)
    assert revs == list(range(2, 2 + len(revs)))  # a gapless prefix before the end
    assert revs[-1] + 1 < compact_rev


def test_history_then_live_without_gap_or_duplicate(store: WatchableStore) -> None:
    for i in range(5):
        _put(store, b"x", b"%d" % i)
    stream = store.new_stream()
    wid = stream.watch(b"x", None, start_rev=2)
    _put(store, b"x", b"live-before-sync")  # written while the watcher is still unsynced
    store.sync_watchers()
    _put(store, b"x", b"live")
    got = _settle(store, stream)
    assert _revs(got, wid) == [2, 3, 4, 5, 6, 7, 8]


def test_history_is_cut_after_batch_max_revs(tmp_path: Path) -> None:
    store = WatchableStore(Backend(tmp_path / "db"), batch_max_revs=3)
    try:
        for i in range(7):
            _put(store, b"x", b"%d" % i)
        stream = store.new_stream()
        wid = stream.watch(b"x", None, start_rev=1)
        got = _settle(store, stream)
        sizes = [len(r.events) for r in got if r.batch is not None]
        assert sizes == [3, 3, 1]
        assert _revs(got, wid) == list(range(2, 9))
    finally:
        store.close()


def test_create_errors_use_etcds_words(store: WatchableStore) -> None:
    stream = store.new_stream()
    assert stream.watch(b"b", b"a") == -1
    assert stream.watch(b"a", None, watch_id=5) == 5
    assert stream.watch(b"a", None, watch_id=5) == -1
    assert stream.watch(b"a", None) == 0
    got = stream.drain()
    assert [(r.watch_id, r.created, r.canceled, r.cancel_reason) for r in got] == [
        (-1, True, True, ERR_EMPTY_RANGE),
        (5, True, False, ""),
        (-1, True, True, ERR_DUPLICATE_ID),
        (0, True, False, ""),
    ]
    assert not stream.cancel(42)
    assert stream.cancel(5)
    assert [(r.watch_id, r.canceled) for r in stream.drain()] == [(5, True)]


def test_progress_request_waits_until_the_stream_caught_up(store: WatchableStore) -> None:
    for i in range(3):
        _put(store, b"p", b"%d" % i)
    stream = store.new_stream()
    wid = stream.watch(b"p", None, start_rev=2)
    stream.drain()
    stream.request_progress()
    assert stream.drain() == []  # the watcher is still behind: no bookmark yet
    store.sync_watchers()
    got = stream.drain()
    assert [r.watch_id for r in got] == [wid, -1]
    assert got[1].revision == store.current_revision


def test_filters_and_future_start(store: WatchableStore) -> None:
    stream = store.new_stream()
    no_put = stream.watch(b"f", None, no_put=True)
    future = stream.watch(b"f", None, start_rev=4)
    stream.drain()
    _put(store, b"f", b"1")  # rev 2
    with store.write() as txn:
        txn.delete_range(b"f")  # rev 3
    _put(store, b"f", b"2")  # rev 4
    got = stream.drain()
    assert _revs(got, no_put) == [3]
    assert _revs(got, future) == [4]
