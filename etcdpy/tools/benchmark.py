"""`etcdpy benchmark`: a load generator for any etcd v3 endpoint (etcd itself or etcdpy).

    etcdpy benchmark --endpoints 127.0.0.1:2379 --conns 8 --clients 64 put --total 100000
    etcdpy benchmark --clients 64 range foo --consistency s
    etcdpy benchmark --clients 64 txn-put --key-space-size 100000
    etcdpy benchmark --clients 64 lease-keepalive --total 100000
    etcdpy benchmark watch --watchers 1000 --put-rate 1000 --total 3000
    etcdpy benchmark --endpoints https://127.0.0.1:2379 --cacert ca.pem --user bench:pw put

The clients are spread over several processes (`--procs`, default one per core, at most one
per client) so that one Python interpreter is not what limits the measured rate. Progress
goes to stderr; the results table and, last, one JSON line go to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import queue
import sys
import time
from array import array
from collections import Counter
from typing import Any

from etcdpy.tools import bench_watch
from etcdpy.tools.bench_report import ProgressBar, Summary, format_table, summarize
from etcdpy.tools.bench_worker import Security, WorkerPlan, WorkerResult, run_worker

OPS = ("put", "range", "txn-put", "lease-keepalive", "watch")

# Defaults of the options that may come before or after the subcommand (etcd's own order is
# `benchmark --clients 8 put`); argparse sees them as SUPPRESS so a subparser never overwrites
# a value given before it.
COMMON_DEFAULTS: dict[str, Any] = {
    "endpoints": "127.0.0.1:2379",
    "conns": 1,
    "clients": 1,
    "procs": 0,
    "total": 10000,
    "key_size": 8,
    "val_size": 8,
    "key_space_size": 1,
    "sequential_keys": False,
    "consistency": "l",
    "request_timeout": 30.0,
    "dial_timeout": 10.0,
    "progress": None,
    "cacert": "",
    "cert": "",
    "key_file": "",
    "user": "",
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    parser.add_argument("--endpoints", default=s, help="comma-separated host:port list")
    parser.add_argument("--conns", type=int, default=s, help="gRPC connections (total)")
    parser.add_argument("--clients", type=int, default=s, help="concurrent clients (total)")
    parser.add_argument("--procs", type=int, default=s, help="load processes (0: auto)")
    parser.add_argument("--total", type=int, default=s, help="requests to send")
    parser.add_argument("--key-size", type=int, default=s)
    parser.add_argument("--val-size", type=int, default=s)
    parser.add_argument("--key-space-size", type=int, default=s, help="distinct keys")
    parser.add_argument("--sequential-keys", action="store_true", default=s)
    parser.add_argument(
        "--consistency", choices=("l", "s"), default=s, help="range: linearizable/serializable"
    )
    parser.add_argument("--request-timeout", type=float, default=s, help="seconds per request")
    parser.add_argument("--dial-timeout", type=float, default=s, help="seconds to connect")
    # etcd's benchmark: TLS to https endpoints, and auth as user[:password]
    parser.add_argument("--cacert", default=s, help="CA bundle of the server's certificate")
    parser.add_argument("--cert", default=s, help="client certificate (mutual TLS)")
    parser.add_argument("--key", dest="key_file", default=s, help="client certificate's key")
    parser.add_argument("--user", default=s, help="user[:password]: authenticate, send its token")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etcdpy benchmark", description=__doc__.split("\n")[0])
    _add_common(parser)
    sub = parser.add_subparsers(dest="op", required=True)
    for op in OPS:
        p = sub.add_parser(op)
        _add_common(p)
        if op == "range":
            p.add_argument("key", nargs="?", default="foo", help="key to read")
            p.add_argument("end", nargs="?", default="", help="range end (exclusive)")
        if op == "watch":
            bench_watch.add_arguments(p)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, default in COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    if not hasattr(args, "key"):
        args.key, args.end = "", ""
    for name in ("conns", "clients", "total", "key_size", "key_space_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"etcdpy benchmark: --{name.replace('_', '-')} must be >= 1")
    return args


def split_evenly(amount: int, parts: int) -> list[int]:
    """amount split into `parts` integers that differ by at most one."""
    base, extra = divmod(amount, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def make_plans(args: argparse.Namespace) -> list[WorkerPlan]:
    procs = args.procs or (os.cpu_count() or 1)
    procs = max(1, min(procs, args.clients, args.total))
    clients = split_evenly(args.clients, procs)
    conns = [max(1, c) for c in split_evenly(args.conns, procs)]
    totals = split_evenly(args.total, procs)
    endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
    seed = time.time_ns()
    plans = []
    offset = 0
    for i in range(procs):
        plans.append(
            WorkerPlan(
                index=i,
                op=args.op,
                endpoints=endpoints,
                conns=min(conns[i], clients[i]),
                clients=clients[i],
                total=totals[i],
                key_size=args.key_size,
                val_size=args.val_size,
                key_space_size=args.key_space_size,
                sequential_keys=args.sequential_keys,
                serializable=args.consistency == "s",
                range_key=args.key.encode(),
                range_end=args.end.encode(),
                request_timeout_s=args.request_timeout,
                dial_timeout_s=args.dial_timeout,
                key_offset=offset,
                seed=seed + i,
                security=Security(args.cacert, args.cert, args.key_file, args.user),
            )
        )
        offset += totals[i]
    return plans


def run(args: argparse.Namespace) -> Summary:
    """Run the load described by args; raises RuntimeError when a process cannot run."""
    plans = make_plans(args)
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    start = ctx.Event()
    progress = ctx.Array("q", len(plans), lock=False)
    workers = [
        ctx.Process(target=run_worker, args=(plan, messages, start, progress), daemon=True)
        for plan in plans
    ]
    for w in workers:
        w.start()
    results: dict[int, WorkerResult] = {}
    try:
        ready: set[int] = set()
        while len(ready) < len(plans):
            kind, index, payload = _next_message(messages, workers)
            if kind == "result":  # a worker that fails before being ready
                raise RuntimeError(payload.failure or "a load process ended early")
            ready.add(index)
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        bar = ProgressBar(args.total, sys.stderr, enabled=show)
        began = time.perf_counter()
        start.set()
        while len(results) < len(plans):
            try:
                kind, index, payload = messages.get(timeout=0.1)
            except queue.Empty:
                bar.update(sum(progress), time.perf_counter() - began)
                _check_alive(workers, results)
                continue
            if kind == "result":
                if payload.failure:
                    raise RuntimeError(payload.failure)
                results[index] = payload
        bar.update(sum(progress), time.perf_counter() - began)
        bar.close()
    finally:
        start.set()
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.kill()
    return _combine(args, plans, list(results.values()))


def _next_message(messages: Any, workers: list[Any]) -> tuple[str, int, Any]:
    while True:
        try:
            message: tuple[str, int, Any] = messages.get(timeout=0.5)
            return message
        except queue.Empty:
            _check_alive(workers, {})


def _check_alive(workers: list[Any], results: dict[int, WorkerResult]) -> None:
    for i, w in enumerate(workers):
        if i not in results and not w.is_alive() and w.exitcode not in (None, 0):
            raise RuntimeError(f"load process {i} died with exit code {w.exitcode}")


def _combine(
    args: argparse.Namespace, plans: list[WorkerPlan], results: list[WorkerResult]
) -> Summary:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    for r in results:
        chunk = array("d")
        chunk.frombytes(r.latencies)
        latencies.extend(chunk)
        errors.update(r.errors)
    seconds = max(r.finished for r in results) - min(r.started for r in results)
    return summarize(
        op=args.op,
        total=args.total,
        latencies=latencies,
        error_codes=dict(errors),
        seconds=seconds,
        clients=args.clients,
        conns=sum(p.conns for p in plans),
        procs=len(plans),
        txn_succeeded=sum(r.txn_succeeded for r in results),
        txn_failed=sum(r.txn_failed for r in results),
        client_cpu_seconds=sum(r.cpu_seconds for r in results),
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.op == "watch":
        try:
            watch_summary = bench_watch.run(args)
        except RuntimeError as exc:
            print(f"etcdpy benchmark: {exc}", file=sys.stderr)
            return 1
        print(watch_summary.table())
        print(json.dumps(dataclasses.asdict(watch_summary), sort_keys=True), flush=True)
        return 0
    try:
        summary = run(args)
    except RuntimeError as exc:
        print(f"etcdpy benchmark: {exc}", file=sys.stderr)
        return 1
    print(format_table(summary))
    print(summary.json_line(), flush=True)
    return 0 if summary.errors == 0 else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
