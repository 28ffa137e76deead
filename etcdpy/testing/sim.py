"""Run the cluster simulator over many seeds, or replay one seed with a readable trace.

    python -m etcdpy.testing.sim --seeds 1000            # seeds 0..999
    python -m etcdpy.testing.sim --seed 42 --verbose     # replay seed 42, printing the trace
    python -m etcdpy.testing.sim --seed 42 --trace-hash  # print the trace's sha256 only

The last line of a many-seed run is exactly ``N seeds, V violations``; the exit status is 1 when
V > 0, and each violation prints its seed, its checker and the command that replays it.

Each seed picks the cluster size (1, 3 or 5), the fault mix and the membership changes (see
:class:`etcdpy.testing.scenario.Scenario`); the run itself is
:class:`etcdpy.testing.cluster.Simulation`, and the properties checked are listed in
:mod:`etcdpy.testing.checkers`. A seed gives the same trace whatever ``PYTHONHASHSEED`` is.

As a library::

    from etcdpy.testing.sim import run_seed
    result = run_seed(7)                      # RunResult; result.violation is None when clean
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from etcdpy.testing.cluster import RunResult, Simulation
from etcdpy.testing.scenario import Scenario

__all__ = ["SeedSummary", "main", "run_seed", "run_seeds"]


def run_seed(
    seed: int,
    *,
    trace: Callable[[str], None] | None = None,
    hash_trace: bool = False,
    unsafe_send_before_persist: bool = False,
    scenario: Scenario | None = None,
) -> RunResult:
    sc = scenario if scenario is not None else Scenario.from_seed(seed)
    if unsafe_send_before_persist:
        sc.unsafe_send_before_persist = True
    return Simulation(seed, sc, trace=trace, hash_trace=hash_trace).run()


@dataclass(frozen=True, slots=True)
class SeedSummary:
    """What a worker process sends back for one seed (small and picklable)."""

    seed: int
    checker: str | None
    detail: str | None
    size: int
    end_tick: int
    liveness_ticks: float


def _summarize(args: tuple[int, bool]) -> SeedSummary:
    seed, unsafe = args
    r = run_seed(seed, unsafe_send_before_persist=unsafe)
    v = r.violation
    return SeedSummary(
        seed,
        v.checker if v is not None else None,
        v.detail if v is not None else None,
        r.scenario.size,
        r.end_tick,
        r.stats.liveness_ticks,
    )


def run_seeds(
    seeds: Sequence[int], workers: int = 1, unsafe: bool = False
) -> Iterator[SeedSummary]:
    """Summaries in seed order (workers only change the speed, never the results)."""
    jobs = [(s, unsafe) for s in seeds]
    if workers <= 1:
        yield from map(_summarize, jobs)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_summarize, jobs, chunksize=4)


def _replay_command(seed: int, unsafe: bool) -> str:
    flag = " --unsafe-send-before-persist" if unsafe else ""
    return f"python -m etcdpy.testing.sim --seed {seed} --verbose{flag}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m etcdpy.testing.sim", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1")
    p.add_argument("--first-seed", type=int, default=0, help="start --seeds at this seed")
    p.add_argument("--seed", type=int, default=None, help="run this one seed")
    p.add_argument("--verbose", action="store_true", help="print the trace of --seed")
    p.add_argument("--trace-hash", action="store_true", help="print the sha256 of the trace")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--unsafe-send-before-persist",
        action="store_true",
        help="deliberately broken node driver: send before persisting (to test the checkers)",
    )
    p.add_argument("--stop-on-first", action="store_true", help="stop at the first violation")
    args = p.parse_args(argv)
    unsafe: bool = args.unsafe_send_before_persist

    if args.seed is not None:
        sink = print if args.verbose else None
        r = run_seed(args.seed, trace=sink, hash_trace=True, unsafe_send_before_persist=unsafe)
        st = r.stats
        print(
            f"seed {r.seed}: {r.scenario.size} nodes, {r.end_tick} ticks, "
            f"{st.leaders} leaderships, {st.crashes} crashes, {st.partitions} partitions, "
            f"{st.conf_changes} conf changes, "
            f"{st.acked_writes} acked writes, {st.reads} reads, {st.unknown_writes} unknown, "
            f"liveness {st.liveness_ticks:.1f} ticks"
        )
        print(f"trace sha256 {r.trace_hash}")
        if r.violation is not None:
            print(f"VIOLATION seed {r.seed} [{r.violation.checker}] {r.violation.detail}")
            return 1
        print("1 seeds, 0 violations")
        return 0

    count = args.seeds if args.seeds is not None else 100
    seeds = range(args.first_seed, args.first_seed + count)
    started = time.monotonic()
    violations = 0
    liveness: list[float] = []
    for s in run_seeds(seeds, args.workers, unsafe):
        if s.liveness_ticks >= 0:
            liveness.append(s.liveness_ticks)
        if s.checker is not None:
            violations += 1
            print(f"VIOLATION seed {s.seed} [{s.checker}] {s.detail}")
            print(f"  replay: {_replay_command(s.seed, unsafe)}", flush=True)
            if args.stop_on_first:
                break
    elapsed = time.monotonic() - started
    if liveness:
        liveness.sort()
        p99 = liveness[max(0, -(-99 * len(liveness) // 100) - 1)]
        print(
            f"ticks from healing to a commit on a quorum: median "
            f"{statistics.median(liveness):.1f}, p99 {p99:.1f}, max {liveness[-1]:.1f}"
        )
    print(f"({elapsed:.1f}s, {args.workers} workers)")
    print(f"{count} seeds, {violations} violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
