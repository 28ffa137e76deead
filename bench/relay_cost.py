"""CPU the client-port relay spends per gRPC request, measured in a process of its own.

Starts an etcdpy member, puts a second relay (etcdpy.server.client_front, the same code) in
front of that member's private gRPC socket in a separate process, drives load through it with
`etcdpy benchmark`, and divides the relay process's CPU time by the requests.

    python -m bench.relay_cost [--total 20000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from etcdpy.testing.processes import etcdpy_command, etcdpy_member, free_port

RELAY = """
import asyncio, sys, uvloop
from etcdpy.server.client_front import ClientFront
from etcdpy.server.http1 import text_error
async def handler(request):
    return text_error(404)
async def main():
    front = ClientFront(handler, sys.argv[1])
    await front.listen("127.0.0.1", int(sys.argv[2]))
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def grpc_socket_of(pid: int) -> str:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[6] in inodes and parts[7].endswith("/grpc.sock"):
            return parts[7]
    raise RuntimeError("no grpc.sock found for the member")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relay-cost-") as tmp:
        member = etcdpy_member(Path(tmp))
        member.start()
        relay = None
        try:
            sock = grpc_socket_of(member.proc.pid)  # type: ignore[union-attr]
            port = free_port()
            relay = subprocess.Popen(
                [sys.executable, "-c", RELAY, sock, str(port)], stdout=subprocess.PIPE, text=True
            )
            assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
            bench = [*etcdpy_command(), "benchmark", "--conns", "4", "--clients", "32"]
            subprocess.run(
                [*bench, "--endpoints", f"127.0.0.1:{port}", "--total", "2000", "put"],
                capture_output=True,
                check=True,
            )
            for op in ("range", "put"):
                extra = ["--consistency", "s", "range", "foo"] if op == "range" else ["put"]
                for _ in range(args.reps):
                    before = cpu_seconds(relay.pid)
                    t = time.monotonic()
                    subprocess.run(
                        [*bench, "--endpoints", f"127.0.0.1:{port}", "--total",
                         str(args.total), *extra],
                        capture_output=True,
                        check=True,
                    )  # fmt: skip
                    used = cpu_seconds(relay.pid) - before
                    print(
                        f"{op:5} relay CPU {used * 1e6 / args.total:6.1f} us/request "
                        f"({time.monotonic() - t:.1f}s)",
                        flush=True,
                    )
        finally:
            if relay is not None:
                relay.terminate()
                relay.wait()
            member.stop()


if __name__ == "__main__":
    main()
