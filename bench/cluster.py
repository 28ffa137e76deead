"""Three-member clusters on loopback: etcdpy against etcd 3.4, in one run, as ratios.

Workloads (by `etcdpy benchmark`, connections spread over the three members as a client with
every endpoint does): put with 64 clients, linearizable range of one key with 64 clients. The
servers' CPU time per request is the user + system time of all three member processes over the
run, divided by the requests.

    python -m bench.cluster [--scale 0.2] [--targets etcd,etcdpy] [--workloads put]

``etcdpy-n1`` and ``etcdpy-n2`` are members with exactly 1 or 2 front-end processes
(``etcdpy`` uses the default); CPU time counts the front-end processes too.

The targets ``etcdpy-https`` and ``etcd-https`` run the same clusters over https peer URLs
(``--peer-auto-tls``); with them the run also prints http against https for each server:

    python -m bench.cluster --targets etcdpy,etcdpy-https --workloads put --scale 0.17
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc

from bench.servers import _cpu_of
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.cluster_procs import ProcessCluster
from etcdpy.testing.processes import descendants
from etcdpy.tools.benchmark import parse_args
from etcdpy.tools.benchmark import run as run_benchmark

RANGE_KEY = "bench-range-key"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _n(base: int, scale: float) -> str:
    return str(max(200, int(base * scale)))


WORKLOADS: list[tuple[str, Callable[[float], list[str]]]] = [
    ("put, 64 clients, 3 members",
     lambda s: ["--clients", "64", "--conns", "9", "put", "--total", _n(30000, s),
                "--key-space-size", "100000", "--val-size", "100"]),
    ("range linearizable, 64 clients, 3 members",
     lambda s: ["--clients", "64", "--conns", "9", "range", RANGE_KEY, "--total", _n(30000, s),
                "--consistency", "l"]),
]  # fmt: skip

PEER_TLS = ["--peer-auto-tls"]
STARTERS: dict[str, Callable[[Path], ProcessCluster]] = {
    "etcd": lambda tmp: ProcessCluster.etcd(tmp),
    "etcdpy": lambda tmp: ProcessCluster.etcdpy(tmp),
    "etcd-https": lambda tmp: ProcessCluster.etcd(tmp, extra_args=PEER_TLS, peer_scheme="https"),
    "etcdpy-https": lambda tmp: ProcessCluster.etcdpy(
        tmp, extra_args=PEER_TLS, peer_scheme="https"
    ),
    # members with exactly N front-end processes (--frontend-processes N)
    **{
        f"etcdpy-n{n}": functools.partial(
            ProcessCluster.etcdpy, extra_args=["--frontend-processes", str(n)]
        )
        for n in (1, 2)
    },
}


def _cluster_cpu(cluster: ProcessCluster) -> float:
    """CPU seconds of every member process and its front-end processes."""
    pids = [
        pid
        for m in cluster.members
        if m.proc is not None
        for pid in (m.proc.pid, *descendants(m.proc.pid))
    ]
    return sum(_cpu_of(pid) for pid in pids)


def measure(
    target: str, scale: float, workdir: Path, only: str = ""
) -> dict[str, dict[str, float]]:
    (workdir / target).mkdir(parents=True, exist_ok=True)
    cluster = STARTERS[target](workdir / target)
    out: dict[str, dict[str, float]] = {}
    with cluster:
        cluster.leader()
        endpoints = ",".join(cluster.endpoints)
        with grpc.insecure_channel(cluster.members[0].endpoint) as channel:
            req = rpc_pb2.PutRequest(key=RANGE_KEY.encode(), value=b"v" * 100)
            rpc_pb2_grpc.KVStub(channel).Put(req, timeout=10)
        warm = parse_args(["--endpoints", endpoints, "--clients", "8", "put", "--total", "500"])
        run_benchmark(warm)
        for name, argv in WORKLOADS:
            if only and not name.startswith(only):
                continue
            print(f"{target}: {name}", file=sys.stderr)
            cpu_before = _cluster_cpu(cluster)
            summary = run_benchmark(parse_args(["--endpoints", endpoints, *argv(scale)]))
            cpu = _cluster_cpu(cluster) - cpu_before
            requests = max(1, summary.ok + summary.errors)
            out[name] = {
                "rps": summary.rps,
                "p50_ms": summary.p50_ms,
                "errors": summary.errors,
                "server_cpu_us": round(cpu * 1e6 / requests, 1),
            }
    return out


def format_results(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """etcd against each etcdpy target of the run (etcdpy, etcdpy-n1, ...)."""
    ours_targets = [t for t in results if t.startswith("etcdpy") and not t.endswith("https")]
    lines = [
        f"{'workload':44} {'target':10} {'etcd req/s':>11} {'etcdpy req/s':>13} {'ratio':>7} "
        f"{'etcd CPU us/req':>16} {'etcdpy CPU us/req':>18}"
    ]
    for name, _argv in WORKLOADS:
        etcd = results.get("etcd", {}).get(name, {})
        for target in ours_targets or ["etcdpy"]:
            ours = results.get(target, {}).get(name, {})
            ratio = "-"
            if etcd.get("rps") and ours.get("rps"):
                ratio = f"{ours['rps'] / etcd['rps']:.2f}x"
            lines.append(
                f"{name:44} {target:10} {etcd.get('rps', 0):>11,.0f} {ours.get('rps', 0):>13,.0f} "
                f"{ratio:>7} {etcd.get('server_cpu_us', 0):>16,.0f} "
                f"{ours.get('server_cpu_us', 0):>18,.0f}"
            )
    return "\n".join(lines)


def format_peer_tls(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """http against https peer URLs, for each server run both ways."""
    lines = [
        f"{'server':7} {'workload':44} {'http req/s':>11} {'https req/s':>12} {'ratio':>7} "
        f"{'http CPU us/req':>16} {'https CPU us/req':>17}"
    ]
    for server in ("etcd", "etcdpy"):
        plain, tls = results.get(server, {}), results.get(f"{server}-https", {})
        for name in (n for n, _argv in WORKLOADS if n in plain and n in tls):
            a, b = plain[name], tls[name]
            lines.append(
                f"{server:7} {name:44} {a['rps']:>11,.0f} {b['rps']:>12,.0f} "
                f"{b['rps'] / a['rps']:>6.2f}x {a['server_cpu_us']:>16,.0f} "
                f"{b['server_cpu_us']:>17,.0f}"
            )
    return "\n".join(lines) if len(lines) > 1 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--targets", default="etcd,etcdpy")
    parser.add_argument("--workloads", default="", help="only workloads starting with this")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="etcdpy-bench-cluster-") as tmp:
        for target in args.targets.split(","):
            try:
                results[target] = measure(target, args.scale, Path(tmp), args.workloads)
            except (FileNotFoundError, TimeoutError, RuntimeError) as exc:
                print(f"{target}: skipped: {exc}", file=sys.stderr)
    table = format_results(results)
    tls_table = format_peer_tls(results)
    if tls_table:
        table += "\n\n" + tls_table
    print(table)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "cluster.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    (RESULTS_DIR / "cluster.txt").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
