"""`make bench`: the same workloads against real etcd, the null server and etcdpy, as ratios.

Targets: etcd 3.4 (one member, fsync on, loopback, temporary data dir), the null server
(bench/null_server.py: grpc.aio on a dict, nothing durable: the Python ceiling), and etcdpy.
A target that does not start is skipped, with the reason printed.

Workloads (by `etcdpy benchmark`): put with 1 client (p50 latency); put, linearizable range,
serializable range of one key, Kubernetes-style txn-put and lease keep-alives (each client
renewing its own lease on its own stream) with 64 clients (req/s); the resident memory of a
fresh server after 100,000 puts of 100-byte values; and watch event latency (p50, p99) with 1,
100 and 1,000 watchers on a prefix while one writer puts 1,000 keys/s (`etcdpy benchmark
watch`; the null server has no Watch).

    python -m bench.run [--targets etcd,null,etcdpy] [--scale 0.2] [--suites kv,watch]

Targets: etcd, null, null-h2grpc (the same dict served by etcdpy.h2grpc), etcdpy (its default
front-end processes), etcdpy-n1, etcdpy-n2, etcdpy-n4
(exactly that many; n1 is the member serving its clients alone).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.servers import STARTERS, Server, StartFailed
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.tools.bench_watch import run as run_watch_benchmark
from etcdpy.tools.benchmark import parse_args
from etcdpy.tools.benchmark import run as run_benchmark

RANGE_KEY = "bench-range-key"
VALUE_SIZE = 100
RSS_KEYS = 100_000
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str  # what the number is; ratios are always etcdpy's number over the other's
    argv: Callable[[float], list[str]]  # benchmark arguments at a given scale
    metric: str  # field of the benchmark summary


def _n(base: int, scale: float) -> str:
    return str(max(100, int(base * scale)))


WORKLOADS = [
    Workload(
        "put, 1 client",
        "p50 ms",
        lambda s: ["--clients", "1", "--conns", "1", "put", "--total", _n(3000, s),
                   "--key-space-size", "100000", "--val-size", str(VALUE_SIZE)],
        "p50_ms",
    ),
    Workload(
        "put, 64 clients",
        "req/s",
        lambda s: ["--clients", "64", "--conns", "8", "put", "--total", _n(40000, s),
                   "--key-space-size", "100000", "--val-size", str(VALUE_SIZE)],
        "rps",
    ),
    Workload(
        "range linearizable, 1 key, 64 clients",
        "req/s",
        lambda s: ["--clients", "64", "--conns", "8", "range", RANGE_KEY, "--total", _n(40000, s),
                   "--consistency", "l"],
        "rps",
    ),
    Workload(
        "range serializable, 1 key, 64 clients",
        "req/s",
        lambda s: ["--clients", "64", "--conns", "8", "range", RANGE_KEY, "--total", _n(40000, s),
                   "--consistency", "s"],
        "rps",
    ),
    Workload(
        "txn-put, 64 clients",
        "req/s",
        lambda s: ["--clients", "64", "--conns", "8", "txn-put", "--total", _n(40000, s),
                   "--key-space-size", "100000", "--val-size", str(VALUE_SIZE)],
        "rps",
    ),
    Workload(
        "lease keep-alive, 64 clients",
        "req/s",
        lambda s: ["--clients", "64", "--conns", "8", "lease-keepalive", "--total", _n(40000, s)],
        "rps",
    ),
]  # fmt: skip
RSS_NAME = f"RSS after {RSS_KEYS:,} keys of {VALUE_SIZE} B"

CPU_SUFFIX = ", server CPU"
Results = dict[str, dict[str, float | str]]  # workload -> target -> number or "skipped: why"


def _bench(server: Server, argv: list[str]) -> dict[str, float]:
    args = parse_args(["--endpoints", server.endpoint, *argv])
    cpu_before = server.cpu_seconds()
    summary = run_benchmark(args)
    server_cpu = server.cpu_seconds() - cpu_before
    if summary.errors:
        print(f"  ({summary.errors} errors: {summary.error_codes})", file=sys.stderr)
        if not summary.ok:  # e.g. the null server has no Lease service
            raise RuntimeError(f"every request failed: {summary.error_codes}")
    requests = max(1, summary.ok + summary.errors)
    return {
        "p50_ms": summary.p50_ms,
        "rps": summary.rps,
        "errors": summary.errors,
        "server_cpu_us": round(server_cpu * 1e6 / requests, 1),
        "client_cpu_us": summary.client_cpu_us_per_req,
    }


def _put_range_key(server: Server) -> None:
    with grpc.insecure_channel(server.endpoint) as channel:
        request = rpc_pb2.PutRequest(key=RANGE_KEY.encode(), value=b"v" * VALUE_SIZE)
        rpc_pb2_grpc.KVStub(channel).Put(request, timeout=10)


def _measure_target(target: str, scale: float, workdir: Path, results: Results) -> None:
    try:
        server = STARTERS[target](workdir / f"{target}-load")
    except StartFailed as exc:
        print(f"{target}: skipped, could not start: {exc}", file=sys.stderr)
        for w in [*WORKLOADS, None]:
            results.setdefault(w.name if w else RSS_NAME, {})[target] = "did not start"
        return
    try:
        _put_range_key(server)
        _bench(server, ["--clients", "8", "put", "--total", "500"])  # warm-up
        for w in WORKLOADS:
            print(f"{target}: {w.name}", file=sys.stderr)
            try:
                figures = _bench(server, w.argv(scale))
            except RuntimeError as exc:
                results.setdefault(w.name, {})[target] = f"failed: {exc}"
                continue
            results.setdefault(w.name, {})[target] = figures[w.metric]
            results.setdefault(w.name + CPU_SUFFIX, {})[target] = figures["server_cpu_us"]
    finally:
        server.stop()
    _measure_rss(target, workdir, results)


def _measure_rss(target: str, workdir: Path, results: Results) -> None:
    try:
        server = STARTERS[target](workdir / f"{target}-rss")
    except StartFailed as exc:
        results.setdefault(RSS_NAME, {})[target] = f"did not start: {exc}"
        return
    try:
        keys = str(RSS_KEYS)  # not scaled: the figure is defined at 100,000 keys
        print(f"{target}: {RSS_NAME}", file=sys.stderr)
        _bench(server, ["--clients", "64", "--conns", "8", "put", "--total", keys,
                        "--key-space-size", keys, "--sequential-keys",
                        "--val-size", str(VALUE_SIZE)])  # fmt: skip
        time.sleep(1.0)  # let background work (commits, compaction of buffers) settle
        results.setdefault(RSS_NAME, {})[target] = round(server.rss_bytes() / 2**20, 1)
    except RuntimeError as exc:
        results.setdefault(RSS_NAME, {})[target] = f"failed: {exc}"
    finally:
        server.stop()


WATCHERS = (1, 100, 1000)
WATCH_PUT_RATE = 1000
WATCH_METRICS = ("p50", "p99", "put p50", "put p99", "server CPU/put")


def _watch_name(watchers: int, metric: str) -> str:
    what = "watch latency" if metric in ("p50", "p99") else "watch bench"
    return f"{what} {metric}, {watchers:,} watchers, {WATCH_PUT_RATE:,} puts/s"


def _measure_watch(target: str, scale: float, workdir: Path, results: Results) -> None:
    try:
        server = STARTERS[target](workdir / f"{target}-watch")
    except StartFailed as exc:
        for n in WATCHERS:
            for metric in WATCH_METRICS:
                results.setdefault(_watch_name(n, metric), {})[target] = f"did not start: {exc}"
        return
    try:
        for n in WATCHERS:
            print(f"{target}: watch, {n} watchers", file=sys.stderr)
            args = parse_args(["--endpoints", server.endpoint, "watch", "--watchers", str(n),
                               "--put-rate", str(WATCH_PUT_RATE), "--total", _n(3000, scale),
                               "--timeout", "90"])  # fmt: skip
            cpu_before = server.cpu_seconds()
            try:
                summary = run_watch_benchmark(args)
            except RuntimeError as exc:
                for metric in WATCH_METRICS:
                    results.setdefault(_watch_name(n, metric), {})[target] = f"failed: {exc}"
                continue
            cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / max(1, summary.puts)
            results.setdefault(_watch_name(n, "p50"), {})[target] = summary.p50_ms
            results.setdefault(_watch_name(n, "p99"), {})[target] = summary.p99_ms
            results.setdefault(_watch_name(n, "put p50"), {})[target] = summary.put_p50_ms
            results.setdefault(_watch_name(n, "put p99"), {})[target] = summary.put_p99_ms
            results.setdefault(_watch_name(n, "server CPU/put"), {})[target] = round(cpu_ms, 3)
    finally:
        server.stop()


def _ratio(a: float | str | None, b: float | str | None) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}x"
    return "-"


def _cell(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return "skipped"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def _table(results: Results, units: dict[str, str], targets: list[str]) -> list[str]:
    """One column per target, then each etcdpy target's ratio to etcd and to the null server."""
    ours = [t for t in targets if t.startswith("etcdpy")]
    bases = [t for t in ("etcd", "null") if t in targets]
    ratios = [(t, b) for t in ours for b in bases]
    header = ("workload", "unit", *targets, *(f"{t}/{b}" for t, b in ratios))
    rows = [header]
    for name, unit in units.items():
        row = results.get(name, {})
        cells = [_cell(row.get(t)) for t in targets]
        rows.append((name, unit, *cells, *(_ratio(row.get(t), row.get(b)) for t, b in ratios)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def format_results(results: Results, targets: list[str] | None = None) -> str:
    """The figures table, the server's CPU time per request, then watch latency."""
    figures = {w.name: w.unit for w in WORKLOADS if w.name in results}
    if RSS_NAME in results:
        figures[RSS_NAME] = "MiB"
    cpu = {w.name + CPU_SUFFIX: "us/req" for w in WORKLOADS if w.name + CPU_SUFFIX in results}
    watch = {
        _watch_name(n, m): "ms" for n in WATCHERS for m in WATCH_METRICS
        if _watch_name(n, m) in results
    }  # fmt: skip
    if targets is None:
        targets = ["etcd", "null", "etcdpy"]
    parts: list[str] = []
    for table in (figures, cpu, watch):
        if table:
            parts += [*_table(results, table, targets), ""]
    return "\n".join(parts).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="etcd,null,etcdpy")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies request counts")
    parser.add_argument("--suites", default="kv,watch", help="kv, watch or both")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in STARTERS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {sorted(STARTERS)}")
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="etcdpy-bench-") as tmp:
        suites = {x for x in args.suites.split(",") if x}
        for target in targets:
            workdir = Path(tmp)
            if "kv" in suites:
                _measure_target(target, args.scale, workdir, results)
            if "watch" in suites and not target.startswith("null"):
                _measure_watch(target, args.scale, workdir, results)
    print(format_results(results, targets))
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {"time": stamp, "scale": args.scale, "results": results}
    (RESULTS_DIR / f"{stamp}.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
