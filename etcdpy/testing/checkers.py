"""Checkers of the simulator: each one watches one property and raises :class:`Violation`.

They are fed by the node driver as things happen (incrementally, so a violation is reported at
the moment it occurs, with the simulated time in the trace) and can be fed by hand in tests.

What is checked, precisely:

``election-safety``
    at most one node is leader in a term (Raft §5.2), over the whole run, restarts included.

``log-matching``
    whenever a node persists an entry, an entry with the same index and term persisted by any
    node before must have the same type and data *and the same term at the index before it*
    (Raft §5.3). By induction on the index, two logs with an entry of equal index and term then
    agree on the whole prefix, without comparing whole logs.

``state-machine-safety``
    no two nodes apply different entries at the same index (Raft §5.4.3), and nodes that reach
    the same applied index through different paths (applying entries, or a snapshot) hold the
    same state there (compared by digest at snapshot points).

``leader-completeness``
    an entry that some node applied (so it was committed, in a term no later than that node's
    term then) is in the log of every leader of a later term (Raft §5.4), or compacted into
    its snapshot.

``durability``
    a write acknowledged to a client (its entry at index i, term t) is never lost: every leader
    of a later term holds entry (i, t) (or has compacted past i, which the state-machine check
    covers), and at the end of a run, after the liveness phase, a quorum of the voters holds it.

``linearizability``
    the client history of each register (key) has a linearization (Wing & Gong search with
    memoization on (set of linearized operations, register value), as in Lowe's and Knossos'
    checkers). Acknowledged writes and reads must take effect between their invocation and
    their completion; a write whose outcome the client never learned may take effect at any
    time after its invocation, or never. Values are unique per write, so a read names the
    write it observed.

``liveness`` is checked by the simulation itself: after the faults heal, a leader is elected
and a fresh proposal commits within a bounded number of ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from etcdpy.raft.types import Entry, EntryType


class Violation(Exception):
    def __init__(self, checker: str, detail: str) -> None:
        super().__init__(f"{checker}: {detail}")
        self.checker = checker
        self.detail = detail


class ElectionSafety:
    name = "election-safety"

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}

    def on_leader(self, node: int, term: int) -> None:
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise Violation(self.name, f"term {term} has two leaders: {other} and {node}")


class LogMatching:
    name = "log-matching"

    def __init__(self) -> None:
        # (index, term) -> (type, data, term of the entry at index - 1)
        self._seen: dict[tuple[int, int], tuple[EntryType, bytes, int]] = {}

    def on_persist(self, node: int, entries: Sequence[Entry], prev_term: int) -> None:
        """``prev_term`` is the term of the entry just before ``entries[0]`` in the node's log."""
        seen = self._seen
        for e in entries:
            mine = (e.type, e.data, prev_term)
            other = seen.setdefault((e.index, e.term), mine)
            if other != mine:
                if other[2] != prev_term:
                    detail = (
                        f"node {node} has entry {e.index}/{e.term} after term {prev_term}, "
                        f"another log has it after term {other[2]}"
                    )
                else:
                    detail = f"node {node} has a different entry at {e.index}/{e.term}"
                raise Violation(self.name, detail)
            prev_term = e.term


class StateMachineSafety:
    name = "state-machine-safety"

    def __init__(self) -> None:
        self._applied: dict[int, tuple[int, EntryType, bytes]] = {}
        self._states: dict[int, bytes] = {}

    def on_apply(self, node: int, entry: Entry) -> bool:
        """Returns whether this is the first time any node applies this index."""
        mine = (entry.term, entry.type, entry.data)
        other = self._applied.setdefault(entry.index, mine)
        if other is mine:
            return True
        if other != mine:
            raise Violation(
                self.name,
                f"node {node} applied {entry.index}/{entry.term}, "
                f"another node applied {entry.index}/{other[0]} (different entry)",
            )
        return False

    def applied_term(self, index: int) -> int | None:
        got = self._applied.get(index)
        return got[0] if got is not None else None

    def on_state(self, node: int, index: int, digest: bytes) -> None:
        other = self._states.setdefault(index, digest)
        if other != digest:
            raise Violation(
                self.name, f"node {node} has a different application state at index {index}"
            )


