"""The real-process history checker: ranks from times, lost writes, violations caught."""

from __future__ import annotations

import random

import pytest

from etcdpy.testing.checkers import READ, WRITE, Op, Violation, check_register
from etcdpy.testing.history import (
    History,
    Recorded,
    check_history,
    check_register_windowed,
    lost_writes,
)


def _op(kind: str, key: int, value: int | None, start: int, end: int | None) -> Recorded:
    return Recorded(client=0, kind=kind, key=key, value=value, invoke_ns=start, complete_ns=end)


def _history(*ops: Recorded) -> History:
    h = History()
    h.ops.extend(ops)
    return h


def test_sequential_write_then_read_is_linearizable() -> None:
    h = _history(_op(WRITE, 1, 5, 10, 20), _op(READ, 1, 5, 30, 40))
    report = check_history(h)
    assert (report.operations, report.keys, report.inconclusive) == (2, 1, 0)


def test_read_of_an_overwritten_value_after_the_overwrite_is_a_violation() -> None:
    h = _history(
        _op(WRITE, 1, 5, 10, 20),
        _op(WRITE, 1, 6, 30, 40),
        _op(READ, 1, 5, 50, 60),  # a lost acknowledged write looks like this
    )
    with pytest.raises(Violation):
        check_history(h)


def test_write_with_unknown_outcome_may_or_may_not_take_effect() -> None:
    seen = _history(_op(WRITE, 1, 5, 10, None), _op(READ, 1, 5, 30, 40))
    check_history(seen)
    not_seen = _history(_op(WRITE, 1, 5, 10, None), _op(READ, 1, None, 30, 40))
    check_history(not_seen)


def test_read_of_a_value_never_written_is_a_violation() -> None:
    with pytest.raises(Violation):
        check_history(_history(_op(READ, 2, 99, 1, 2)))


def test_recorder_keeps_times_and_read_values() -> None:
    h = History()
    w = h.invoke(1, WRITE, 0, 7)
    h.complete(w)
    r = h.invoke(2, READ, 0)
    h.complete(r, 7)
    assert h.acknowledged_writes() == 1
    ops = h.to_ops()
    assert [o.value for o in ops] == [7, 7]
    assert ops[0].complete is not None and ops[0].complete < ops[1].invoke
    check_history(h)


def test_lost_writes_are_the_acknowledged_keys_missing_from_the_final_state() -> None:
    assert lost_writes([b"a", b"b"], {b"a": b"1"}) == [b"b"]


def _random_history(rand: random.Random) -> list[Op]:
    """A few clients on one register: a real register run, then maybe a corrupted read."""
    ops: list[Op] = []
    value: int | None = None
    t = 0
    next_value = 1
    pending: list[tuple[str, int | None, int]] = []  # kind, value, invoke
    for _ in range(rand.randint(1, 8)):
        t += 1
        if rand.random() < 0.5:
            pending.append((WRITE, next_value, t))
            next_value += 1
        else:
            pending.append((READ, None, t))
        if rand.random() < 0.6 or len(pending) > 3:
            kind, v, invoke = pending.pop(rand.randrange(len(pending)))
            t += 1
            if kind == WRITE:
                value = v
                done: int | None = t if rand.random() < 0.8 else None
                ops.append(Op(0, WRITE, 1, v, invoke, done))
            else:
                ops.append(Op(0, READ, 1, value, invoke, t))
    if ops and rand.random() < 0.5:
        i = rand.randrange(len(ops))
        o = ops[i]
        if o.kind == READ:
            ops[i] = Op(0, READ, 1, rand.choice([None, 1, 2, 3, 4]), o.invoke, o.complete)
    return ops


def test_windowed_checker_agrees_with_the_simulator_checker() -> None:
    rand = random.Random(5)
    verdicts = set()
    for _ in range(3000):
        ops = _random_history(rand)
        reference = check_register(ops) is None
        assert (check_register_windowed(ops) is None) == reference, ops
        verdicts.add(reference)
    assert verdicts == {True, False}  # both outcomes were exercised
