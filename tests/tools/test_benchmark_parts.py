"""The pure parts of `etcdpy benchmark`: option parsing, work split, keys, percentiles."""

from __future__ import annotations

import io
import json

import pytest

from etcdpy.tools.bench_report import ProgressBar, format_table, percentile, summarize
from etcdpy.tools.bench_worker import WorkerPlan, _k8s_update, _Keys, make_key
from etcdpy.tools.benchmark import make_plans, parse_args, split_evenly


def test_options_before_and_after_the_subcommand() -> None:
    before = parse_args(["--clients", "8", "--conns", "2", "put", "--total", "50"])
    after = parse_args(["put", "--clients", "8", "--conns", "2", "--total", "50"])
    for args in (before, after):
        assert (args.op, args.clients, args.conns, args.total) == ("put", 8, 2, 50)
        assert args.key_size == 8 and args.consistency == "l"


def test_range_positional_key_and_consistency() -> None:
    args = parse_args(["range", "a", "b", "--consistency", "s"])
    assert (args.key, args.end, args.consistency) == ("a", "b", "s")


def test_bad_counts_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["put", "--clients", "0"])


@pytest.mark.parametrize(("amount", "parts"), [(10, 3), (2, 5), (64, 2), (0, 1)])
def test_split_evenly(amount: int, parts: int) -> None:
    pieces = split_evenly(amount, parts)
    assert sum(pieces) == amount and len(pieces) == parts
    assert max(pieces) - min(pieces) <= 1


def test_plans_cover_every_client_and_request_once() -> None:
    args = parse_args(["--clients", "7", "--conns", "3", "--procs", "3", "put", "--total", "100"])
    plans = make_plans(args)
    assert len(plans) == 3
    assert sum(p.clients for p in plans) == 7
    assert sum(p.total for p in plans) == 100
    assert all(1 <= p.conns <= p.clients for p in plans)
    # sequential keys of the processes start where the previous one's share ends
    assert [p.key_offset for p in plans] == [0, plans[0].total, plans[0].total + plans[1].total]


def test_no_more_processes_than_clients() -> None:
    plans = make_plans(parse_args(["--procs", "8", "put", "--clients", "2"]))
    assert len(plans) == 2


def test_make_key_has_the_exact_size() -> None:
    assert make_key(42, 8) == b"00000042"
    assert make_key(123456, 3) == b"456"


def _plan(**overrides: object) -> WorkerPlan:
    fields: dict[str, object] = dict(
        index=0, op="put", endpoints=("x",), conns=1, clients=1, total=1, key_size=4,
        val_size=1, key_space_size=3, sequential_keys=True, serializable=False,
        range_key=b"", range_end=b"", request_timeout_s=1.0, dial_timeout_s=1.0,
        key_offset=2, seed=1,
    )  # fmt: skip
    fields.update(overrides)
    return WorkerPlan(**fields)  # type: ignore[arg-type]


def test_sequential_keys_wrap_around_the_key_space() -> None:
    keys = _Keys(_plan())
    assert [keys.next() for _ in range(4)] == [b"0002", b"0000", b"0001", b"0002"]


def test_random_keys_stay_in_the_key_space() -> None:
    keys = _Keys(_plan(sequential_keys=False))
    assert {keys.next() for _ in range(200)} <= {b"0000", b"0001", b"0002"}


def test_k8s_update_compares_mod_revision_and_reads_on_failure() -> None:
    txn = _k8s_update(b"k", b"v", 17)
    (compare,) = txn.compare
    assert (compare.key, compare.mod_revision, compare.target) == (b"k", 17, compare.MOD)
    assert txn.success[0].request_put.value == b"v"
    assert txn.failure[0].request_range.key == b"k"


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_summary_json_and_table() -> None:
    summary = summarize(
        op="txn-put", total=4, latencies=[0.004, 0.001, 0.002], error_codes={"UNAVAILABLE": 1},
        seconds=2.0, clients=2, conns=1, procs=1, txn_succeeded=2, txn_failed=1,
    )  # fmt: skip
    data = json.loads(summary.json_line())
    assert (data["ok"], data["errors"], data["rps"]) == (3, 1, 1.5)
    assert (data["p50_ms"], data["max_ms"]) == (2.0, 4.0)
    table = format_table(summary)
    assert "txn failed" in table and "UNAVAILABLE" in table


def test_progress_bar_is_silent_when_disabled() -> None:
    out = io.StringIO()
    ProgressBar(10, out, enabled=False).update(5, 1.0)
    assert out.getvalue() == ""
    bar = ProgressBar(10, out, enabled=True, width=10)
    bar.update(5, 1.0)
    assert "[#####.....]  50% 5/10" in out.getvalue()