class _CommittedEntries:
    """Entries known committed, each with a bound on the term in which it was committed.

    A node learns that an entry is committed from a leader of the commit term or later, so
    the term of any node applying it bounds the commit term from above. Leader Completeness
    (§5.4) speaks of leaders of *later* terms: a candidate of an older term may still win with
    late votes after the entry committed, and must not be flagged.
    """

    name = "leader-completeness"
    what = "committed entry"

    def __init__(self) -> None:
        self.entries: dict[int, tuple[int, int]] = {}  # index -> (entry term, commit term bound)

    def _record(self, index: int, term: int, bound: int) -> None:
        old = self.entries.get(index)
        if old is None:
            self.entries[index] = (term, bound)
            return
        if old[0] != term:
            raise Violation(self.name, f"{self.what}s at {index}/{old[0]} and at {index}/{term}")
        if bound < old[1]:
            self.entries[index] = (term, bound)

    def on_leader(
        self, node: int, term: int, first_index: int, log_term: Callable[[int], int | None]
    ) -> None:
        """``log_term(i)`` is the leader's term at i (None if i is past its last index).

        Entries below ``first_index`` were compacted into the leader's snapshot (which only
        holds committed entries; the state-machine check covers those)."""
        entries = self.entries
        for index in sorted(entries):
            if index < first_index:
                continue
            want, bound = entries[index]
            if term <= bound:
                continue
            got = log_term(index)
            if got != want:
                have = "nothing" if got is None else f"term {got}"
                raise Violation(
                    self.name,
                    f"leader {node} of term {term} lacks {self.what} {index}/{want} "
                    f"(committed by term {bound}; it has {have})",
                )


class LeaderCompleteness(_CommittedEntries):
    """Every entry some node applied is in the log of every leader of a later term."""

    def on_commit(self, index: int, term: int, bound: int) -> None:
        self._record(index, term, bound)


class Durability(_CommittedEntries):
    """Acknowledged writes: in every later leader's log, and on a quorum at the end."""

    name = "durability"
    what = "acknowledged entry"

    def on_ack(self, index: int, term: int, bound: int) -> None:
        self._record(index, term, bound)

    @property
    def acked(self) -> dict[int, int]:
        return {i: t for i, (t, _) in self.entries.items()}

    def check_quorum(self, voters: Iterable[int], holds: Callable[[int, int, int], bool]) -> None:
        """``holds(node, index, term)``: does the node hold the entry (or a snapshot past it)?"""
        members = sorted(voters)
        need = len(members) // 2 + 1
        for index in sorted(self.entries):
            term = self.entries[index][0]
            have = [n for n in members if holds(n, index, term)]
            if len(have) < need:
                raise Violation(
                    self.name,
                    f"acknowledged entry {index}/{term} is held by {have} only, "
                    f"not by a quorum of {members}",
                )


@dataclass(frozen=True, slots=True)
class LogView:
    """What a vote depends on: a node's last entry, and its term at an index."""

    last_index: int
    last_term: int
    term_at: Callable[[int], int | None]

    def at_least_as_up_to_date_as(self, other: LogView) -> bool:
        return (self.last_term, self.last_index) >= (other.last_term, other.last_index)


class CommitSafety:
    """When an entry commits, no log that disagrees with it may still be able to win.

    In Raft, the leader of term T commits only once a quorum stores an entry of term T
    (§5.4.2), and any log that disagrees with a committed entry has a last term below T: the
    quorum will never vote for it, so it can never overwrite the entry. This checks that
    consequence directly at the moment of commit, for each voter whose log (in memory if it
    runs, on disk if it is down) disagrees with the newly committed entry: it must not be at
    least as up to date as a quorum of the committing configuration (each half of a joint
    one). Counting replicas of an older term's entry (Figure 8) breaks exactly this.
    """

    name = "commit-safety"

    def on_commit(
        self,
        committer: int,
        index: int,
        term: int,
        voter_sets: Sequence[Sequence[int]],
        logs: dict[int, LogView],
    ) -> None:
        voters = sorted({v for vs in voter_sets for v in vs})
        for nid in voters:
            view = logs.get(nid)
            if view is None:
                continue
            got = view.term_at(index)
            if got is None or got == term:
                continue
            electable = True
            for vs in voter_sets:
                if not vs:
                    continue
                votes = 0
                for v in vs:
                    other = logs.get(v)
                    if other is not None and view.at_least_as_up_to_date_as(other):
                        votes += 1
                if votes <= len(vs) // 2:
                    electable = False
                    break
            if electable:
                raise Violation(
                    self.name,
                    f"entry {index}/{term} committed (applied by node {committer}) while node "
                    f"{nid}, with term {got} at {index} and last entry "
                    f"{view.last_index}/{view.last_term}, can still win an election",
                )


