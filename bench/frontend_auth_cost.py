"""Micro-benchmark: what the front-end's Auth layer costs a local Range while auth is off.

A front-end's local reads run through ``metrics -> codec -> errors -> auth -> learner guard``
(etcdpy.frontend.handlers.local_handlers). Before the front-ends checked auth, their Auth layer
had no store and handed the call on unchanged; now it holds the replica's auth view and, with
auth off, pays one attribute read per call. This runs one Range request's bytes through the
codec, errors and auth layers around a handler that answers at once, by ``invoke`` with the
context h2grpc builds, both ways, interleaved, and reports the CPU microseconds per call:

    .venv/bin/python -m bench.frontend_auth_cost [--calls 50000] [--reps 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from etcdpy.api.interceptors import Auth, Codec, MapErrors
from etcdpy.api.pipeline import build_handlers
from etcdpy.auth.store import AuthStore
from etcdpy.auth.tokens import SimpleTokens
from etcdpy.call import CallContext, Handler, invoke
from etcdpy.h2grpc.context import RequestContext
from etcdpy.mvcc.backend import Backend
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

RANGE = "/etcdserverpb.KV/Range"
HEADERS = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", RANGE.encode()),
    (b":authority", b"127.0.0.1:2379"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-go/1.26.0"),
    (b"te", b"trailers"),
]
ANSWER = pb.RangeResponse().SerializeToString()


class AnsweringKV:
    async def Range(self, request: pb.RangeRequest, context: CallContext) -> bytes:
        return ANSWER


def _handler(auth: Auth) -> Handler:
    handlers = build_handlers(
        {"KV": AnsweringKV()}, (Codec(), MapErrors(), auth), only=[("KV", "Range")]
    )
    return handlers[RANGE]


async def _cpu_per_call(handler: Handler, request: bytes, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        context = RequestContext(HEADERS, "ipv4:127.0.0.1:1", None, None)
        code, _, _ = await invoke(handler, request, context, RANGE)
        assert code == 0
    return (time.process_time() - started) / calls * 1e6


async def _main(calls: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        view = AuthStore(Backend(Path(tmp) / "db", map_size=1 << 24), SimpleTokens(0, time.time))
        assert not view.enabled
        kinds: dict[str, Handler] = {
            "no auth layer (before)": _handler(Auth()),
            "auth view, auth off (now)": _handler(Auth(view)),
        }
        request = pb.RangeRequest(key=b"k", serializable=True).SerializeToString()
        results: dict[str, list[float]] = {name: [] for name in kinds}
        for handler in kinds.values():
            await _cpu_per_call(handler, request, calls // 10)  # warm up
        for _ in range(reps):
            for name, handler in kinds.items():
                results[name].append(await _cpu_per_call(handler, request, calls))
        for name, values in results.items():
            print(
                f"{name:28} median {statistics.median(values):6.2f} us/call "
                f"(min {min(values):.2f}, max {max(values):.2f}, {reps} reps of {calls})"
            )


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    asyncio.run(_main(args.calls, args.reps))


if __name__ == "__main__":
    main()
