"""Server CPU per HTTP/1.1 request on the client port: GET /metrics and the JSON gateway's
POST /v3/kv/put and /v3/kv/range.

Starts one member serving its clients alone (``--frontend-processes 1``: no front-end), drives
it with N concurrent keep-alive clients (raw sockets in one asyncio loop, so the load generator
stays cheap) for a fixed count per workload, and divides the CPU time of the member's processes
(core and front-ends, from /proc) by the requests.

    python -m bench.http_cost [--total 4000] [--clients 16] [--reps 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time
from pathlib import Path

from etcdpy.testing.processes import MemberProcess, descendants, etcdpy_member

WORKLOADS = ("metrics", "put", "range")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def request_bytes(workload: str, port: int, i: int) -> bytes:
    head = f"Host: 127.0.0.1:{port}\r\nUser-Agent: http-cost\r\n"
    if workload == "metrics":
        return f"GET /metrics HTTP/1.1\r\n{head}\r\n".encode()
    key = base64.b64encode(b"bench/%d" % (i % 1000)).decode()
    if workload == "put":
        body = json.dumps({"key": key, "value": base64.b64encode(b"v" * 64).decode()})
        path = "/v3/kv/put"
    else:
        body = json.dumps({"key": key})
        path = "/v3/kv/range"
    return (
        f"POST {path} HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status
    start = lower.index(b"content-length:") + len(b"content-length:")
    length = int(lower[start : lower.index(b"\r\n", start)])
    await reader.readexactly(length)
    return status


async def drive(port: int, workload: str, total: int, clients: int) -> float:
    """Sends ``total`` requests over ``clients`` keep-alive connections; returns seconds."""
    counter = iter(range(total))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                writer.write(request_bytes(workload, port, i))
                status = await read_response(reader)
                assert status == 200, status
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def measure(member: MemberProcess, workload: str, total: int, clients: int) -> tuple[float, float]:
    """(server CPU us per request, requests per second)."""
    assert member.proc is not None
    pids = [member.proc.pid, *descendants(member.proc.pid)]
    before = cpu_seconds(pids)
    seconds = asyncio.run(drive(member.client_port, workload, total, clients))
    used = cpu_seconds(pids) - before
    return used * 1e6 / total, total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="http-cost-") as tmp:
        member = etcdpy_member(Path(tmp), extra_args=["--frontend-processes", "1"])
        member.start()
        try:
            for workload in args.workloads.split(","):
                asyncio.run(drive(member.client_port, workload, 200, args.clients))  # warm-up
                for _ in range(args.reps):
                    cpu_us, rps = measure(member, workload, args.total, args.clients)
                    print(
                        f"{workload:8} server CPU {cpu_us:7.1f} us/req  {rps:7.0f} req/s",
                        flush=True,
                    )
        finally:
            member.stop()


if __name__ == "__main__":
    main()
