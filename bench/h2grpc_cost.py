"""Server CPU per unary gRPC call for three transports serving the same in-memory KV.

Starts bench.null_server with each engine (grpc.aio, etcdpy.h2grpc, the h2 library), drives
each with `etcdpy benchmark put` (64 clients, 64 connections), and divides the server
process's CPU time by the requests. One engine at a time, same load generator.

    python -m bench.h2grpc_cost [--total 20000] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from etcdpy.testing.processes import etcdpy_command, free_port

ENGINES = ("grpcio", "h2grpc", "h2")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(engine: str, total: int, reps: int) -> list[tuple[float, float]]:
    """(server CPU us per call, calls per second) for each repetition."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.null_server", "--listen", f"127.0.0.1:{port}",
         "--engine", engine],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        bench = [*etcdpy_command(), "benchmark", "--endpoints", f"127.0.0.1:{port}",
                 "--conns", "64", "--clients", "64"]  # fmt: skip
        subprocess.run([*bench, "--total", "2000", "put"], capture_output=True, check=True)
        results = []
        for _ in range(reps):
            before = cpu_seconds(server.pid)
            done = subprocess.run(
                [*bench, "--total", str(total), "put"], capture_output=True, text=True, check=True
            )
            used = cpu_seconds(server.pid) - before
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            results.append((used * 1e6 / total, float(summary["rps"])))
        return results
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    for engine in args.engines.split(","):
        started = time.monotonic()
        for cpu_us, rps in measure(engine, args.total, args.reps):
            print(f"{engine:7} server CPU {cpu_us:6.1f} us/call  {rps:8.0f} calls/s", flush=True)
        print(f"{engine:7} ({time.monotonic() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
