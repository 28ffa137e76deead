"""`etcdpy benchmark watch`: event latency of watchers on a prefix while a writer puts at a rate.

    etcdpy benchmark watch --watchers 1000 --streams 10 --put-rate 1000 --total 3000

Watcher processes open ``--streams`` load streams holding the watchers, each on its own
connection, plus one probe stream each (on a connection of its own) with a single watcher
whose events are timed: a put carries its send time
(time.perf_counter, the same CLOCK_MONOTONIC in every process) in its value, and the probe
records receive time minus send time for every event. The load streams are read as raw
bytes and not parsed, so the client spends little per response. The writer (this process)
sends puts at ``--put-rate`` per second, each on its own schedule, whatever the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import queue
import struct
import time
from array import array
from dataclasses import dataclass
from typing import Any

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.tools.bench_report import percentile

PREFIX = b"/bench-watch/"
PREFIX_END = b"/bench-watch0"
WATCH_METHOD = "/etcdserverpb.Watch/Watch"
_STAMP = struct.Struct("<d")


@dataclass(frozen=True, slots=True)
class WatchPlan:
    index: int
    endpoint: str
    streams: int
    watchers: int  # on the load streams of this process (the probe is extra)
    total: int  # puts the probe must see
    timeout_s: float


@dataclass(slots=True)
class WatchWorkerResult:
    index: int
    latencies: bytes  # array('d') of seconds
    load_messages: int
    failure: str = ""


@dataclass(frozen=True, slots=True)
class WatchSummary:
    watchers: int
    streams: int
    put_rate: float
    puts: int
    put_seconds: float
    events: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    load_messages: int
    put_errors: dict[str, int]
    put_p50_ms: float = 0.0  # the writer's own put latency, for comparison
    put_p99_ms: float = 0.0

    def table(self) -> str:
        return "\n".join(
            [
                f"watchers {self.watchers} on {self.streams} streams, "
                f"{self.puts} puts at {self.put_rate:.0f}/s (took {self.put_seconds:.2f}s)",
                f"probe events {self.events}, load responses {self.load_messages}, "
                f"put errors {self.put_errors or 0}",
                f"event latency ms: p50 {self.p50_ms:.3f}  p90 {self.p90_ms:.3f}  "
                f"p99 {self.p99_ms:.3f}  max {self.max_ms:.3f}",
                f"put latency ms: p50 {self.put_p50_ms:.3f}  p99 {self.put_p99_ms:.3f}",
            ]
        )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watchers", type=int, default=1, help="watchers on the prefix (total)")
    p.add_argument("--streams", type=int, default=0, help="gRPC streams (0: one per 100)")
    p.add_argument("--put-rate", type=float, default=1000.0, help="puts per second")
    p.add_argument("--watch-procs", type=int, default=1, help="watcher processes")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for events")


def _create(watch_id: int) -> bytes:
    req = pb.WatchRequest(
        create_request=pb.WatchCreateRequest(key=PREFIX, range_end=PREFIX_END, watch_id=watch_id)
    )
    return req.SerializeToString()


async def _load_stream(endpoint: str, n: int, counter: list[int]) -> None:
    # A channel of its own, but grpc's global subchannel pool gives every channel of this
    # process the same TCP connection: all the streams of a watcher process share one HTTP/2
    # connection, as the watch streams of one etcd clientv3 client do.
    async with grpc.aio.insecure_channel(endpoint) as channel:
        call = channel.stream_stream(WATCH_METHOD)()  # type: ignore[call-arg]  # raw bytes
        for i in range(n):
            await call.write(_create(i + 1))
        async for _msg in call:
            counter[0] += 1


async def _worker(plan: WatchPlan, messages: Any, start: Any) -> WatchWorkerResult:
    async with grpc.aio.insecure_channel(plan.endpoint) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        counter = [0]
        per_stream = [plan.watchers // plan.streams] * plan.streams if plan.streams else []
        for i in range(plan.watchers - sum(per_stream)):
            per_stream[i] += 1
        loads = [
            asyncio.create_task(_load_stream(plan.endpoint, n, counter)) for n in per_stream if n
        ]
        probe = rpc_pb2_grpc.WatchStub(channel).Watch()  # type: ignore[call-arg]
        await probe.write(pb.WatchRequest.FromString(_create(0)))
        first = await probe.read()
        if not isinstance(first, pb.WatchResponse) or not first.created:
            raise RuntimeError("the probe watcher was not created")
        # Every load watcher must be created before the writer starts.
        deadline = time.monotonic() + 30
        while counter[0] < plan.watchers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        counter[0] = 0
        messages.put(("ready", plan.index, None))
        while not start.is_set():
            await asyncio.sleep(0.005)
        latencies = array("d")
        clock = time.perf_counter
        unpack = _STAMP.unpack_from
        end = time.monotonic() + plan.timeout_s
        while len(latencies) < plan.total and time.monotonic() < end:
            try:
                resp = await asyncio.wait_for(probe.read(), max(0.1, end - time.monotonic()))
            except TimeoutError:
                break
            if not isinstance(resp, pb.WatchResponse):
                break
            now = clock()
            for ev in resp.events:
                latencies.append(now - unpack(ev.kv.value)[0])
        probe.cancel()
        for t in loads:
            t.cancel()
        for t in loads:
            with contextlib.suppress(BaseException):
                await t
        return WatchWorkerResult(plan.index, latencies.tobytes(), counter[0])


def run_watch_worker(plan: WatchPlan, messages: Any, start: Any) -> None:
    try:
        result = asyncio.run(_worker(plan, messages, start))
    except Exception as exc:  # reported to the parent, which fails the run
        result = WatchWorkerResult(plan.index, b"", 0, failure=f"{type(exc).__name__}: {exc}")
    messages.put(("result", plan.index, result))


async def _write(
    endpoint: str,
    total: int,
    rate: float,
    value_size: int,
    errors: dict[str, int],
    put_latencies: list[float],
) -> float:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        pad = b"x" * max(0, value_size - _STAMP.size)
        clock = time.perf_counter
        began = clock()
        pending: set[asyncio.Task[Any]] = set()

        async def put(i: int) -> None:
            sent = clock()
            value = _STAMP.pack(sent) + pad
            try:
                await kv.Put(pb.PutRequest(key=PREFIX + b"%08d" % i, value=value), timeout=60)
                put_latencies.append(clock() - sent)
            except grpc.aio.AioRpcError as exc:
                key = f"{exc.code().name}: {exc.details()}"
                errors[key] = errors.get(key, 0) + 1

        for i in range(total):
            delay = began + i / rate - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(put(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        return clock() - began


def run(args: argparse.Namespace) -> WatchSummary:
    endpoint = args.endpoints.split(",")[0].strip()
    watchers = max(1, args.watchers)
    procs = max(1, min(args.watch_procs, watchers))
    # The probes are watchers too: the load streams hold the rest.
    load = max(0, watchers - procs)
    streams = args.streams or max(1, -(-load // 100))
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    start = ctx.Event()
    plans = [
        WatchPlan(
            index=i,
            endpoint=endpoint,
            streams=max(0, streams // procs + (1 if i < streams % procs else 0)) if load else 0,
            watchers=load // procs + (1 if i < load % procs else 0),
            total=args.total,
            timeout_s=args.timeout,
        )
        for i in range(procs)
    ]
    workers = [
        ctx.Process(target=run_watch_worker, args=(plan, messages, start), daemon=True)
        for plan in plans
    ]
    for w in workers:
        w.start()
    results: list[WatchWorkerResult] = []
    put_lat: list[float] = []
    try:
        ready = 0
        while ready < procs:
            kind, _index, payload = messages.get(timeout=60)
            if kind == "result":
                raise RuntimeError(payload.failure or "a watcher process ended early")
            ready += 1
        start.set()
        put_errors: dict[str, int] = {}
        put_seconds = asyncio.run(
            _write(endpoint, args.total, args.put_rate, args.val_size, put_errors, put_lat)
        )
        while len(results) < procs:
            try:
                kind, _index, payload = messages.get(timeout=args.timeout + 30)
            except queue.Empty:
                raise RuntimeError("watcher processes did not report") from None
            if payload.failure:
                raise RuntimeError(payload.failure)
            results.append(payload)
    finally:
        start.set()
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
    lat: list[float] = []
    for r in results:
        chunk = array("d")
        chunk.frombytes(r.latencies)
        lat.extend(chunk)
    lat.sort()
    return WatchSummary(
        watchers=watchers,
        streams=streams if load else 0,
        put_rate=args.put_rate,
        puts=args.total,
        put_seconds=round(put_seconds, 3),
        events=len(lat),
        p50_ms=round(percentile(lat, 0.5) * 1000, 3),
        p90_ms=round(percentile(lat, 0.9) * 1000, 3),
        p99_ms=round(percentile(lat, 0.99) * 1000, 3),
        max_ms=round(lat[-1] * 1000, 3) if lat else 0.0,
        load_messages=sum(r.load_messages for r in results),
        put_errors=put_errors,
        put_p50_ms=round(percentile(sorted(put_lat), 0.5) * 1000, 3),
        put_p99_ms=round(percentile(sorted(put_lat), 0.99) * 1000, 3),
    )
