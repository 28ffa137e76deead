"""The WAL against a plain-list model: random saves (with overwrites by later terms), snapshot
markers, segment cuts and reopens must always read back what the model holds."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from etcdpy.raft.types import Entry, HardState
from etcdpy.wal.log import WAL

SEGMENT = 2048  # small: many cuts


class WalModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="wal-model-"))
        self.dir = self.tmp / "wal"
        self.wal = WAL.create(self.dir, b"meta", segment_size=SEGMENT, unsafe_no_fsync=True)
        self.entries: list[Entry] = []  # the model: entry i+1 at position i
        self.state = HardState()
        self.term = 1

    @rule(
        back=st.integers(min_value=0, max_value=6),
        count=st.integers(min_value=0, max_value=8),
        size=st.integers(min_value=0, max_value=300),
        commit=st.booleans(),
        new_term=st.booleans(),
        sync=st.booleans(),
    )
    def save(
        self, back: int, count: int, size: int, commit: bool, new_term: bool, sync: bool
    ) -> None:
        if new_term:
            self.term += 1
        first = max(1, len(self.entries) + 1 - back)  # overwrite up to `back` entries
        batch = [
            Entry(term=self.term, index=i, data=bytes([i % 256]) * size)
            for i in range(first, first + count)
        ]
        state = None
        if commit:
            state = HardState(term=self.term, vote=1, commit=first - 1)
        self.wal.save(state, batch, sync=sync)
        if batch:
            del self.entries[first - 1 :]
            self.entries.extend(batch)
        if state is not None:
            self.state = state

    @rule()
    def snapshot_marker(self) -> None:
        if self.entries:
            self.wal.save_snapshot(self.entries[-1].index, self.entries[-1].term)

    @rule()
    def reopen(self) -> None:
        self.wal.close()
        self.wal = WAL.open(self.dir, None, segment_size=SEGMENT, unsafe_no_fsync=True)
        meta, state, entries = self.wal.read_all()
        assert meta == b"meta"
        assert state == self.state
        assert entries == self.entries

    @invariant()
    def segments_are_named_in_order(self) -> None:
        names = self.wal.segment_names
        assert [int(n[:16], 16) for n in names] == list(range(len(names)))

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.tmp)


WalModel.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_wal_matches_model = WalModel.TestCase
