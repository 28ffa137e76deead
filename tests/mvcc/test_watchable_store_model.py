"""Model test of the watchable store: random writes, compactions, watchers and slow readers.

The model is the list of every write transaction's events. Streams have tiny queues and the
store cuts catch-ups after two revisions or five events, so watchers keep getting parked and
caught up. At the end every stream is drained until the store has nothing left to do, and
each watcher's responses are checked against the model for etcd's watch guarantees:

- ordered and unique: events come in revision order, each once;
- atomic: the events of one revision matching a watcher arrive in one response;
- reliable: no gap, the watcher gets every matching event from its start revision on
  (up to its cancel, or up to the compacted response that ends it);
- resumable: a watcher started at the last revision seen + 1 gets exactly the rest;
- bookmarkable: a progress notification at revision R comes after every event <= R;
- prev_kv: when present it is the key's version at the revision before.

One allowance, etcd's own: a compaction at revision C removes the tombstones written at C
from the history (the index drops a generation that ends at C), so a watcher that reads C
from history does not see its deletions. Deletions at compaction revisions are left out of
both sides of the comparison.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from etcdpy.mvcc.backend import Backend
from etcdpy.mvcc.watchable_store import WatchableStore
from etcdpy.mvcc.watcher import WatchResponse, WatchStream
from etcdpy.pb.mvccpb.kv_pb2 import Event

KEYS = [b"a", b"ab", b"b", b"c", b"d"]
RANGES: list[tuple[bytes, bytes | None]] = [
    (b"a", None),
    (b"b", None),
    (b"a", b"b"),
    (b"a", b"c"),
    (b"b", b""),
    (b"\x00", b""),
]
PUT, DELETE = Event.PUT, Event.DELETE

ModelEvent = tuple[int, bytes, bytes, int]  # (type, key, value, revision)


@dataclass
class WatchRecord:
    stream: int
    id: int
    key: bytes
    end: bytes | None
    start: int
    prev_kv: bool
    no_put: bool
    no_delete: bool
    canceled: bool = False

    def wants(self, ev: ModelEvent) -> bool:
        typ, k, _v, rev = ev
        if rev < self.start:
            return False
        if (typ == PUT and self.no_put) or (typ == DELETE and self.no_delete):
            return False
        if self.end is None:
            return k == self.key
        return self.key <= k and (not self.end or k < self.end)


@dataclass
class StreamLog:
    stream: WatchStream
    got: list[WatchResponse] = field(default_factory=list)


def _ev(e: Event) -> ModelEvent:
    return (e.type, e.kv.key, e.kv.value if e.type == PUT else b"", e.kv.mod_revision)


class WatchModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="watch-model-")
        self.store = WatchableStore(
            Backend(f"{self.dir}/db"),
            stream_capacity=3,
            stream_max_events=6,
            batch_max_revs=2,
            sync_read_limit=5,
        )
        self.history: list[list[ModelEvent]] = [[], []]  # index = revision
        self.values: dict[bytes, list[tuple[int, bytes | None]]] = {}  # key -> (rev, value)
        self.streams = [StreamLog(self.store.new_stream()) for _ in range(3)]
        self.watches: list[WatchRecord] = []
        self.compactions: set[int] = set()

    def teardown(self) -> None:
        try:
            self._settle()
            self._check_all()
            self._check_resume()
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules ---------------------------------------------------------------------------

    @rule(
        ops=st.lists(
            st.tuples(st.sampled_from(KEYS), st.booleans(), st.binary(max_size=3)),
            min_size=1,
            max_size=3,
            unique_by=lambda o: o[0],
        )
    )
    def write(self, ops: list[tuple[bytes, bool, bytes]]) -> None:
        with self.store.write() as txn:
            for key, delete, value in ops:
                if delete:
                    txn.delete_range(key)
                else:
                    txn.put(key, value)
        events = txn.end()
        if events:
            rev = self.store.current_revision
            assert len(self.history) == rev
            self.history.append([_ev(e) for e in events])
            for e in events:
                written = e.kv.value if e.type == PUT else None
                self.values.setdefault(e.kv.key, []).append((rev, written))

    @precondition(lambda self: self.store.current_revision > self.store.compact_revision + 1)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        low = max(self.store.compact_revision + 1, 1)
        rev = data.draw(st.integers(low, self.store.current_revision))
        self.store.compact(rev)
        self.compactions.add(rev)

    def _lossless(self, evs: list[ModelEvent]) -> list[ModelEvent]:
        return [e for e in evs if not (e[0] == DELETE and e[3] in self.compactions)]

    @rule(
        s=st.integers(0, 2),
        rng=st.sampled_from(RANGES),
        back=st.integers(-1, 6),
        prev_kv=st.booleans(),
        no_put=st.booleans(),
        no_delete=st.booleans(),
        progress=st.booleans(),
    )
    def watch(
        self,
        s: int,
        rng: tuple[bytes, bytes | None],
        back: int,
        prev_kv: bool,
        no_put: bool,
        no_delete: bool,
        progress: bool,
    ) -> None:
        start = max(0, self.store.current_revision - back) if back >= 0 else 0
        stream = self.streams[s].stream
        key, end = rng
        wid = stream.watch(
            key,
            end,
            start,
            prev_kv=prev_kv,
            no_put=no_put,
            no_delete=no_delete,
            progress_notify=progress,
        )
        assert wid >= 0
        first = start if start > 0 else self.store.current_revision + 1
        self.watches.append(WatchRecord(s, wid, key, end, first, prev_kv, no_put, no_delete))

    @precondition(lambda self: any(not w.canceled for w in self.watches))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        w = data.draw(st.sampled_from([w for w in self.watches if not w.canceled]))
        assert self.streams[w.stream].stream.cancel(w.id)
        w.canceled = True

    @rule(s=st.integers(0, 2), n=st.integers(0, 4))
    def read(self, s: int, n: int) -> None:
        log = self.streams[s]
        log.got.extend(log.stream.drain(n) if n else [])

    @rule()
    def sync(self) -> None:
        self.store.move_victims()
        self.store.sync_watchers()

    @rule(s=st.integers(0, 2))
    def request_progress(self, s: int) -> None:
        self.streams[s].stream.request_progress()

    @rule(s=st.integers(0, 2))
    def progress_tick(self, s: int) -> None:
        self.streams[s].stream.progress_tick()

    # -- checks --------------------------------------------------------------------------

    def _settle(self) -> None:
        for _ in range(10_000):
            for log in self.streams:
                log.got.extend(log.stream.drain())
            if not self.store.has_pending_work:
                break
            self.store.move_victims()
            self.store.sync_watchers()
        else:
            raise AssertionError("the store never settled")
        assert not self.store.unsynced.watchers and not self.store.victims

    def _value_at(self, key: bytes, rev: int) -> bytes | None:
        value = None
        for r, v in self.values.get(key, []):
            if r > rev:
                break
            value = v
        return value

    def _check_all(self) -> None:
        for w in self.watches:
            self._check_watch(w, self.streams[w.stream].got)

    def _check_watch(self, w: WatchRecord, got: list[WatchResponse]) -> None:
        mine = [r for r in got if r.watch_id == w.id]
        created_at = next(i for i, r in enumerate(got) if r.watch_id == w.id and r.created)
        # Responses of an id reused after a cancel belong to a later watcher: cut there.
        ends = [i for i, r in enumerate(got) if i > created_at and r.watch_id == w.id and r.created]
        if ends:
            got = got[: ends[0]]
            mine = [r for r in got if r.watch_id == w.id]
        mine = [r for r in got[created_at:] if r.watch_id == w.id]
        assert mine[0].created
        delivered: list[ModelEvent] = []
        compacted_at = 0
        ended = False
        for r in mine[1:]:
            assert not r.created
            if ended:
                # Only the answer to the client's own cancel may follow the compacted end.
                assert r.canceled and r.batch is None and not r.compact_revision
                continue
            if r.canceled:
                ended = True
                compacted_at = r.compact_revision
                continue
            if r.batch is None:
                continue
            evs = [_ev(e) for e in r.events]
            assert evs, "no empty event responses"
            assert r.prev_kv == w.prev_kv
            revs = sorted({e[3] for e in evs})
            for rev in revs:  # atomic: all of a revision in this response
                want = [e for e in self.history[rev] if w.wants(e)]
                assert self._lossless([e for e in evs if e[3] == rev]) == self._lossless(want), (
                    w,
                    rev,
                    evs,
                    want,
                    self.compactions,
                )
            for e in r.events:
                if e.HasField("prev_kv"):
                    assert e.prev_kv.value == self._value_at(e.kv.key, e.kv.mod_revision - 1)
            delivered.extend(evs)
        expected = [e for rev in range(len(self.history)) for e in self.history[rev] if w.wants(e)]
        expected, delivered = self._lossless(expected), self._lossless(delivered)
        if compacted_at:
            # Ended by compaction: a gapless prefix, and the next revision it needed is gone.
            assert delivered == expected[: len(delivered)]
            next_needed = delivered[-1][3] + 1 if delivered else w.start
            assert next_needed < compacted_at
        elif w.canceled:
            assert delivered == expected[: len(delivered)]
            if delivered and len(delivered) < len(expected):
                assert expected[len(delivered)][3] != delivered[-1][3]  # cut at a revision
        else:
            assert delivered == expected, (
                w,
                delivered,
                expected,
                mine,
            )  # reliable, ordered, unique
        self._check_bookmarks(w, got, created_at)

    def _check_bookmarks(self, w: WatchRecord, got: list[WatchResponse], created_at: int) -> None:
        seen_rev = w.start - 1
        done = False
        for r in got[created_at + 1 :]:
            if r.watch_id == w.id and r.canceled:
                done = True
            if done:
                break
            if r.watch_id == w.id and r.batch is not None:
                seen_rev = max(e.kv.mod_revision for e in r.events)
            elif r.batch is None and not (r.created or r.canceled) and r.watch_id in (w.id, -1):
                # Everything this watcher wants up to r.revision was delivered already.
                upto = min(r.revision, len(self.history) - 1)
                later = self._lossless(
                    [
                        e
                        for rev in range(seen_rev + 1, upto + 1)
                        for e in self.history[rev]
                        if w.wants(e)
                    ]
                )
                assert not later, f"progress at {r.revision} passed undelivered {later}"

    def _check_resume(self) -> None:
        """A watcher restarted after the last revision it saw gets exactly the rest."""
        cur = self.store.current_revision
        for w in self.watches[:3]:
            resume = max(w.start, self.store.compact_revision, 1)
            stream = self.store.new_stream()
            wid = stream.watch(w.key, w.end, resume, no_put=w.no_put, no_delete=w.no_delete)
            for _ in range(1000):
                self._collect_into(stream)
                if not self.store.has_pending_work:
                    break
                self.store.sync_watchers()
                self.store.move_victims()
            evs = [_ev(e) for r in self._resumed for e in r.events]
            want = [
                e
                for rev in range(resume, cur + 1)
                for e in self.history[rev]
                if WatchRecord(0, wid, w.key, w.end, resume, False, w.no_put, w.no_delete).wants(e)
            ]
            assert self._lossless(evs) == self._lossless(want)
            stream.close()
            self._resumed = []

    _resumed: list[WatchResponse] = []

    def _collect_into(self, stream: WatchStream) -> None:
        self._resumed = [*self._resumed, *stream.drain()]


WatchModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWatchModel = WatchModel.TestCase