# -- linearizability -------------------------------------------------------------------------

WRITE = "w"
READ = "r"


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation on one register. Times are ranks of a global event order.

    ``value`` is the value written, or the value read (None: the register was never written).
    ``complete`` is None when the outcome is unknown (a write that timed out); such a read
    constrains nothing and should be left out.
    """

    client: int
    kind: str
    key: int
    value: int | None
    invoke: int
    complete: int | None
    # Simulated times in ticks, for messages only (the ranks above decide).
    invoke_tick: float = 0.0
    complete_tick: float | None = None


def check_register(ops: Sequence[Op], max_states: int = 200_000) -> str | None:
    """Search a linearization of one register's history; None when there is one.

    Returns a description of the failure, or of giving up when the search grows past
    ``max_states`` (reported as ``inconclusive: ...``; the histories the simulator makes stay
    far below it).
    """
    read_values = {op.value for op in ops if op.kind == READ and op.complete is not None}
    todo: list[Op] = []
    for op in ops:
        if op.kind == READ and op.complete is None:
            continue
        # A write nobody saw and nobody waited for can always be left out of the order.
        if op.kind == WRITE and op.complete is None and op.value not in read_values:
            continue
        todo.append(op)
    todo.sort(key=lambda o: o.invoke)
    n = len(todo)
    if n == 0:
        return None
    inf = 1 << 62
    invokes = [o.invoke for o in todo]
    completes = [o.complete if o.complete is not None else inf for o in todo]
    required = 0
    for i, o in enumerate(todo):
        if o.complete is not None:
            required |= 1 << i

    seen: set[tuple[int, int | None]] = set()
    stack: list[tuple[int, int | None]] = [(0, None)]
    best_done = 0
    while stack:
        done, value = stack.pop()
        # Reads that can go now and see the current value go now: linearizing a read early
        # never removes an option (it does not change the value, and only relaxes the rest).
        progressed = True
        while progressed:
            progressed = False
            horizon = _horizon(done, completes, n)
            for i in range(n):
                if done >> i & 1:
                    continue
                if invokes[i] >= horizon:
                    break
                o = todo[i]
                if o.kind == READ and o.value == value:
                    done |= 1 << i
                    progressed = True
        if done & required == required:
            return None
        if done.bit_count() > best_done.bit_count():
            best_done = done
        key = (done, value)
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > max_states:
            return f"inconclusive: more than {max_states} search states"
        horizon = _horizon(done, completes, n)
        for i in range(n):
            if done >> i & 1:
                continue
            if invokes[i] >= horizon:
                break
            o = todo[i]
            if o.kind == WRITE:
                stack.append((done | 1 << i, o.value))
    stuck = [todo[i] for i in range(n) if not best_done >> i & 1 and completes[i] != inf]
    first = min(stuck, key=lambda o: o.complete or 0)
    return (
        f"key {first.key}: no linearization; stuck before {first.kind} of {first.value} "
        f"by client {first.client} invoked at tick {first.invoke_tick:.1f}, "
        f"completed at tick {first.complete_tick or 0:.1f} "
        f"({len(todo)} operations)"
    )


def _horizon(done: int, completes: list[int], n: int) -> int:
    """The earliest completion among operations not yet linearized: nothing invoked after it
    may be linearized before that operation."""
    h = 1 << 62
    for i in range(n):
        if not done >> i & 1 and completes[i] < h:
            h = completes[i]
    return h


def check_linearizable(ops: Iterable[Op]) -> None:
    by_key: dict[int, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key in sorted(by_key):
        problem = check_register(by_key[key])
        if problem is not None and not problem.startswith("inconclusive"):
            raise Violation("linearizability", problem)
