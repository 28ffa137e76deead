"""Micro-benchmark of a unary call across the core link, in one process (no server): a
front-end's forwarding handler (etcdpy.frontend.handlers) run by ``invoke`` with the context
h2grpc builds from a client's headers, over a real unix socket to a CoreLinkServer whose handler
answers at once. Reports the CPU microseconds per call (both ends: one process; CPU time,
not wall time, so that other processes on the machine disturb it less),
calls without auth metadata and calls with a ``token``.

Runs against any etcdpy checkout (before the identity crossed the link too), so a change can
be measured against its base, interleaved:

    .venv/bin/python -m bench.corelink_cost [--calls 20000] [--batch 64] [--reps 5]
    (cd ../base && .venv/bin/python ../link/bench/corelink_cost.py ...)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from etcdpy.call import invoke
from etcdpy.corelink.client import CoreLinkClient
from etcdpy.corelink.core import CoreLinkServer
from etcdpy.frontend.handlers import build_handlers
from etcdpy.h2grpc.context import RequestContext

PUT = "/etcdserverpb.KV/Put"
# The headers grpc-go's etcd client sends with a Put, as h2grpc hands them to the context.
HEADERS = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", PUT.encode()),
    (b":authority", b"127.0.0.1:2379"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-go/1.26.0"),
    (b"te", b"trailers"),
]
TOKEN = (b"token", b"EoDskQptKBfmPuCw.17")  # a simple token's shape


async def _answer(request: bytes, context: Any) -> bytes:
    return b"\n\x00"


async def _measure(calls: int, batch: int, headers: list[tuple[bytes, bytes]]) -> float:
    """Microseconds per call, ``batch`` calls in flight at a time."""
    handlers = {PUT: grpc.unary_unary_rpc_method_handler(_answer)}
    server = CoreLinkServer(handlers, lambda _: None)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "link.sock")
        await server.listen(path)
        link = await CoreLinkClient.connect(path, lambda: None)
        forward = build_handlers(link)[PUT]
        request = b"\n\x03key\x12\x05value"

        async def one() -> None:
            context = RequestContext(headers, "ipv4:127.0.0.1:5000", None, None)
            code, _, _ = await invoke(forward, request, context)
            assert code == 0

        try:
            for _ in range(10):  # warm up
                await asyncio.gather(*(one() for _ in range(batch)))
            started = time.process_time()
            for _ in range(calls // batch):
                await asyncio.gather(*(one() for _ in range(batch)))
            return (time.process_time() - started) * 1e6 / (calls // batch * batch)
        finally:
            link.close()
            await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    for name, headers in (("plain", HEADERS), ("token", [*HEADERS, TOKEN])):
        runs = [asyncio.run(_measure(args.calls, args.batch, headers)) for _ in range(args.reps)]
        print(
            f"{name}: {statistics.median(runs):.2f} us/call "
            f"(min {min(runs):.2f}, max {max(runs):.2f}, {args.reps} runs)",
            flush=True,
        )


if __name__ == "__main__":
    main()
