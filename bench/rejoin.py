"""How quickly a member serves again after a fault: etcdpy against etcd 3.4, interleaved.

    python -m bench.rejoin [--reps 5] [--cut 10] [--scenarios partition-follower,kill9-leader]

Three-member clusters of each server (the same flags; ``--flags`` adds more to both), run side
by side, one fault at a time, alternating servers. After each fault the clock runs from the
heal, the restart or the resume until the faulted member answers a linearizable Range (not
``etcdserver: no leader``, not a timeout) on a fresh gRPC channel, probed every 20 ms.

Scenarios:

* ``partition-follower`` / ``partition-leader``: every member runs in its own network namespace,
  linked by a veth pair to a bridge; the member's link is cut (``ip link set <veth> down`` on
  the bridge side: packets vanish, nothing is refused) for ``--cut`` seconds, then healed.
* ``kill9-follower`` / ``kill9-leader``: on loopback, kill -9, ``--down`` seconds, restart.
* ``stop-follower`` / ``stop-leader``: on loopback, SIGSTOP, ``--down`` seconds, SIGCONT.

A writer puts a key every 50 ms through the other members during each fault, so the faulted
member always has entries to catch up. Needs root (namespaces) for the partition scenarios.
Every namespace, link and process is removed at the end, by name and by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from etcdpy.testing.cluster_procs import ProcessCluster
from etcdpy.testing.processes import etcdpy_command
from etcdpy.testing.rejoin import Netns, netns_cluster, time_to_serve, writing

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "partition-follower",
    "partition-leader",
    "kill9-follower",
    "kill9-leader",
    "stop-follower",
    "stop-leader",
)


def pick(cluster: ProcessCluster, target: str) -> int:
    leader = cluster.leader(timeout=30)
    index = cluster.members.index(leader)
    if target == "leader":
        return index
    return (index + 1) % len(cluster.members)


def wait_all_serve(cluster: ProcessCluster, timeout: float = 60.0) -> None:
    since = time.monotonic()
    for m in cluster.members:
        time_to_serve(m.endpoint, since, timeout)


def run_fault(
    cluster: ProcessCluster, net: Netns | None, scenario: str, cut: float, down: float
) -> float:
    kind, target = scenario.split("-")
    wait_all_serve(cluster)
    index = pick(cluster, target)
    member = cluster.members[index]
    others = [m.endpoint for m in cluster.members if m is not member]
    with writing(others):
        if kind == "partition":
            assert net is not None
            net.cut(index)
            try:
                time.sleep(cut)
            finally:
                net.heal(index)
        elif kind == "kill9":
            member.kill9()
            time.sleep(down)
            member.start(wait=False)
        else:
            member.pause()
            try:
                time.sleep(down)
            finally:
                member.resume()
        since = time.monotonic()
        took = time_to_serve(member.endpoint, since)
    return took


# -- the run ----------------------------------------------------------------------------------


def servers() -> dict[str, list[str]]:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise SystemExit("etcd (Debian package etcd-server) is not installed")
    return {"etcd": [etcd], "etcdpy": etcdpy_command()}


def _stats(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def format_table(results: dict[str, dict[str, list[float]]], scenarios: list[str]) -> str:
    lines = [
        f"{'scenario':20} {'etcd min/med/max s':>20} {'etcdpy min/med/max s':>22} "
        f"{'ratio med':>10} {'ratio max':>10}"
    ]
    for scenario in scenarios:
        etcd, ours = results["etcd"].get(scenario), results["etcdpy"].get(scenario)
        if not etcd or not ours:
            continue
        e, o = _stats(etcd), _stats(ours)
        lines.append(
            f"{scenario:20} {'/'.join(f'{v:.2f}' for v in e):>20} "
            f"{'/'.join(f'{v:.2f}' for v in o):>22} "
            f"{o[1] / max(e[1], 1e-3):>9.2f}x {o[2] / max(e[2], 1e-3):>9.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cut", type=float, default=10.0, help="seconds a link stays cut")
    parser.add_argument("--down", type=float, default=3.0, help="seconds killed or stopped")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--flags", default="", help="more flags for every member of both")
    parser.add_argument("--keep", action="store_true", help="keep the members' logs (in /tmp)")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s}")
    flags = args.flags.split()
    binaries = servers()
    needs_netns = any(s.startswith("partition") for s in scenarios)
    if needs_netns and os.geteuid() != 0:
        raise SystemExit("the partition scenarios need root (network namespaces)")
    results: dict[str, dict[str, list[float]]] = {name: {} for name in binaries}
    tmp = Path(tempfile.mkdtemp(prefix="etcdpy-bench-rejoin-"))
    tag = f"{os.getpid() % 100000:05d}"
    nets: dict[str, Netns] = {}
    clusters: dict[str, ProcessCluster] = {}
    loop_clusters: dict[str, ProcessCluster] = {}
    try:
        for i, (name, binary) in enumerate(binaries.items()):
            if needs_netns:
                net = Netns(f"{tag}{i}", 3, f"10.{200 + os.getpid() % 50}.{i + 10}")
                net.create()
                nets[name] = net
                clusters[name] = netns_cluster(tmp / f"{name}-netns", binary, net, flags)
            else:
                (tmp / name).mkdir()
                clusters[name] = ProcessCluster.build(tmp / name, binary, 3, flags, suffix=name)
            clusters[name].start()
        # Loopback clusters for the process faults (kill -9, SIGSTOP), netns ones for the cuts.
        for name, binary in binaries.items():
            (tmp / f"{name}-lo").mkdir()
            loop_clusters[name] = ProcessCluster.build(
                tmp / f"{name}-lo", binary, 3, flags, suffix=name
            )
        loop_started = False
        for scenario in scenarios:
            is_cut = scenario.startswith("partition")
            if not is_cut and needs_netns and not loop_started:
                for c in loop_clusters.values():
                    c.start()
                loop_started = True
            for rep in range(args.reps):
                order = list(binaries) if rep % 2 == 0 else list(reversed(binaries))
                for name in order:
                    on_loopback = needs_netns and not is_cut
                    cluster = loop_clusters[name] if on_loopback else clusters[name]
                    cut_net = nets.get(name) if is_cut else None
                    took = run_fault(cluster, cut_net, scenario, args.cut, args.down)
                    results[name].setdefault(scenario, []).append(round(took, 3))
                    print(f"{scenario} #{rep} {name}: {took:.2f} s", file=sys.stderr, flush=True)
    finally:
        for cluster in [*clusters.values(), *loop_clusters.values()]:
            cluster.stop()
        for net in nets.values():
            net.remove()
        if args.keep:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    table = format_table(results, scenarios)
    print(table)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "rejoin.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    (RESULTS_DIR / "rejoin.txt").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
