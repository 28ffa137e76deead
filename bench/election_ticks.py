"""Ticks to elect a leader: from a cold start, and after the leader is killed.

    python -m bench.election_ticks --seeds 1000 --size 3

Each seed runs a cluster in the simulator with a healthy network (delays of 0.1 to 0.4 ticks,
no loss), ticks jittered by +-20%, election_tick=10, PreVote and CheckQuorum on (the etcd
defaults). It measures the ticks until the first leader exists, then crashes that leader (for
good) and measures the ticks until another node becomes leader. Prints median, p99 and max.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence

from etcdpy.testing.cluster import Simulation
from etcdpy.testing.scenario import TICK, Scenario
from etcdpy.testing.simnet import NetFaults


def _quiet_scenario(size: int) -> Scenario:
    return Scenario(
        size=size,
        net=NetFaults(min_delay=1, max_delay=4),
        clients=0,
        safety_ticks=10_000,
    )


def measure(seed: int, size: int, limit_ticks: int = 500) -> tuple[float, float]:
    """(ticks to the first leader, ticks from killing it to the next leader)."""
    sim = Simulation(seed, _quiet_scenario(size))
    sim.start_cluster()
    limit = limit_ticks * TICK
    while sim.leader() is None:
        sim.step()
        if sim.now > limit:
            raise RuntimeError(f"seed {seed}: no leader in {limit_ticks} ticks")
    first = sim.now / TICK
    old = sim.leader()
    assert old is not None
    killed_at = sim.now
    old.stop()  # gone for good: no restart, no messages
    while True:
        lead = sim.leader()
        if lead is not None and lead.id != old.id:
            break
        sim.step()
        if sim.now > killed_at + limit:
            raise RuntimeError(f"seed {seed}: no new leader in {limit_ticks} ticks")
    return first, (sim.now - killed_at) / TICK


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(p / 100 * len(ordered)) - 1)  # nearest rank
    return ordered[rank]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.election_ticks")
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--size", type=int, default=3)
    args = ap.parse_args(argv)
    cold: list[float] = []
    again: list[float] = []
    for seed in range(args.seeds):
        a, b = measure(seed, args.size)
        cold.append(a)
        again.append(b)
    for name, values in (("cold start", cold), ("after killing the leader", again)):
        print(
            f"{args.size} nodes, {name}: median {statistics.median(values):.1f} ticks, "
            f"p99 {_pct(values, 99):.1f}, max {max(values):.1f} ({len(values)} seeds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
