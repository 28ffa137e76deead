"""Client histories of a real cluster, and their checks (for chaos runs, tests and users).

A ``History`` records every client operation with the monotonic time it was invoked and the
time its answer arrived (or no answer: outcome unknown). Operations are puts and linearizable
gets on a few registers (keys), with a unique value per put, so a read names the write it saw.

``check_history`` orders the recorded times into ranks and runs the Wing & Gong / Lowe search of
``etcdpy.testing.checkers`` (porcupine-style: the history is partitioned by key and each key
checked as a register). A read of every key after the run, taken once every client has stopped,
is part of the history: an acknowledged write lost by the cluster then shows up as a read that
no order explains.

Separately, ``lost_writes`` compares puts of unique keys that were acknowledged with the final
state: every acknowledged one must be there.

    history = History()
    op = history.invoke(client=1, kind="w", key=3, value=17)
    ... do the put ...
    history.complete(op)           # or leave it: outcome unknown
    check_history(history)         # raises checkers.Violation
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from etcdpy.testing.checkers import READ, WRITE, Op, Violation


@dataclass(slots=True)
class Recorded:
    client: int
    kind: str
    key: int
    value: int | None
    invoke_ns: int
    complete_ns: int | None = None


class History:
    """Thread-safe recorder of client operations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[Recorded] = []

    def invoke(self, client: int, kind: str, key: int, value: int | None = None) -> Recorded:
        op = Recorded(client, kind, key, value, time.monotonic_ns())
        with self._lock:
            self.ops.append(op)
        return op

    def complete(self, op: Recorded, value: int | None = None) -> None:
        """The answer arrived; for a read, ``value`` is what it saw (None: no such key)."""
        op.complete_ns = time.monotonic_ns()
        if op.kind == READ:
            op.value = value

    def acknowledged_writes(self) -> int:
        return sum(1 for op in self.ops if op.kind == WRITE and op.complete_ns is not None)

    def to_ops(self) -> list[Op]:
        """The recorded operations with their times turned into ranks of one global order.

        Reads whose answer never came constrain nothing and are left out."""
        times: list[int] = []
        for rec in self.ops:
            times.append(rec.invoke_ns)
            if rec.complete_ns is not None:
                times.append(rec.complete_ns)
        rank = {t: i for i, t in enumerate(sorted(set(times)))}
        ops = []
        for rec in self.ops:
            if rec.kind == READ and rec.complete_ns is None:
                continue
            complete = rank[rec.complete_ns] if rec.complete_ns is not None else None
            ops.append(Op(rec.client, rec.kind, rec.key, rec.value, rank[rec.invoke_ns], complete))
        return ops


@dataclass(frozen=True, slots=True)
class HistoryReport:
    operations: int
    keys: int
    inconclusive: int


def check_history(history: History, max_states: int = 500_000) -> HistoryReport:
    """Raises ``Violation`` when some key's history has no linearization."""
    by_key: dict[int, list[Op]] = {}
    for op in history.to_ops():
        by_key.setdefault(op.key, []).append(op)
    inconclusive = 0
    for key in sorted(by_key):
        problem = check_register_windowed(by_key[key], max_states=max_states)
        if problem is None:
            continue
        if problem.startswith("inconclusive"):
            inconclusive += 1
            continue
        raise Violation("linearizability", problem)
    return HistoryReport(sum(len(v) for v in by_key.values()), len(by_key), inconclusive)


def lost_writes(acknowledged: Iterable[bytes], final: Mapping[bytes, bytes]) -> list[bytes]:
    """Acknowledged unique-key puts that the final state does not hold."""
    return [key for key in acknowledged if key not in final]


_INF = 1 << 62


def check_register_windowed(ops: Sequence[Op], max_states: int = 500_000) -> str | None:
    """The search of ``checkers.check_register``, made fit for long histories of real runs.

    Two changes keep each step proportional to the operations in flight rather than to the
    whole history: scans start at the first operation not yet linearized and stop at the
    horizon (an operation invoked after the earliest pending completion cannot go first), and
    a write whose outcome is unknown but which some read observed gets, as its completion, the
    earliest completion of such a read (it must take effect before that read does), so it does
    not hold the horizon open for the rest of the run. Returns None when a linearization exists.
    """
    first_seen: dict[int | None, int] = {}
    for op in ops:
        if op.kind == READ and op.complete is not None:
            seen = first_seen.get(op.value)
            if seen is None or op.complete < seen:
                first_seen[op.value] = op.complete
    todo: list[Op] = []
    for op in ops:
        if op.kind == READ and op.complete is None:
            continue
        if op.kind == WRITE and op.complete is None:
            bound = first_seen.get(op.value)
            if bound is None:
                continue  # nobody saw it: it may as well never have happened
            op = Op(op.client, op.kind, op.key, op.value, op.invoke, max(bound, op.invoke + 1))
        todo.append(op)
    todo.sort(key=lambda o: o.invoke)
    n = len(todo)
    if n == 0:
        return None
    invokes = [o.invoke for o in todo]
    completes = [o.complete if o.complete is not None else _INF for o in todo]
    is_write = [o.kind == WRITE for o in todo]
    values = [o.value for o in todo]

    def horizon(done: int, lo: int) -> int:
        h = _INF
        i = lo
        while i < n and invokes[i] < h:
            if not done >> i & 1 and completes[i] < h:
                h = completes[i]
            i += 1
        return h

    seen_states: set[tuple[int, int | None]] = set()
    stack: list[tuple[int, int, int | None]] = [(0, 0, None)]
    best = (0, 0)
    while stack:
        done, lo, value = stack.pop()
        progressed = True
        while progressed:  # reads that see the current value go at once (never hurts)
            progressed = False
            h = horizon(done, lo)
            i = lo
            while i < n and invokes[i] < h:
                if not done >> i & 1 and not is_write[i] and values[i] == value:
                    done |= 1 << i
                    progressed = True
                i += 1
            while lo < n and done >> lo & 1:
                lo += 1
        if lo >= n:
            return None
        if lo > best[0]:
            best = (lo, done)
        key = (done, value)
        if key in seen_states:
            continue
        seen_states.add(key)
        if len(seen_states) > max_states:
            return f"inconclusive: more than {max_states} search states"
        h = horizon(done, lo)
        i = lo
        while i < n and invokes[i] < h:
            if not done >> i & 1 and is_write[i]:
                nxt = done | 1 << i
                nlo = lo
                while nlo < n and nxt >> nlo & 1:
                    nlo += 1
                stack.append((nxt, nlo, values[i]))
            i += 1
    stuck = todo[best[0]]
    return (
        f"key {stuck.key}: no linearization; stuck before {stuck.kind} of {stuck.value} "
        f"by client {stuck.client} [{stuck.invoke}, {stuck.complete}] ({n} operations)"
    )
