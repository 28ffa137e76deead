"""Model-based test: KVStore against a plain Python model that keeps the whole history.

The model is a dict per revision (key -> the KeyValue fields at that revision). Rules drive
single puts, deletes, multi-op transactions, batches, compactions and reopening the LMDB
directory; reads at any revision are compared with the model.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from etcdpy.mvcc import Backend, CompactedError, FutureRevError, KVStore, TxnWrite
from etcdpy.pb.mvccpb.kv_pb2 import Event, KeyValue

KEYS = [b"a", b"ab", b"b", b"ba", b"c", b"d\x00", b"d\xff"]
END_CHOICES = [None, b"", b"\0", b"a", b"b", b"bb", b"c", b"d", b"e"]
keys = st.sampled_from(KEYS)
ends = st.sampled_from(END_CHOICES)
values = st.binary(max_size=8)
leases = st.sampled_from([0, 0, 7, 9])


@dataclass(frozen=True)
class ModelKV:
    value: bytes
    create: int
    mod: int
    version: int
    lease: int


State = dict[bytes, ModelKV]


def in_range(k: bytes, key: bytes, end: bytes | None) -> bool:
    if not end:
        return k == key
    if end == b"\0":
        return k >= key
    return key <= k < end


def as_tuple(kv: KeyValue) -> tuple[bytes, bytes, int, int, int, int]:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def model_tuple(k: bytes, m: ModelKV) -> tuple[bytes, bytes, int, int, int, int]:
    return (k, m.value, m.create, m.mod, m.version, m.lease)


Op = tuple[str, bytes, bytes | None, bytes, int]  # (kind, key, end, value, lease)
ops = st.one_of(
    st.tuples(st.just("put"), keys, st.none(), values, leases),
    st.tuples(st.just("delete"), keys, ends, st.just(b""), st.just(0)),
)


class MVCCMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="mvcc-stateful-")
        self.path = f"{self.dir}/member/snap/db"
        self.store = self._open()
        self.history: dict[int, State] = {1: {}}
        self.rev = 1
        self.compacted = -1
        self.ci = 0

    def _open(self) -> KVStore:
        return KVStore(Backend(self.path, map_size=32 * 1024**2), compaction_batch_limit=3)

    def teardown(self) -> None:
        if not self.store.backend.closed:
            self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model ------------------------------------------------------------------------

    def _apply(self, tw: TxnWrite, txn_ops: list[Op]) -> None:
        """Run ops on the store and the model; compare what each op returns."""
        work = dict(self.history[self.rev])
        new_rev = self.rev + 1
        changed = False
        expected_events: list[tuple[int, bytes, int]] = []
        for kind, key, end, value, lease in txn_ops:
            if kind == "put":
                prev = work.get(key)
                got_prev = tw.put(key, value, lease)
                if prev is None:
                    assert got_prev is None
                    work[key] = ModelKV(value, new_rev, new_rev, 1, lease)
                else:
                    assert got_prev is not None
                    assert as_tuple(got_prev) == model_tuple(key, prev)
                    work[key] = ModelKV(value, prev.create, new_rev, prev.version + 1, lease)
                expected_events.append((Event.PUT, key, new_rev))
                changed = True
            else:
                doomed = sorted(k for k in work if in_range(k, key, end))
                deleted = tw.delete_range(key, end)
                assert [as_tuple(kv) for kv in deleted] == [model_tuple(k, work[k]) for k in doomed]
                for k in doomed:
                    del work[k]
                    expected_events.append((Event.DELETE, k, new_rev))
                changed = changed or bool(doomed)
            # Reads inside the txn see its own writes.
            view = tw.range(b"", b"\0")
            assert [as_tuple(kv) for kv in view.kvs] == [
                model_tuple(k, work[k]) for k in sorted(work)
            ]
        self.ci += 1
        events = tw.end()
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == expected_events
        if changed:
            self.rev = new_rev
            self.history[new_rev] = work
        assert self.store.current_revision == self.rev

    # -- rules ----------------------------------------------------------------------------

    @rule(key=keys, value=values, lease=leases)
    def put(self, key: bytes, value: bytes, lease: int) -> None:
        with self.store.write(self.ci + 1) as tw:
            self._apply(tw, [("put", key, None, value, lease)])

    @rule(key=keys, end=ends)
    def delete_range(self, key: bytes, end: bytes | None) -> None:
        with self.store.write(self.ci + 1) as tw:
            self._apply(tw, [("delete", key, end, b"", 0)])

    @rule(txn_ops=st.lists(ops, min_size=1, max_size=5))
    def txn(self, txn_ops: list[Op]) -> None:
        with self.store.write(self.ci + 1) as tw:
            self._apply(tw, txn_ops)

    @rule(txns=st.lists(st.lists(ops, min_size=1, max_size=3), min_size=1, max_size=4))
    def batch(self, txns: list[list[Op]]) -> None:
        with self.store.batch():
            for txn_ops in txns:
                with self.store.write(self.ci + 1) as tw:
                    self._apply(tw, txn_ops)

    @rule(data=st.data(), key=keys, end=ends, limit=st.sampled_from([0, 0, 1, 2, 5]))
    def range_at_some_revision(
        self, data: st.DataObject, key: bytes, end: bytes | None, limit: int
    ) -> None:
        rev = data.draw(st.integers(min_value=0, max_value=self.rev + 1), label="rev")
        if rev > self.rev:
            try:
                self.store.range(key, end, rev=rev)
            except FutureRevError:
                return
            raise AssertionError("expected FutureRevError")
        if 0 < rev < self.compacted:
            try:
                self.store.range(key, end, rev=rev)
            except CompactedError:
                return
            raise AssertionError("expected CompactedError")
        at = rev or self.rev
        state = self.history[at]
        want = [model_tuple(k, state[k]) for k in sorted(state) if in_range(k, key, end)]
        got = self.store.range(key, end, rev=rev, limit=limit)
        assert got.count == len(want)
        assert got.rev == self.rev
        assert [as_tuple(kv) for kv in got.kvs] == (want[:limit] if limit else want)
        assert self.store.range(key, end, rev=rev, count_only=True).count == len(want)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        rev = data.draw(st.integers(min_value=max(self.compacted - 1, 0), max_value=self.rev + 1))
        if rev > self.rev:
            try:
                self.store.compact(rev)
            except FutureRevError:
                return
            raise AssertionError("expected FutureRevError")
        if rev <= self.compacted:
            try:
                self.store.compact(rev)
            except CompactedError:
                return
            raise AssertionError("expected CompactedError")
        self.store.compact(rev)
        self.compacted = rev
        for r in [r for r in self.history if r < rev]:
            del self.history[r]

    @precondition(lambda self: self.rev > self.compacted + 1)
    @rule(data=st.data())
    def compact_in_steps_then_reopen(self, data: st.DataObject) -> None:
        """Begin a compaction, run part of it, "crash", and let reopen finish it."""
        rev = data.draw(st.integers(min_value=self.compacted + 1, max_value=self.rev))
        self.store.begin_compaction(rev)
        self.store.compaction_step(limit=1)
        self.store.backend.close()
        self.store = self._open()
        assert not self.store.compaction_pending
        self.compacted = rev
        for r in [r for r in self.history if r < rev]:
            del self.history[r]

    @precondition(lambda self: self.rev >= 2)
    @rule(data=st.data())
    def replay_events_since(self, data: st.DataObject) -> None:
        """Applying events_since(start) to the state before start gives every later state."""
        start = data.draw(st.integers(min_value=max(self.compacted + 1, 2), max_value=self.rev + 1))
        state = dict(self.history[start - 1])
        events = self.store.events_since(start)
        pos = 0
        for rev in range(start, self.rev + 1):
            while pos < len(events) and events[pos].kv.mod_revision == rev:
                ev = events[pos]
                if ev.type == Event.DELETE:
                    del state[ev.kv.key]
                else:
                    kv = ev.kv
                    state[kv.key] = ModelKV(
                        kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease
                    )
                pos += 1
            assert state == self.history[rev], rev
        assert pos == len(events)

    @rule()
    def reopen(self) -> None:
        hash_before = self.store.hash_kv()
        self.store.close()
        self.store = self._open()
        assert self.store.hash_kv() == hash_before

    @invariant()
    def revisions_agree(self) -> None:
        assert self.store.current_revision == self.rev
        assert self.store.compact_revision == self.compacted
        assert self.store.consistent_index == self.ci

    @invariant()
    def live_keys_agree(self) -> None:
        """etcd_debugging_mvcc_keys_total: the keys that exist now, kept incrementally."""
        assert self.store.index.live_keys == len(self.history[self.rev])


MVCCMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMVCCStateful = MVCCMachine.TestCase
