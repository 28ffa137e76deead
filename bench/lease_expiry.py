"""Mass lease expiry: many leases (each holding a key) expire at once while a client writes.

Grants ``--leases`` leases with the same TTL, attaches one key to each (txns of 128 puts), then
one writer puts in a loop, one request at a time, until every leased key is gone. Reports the
writer's latency before the leases fall due and during the expiry, and how long the expiry
took (etcd revokes at most 1,000 leases a second, so 10,000 leases take about ten seconds).

    python -m bench.lease_expiry [--targets etcdpy,etcd] [--leases 10000] [--ttl 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc

PREFIX = b"expiring/"
TXN_OPS = 128
GRANT_CONCURRENCY = 64


@dataclass
class ExpiryReport:
    leases: int
    ttl: int
    setup_seconds: float = 0.0
    expired_before_attach: int = 0  # leases whose key could not be put (set-up slower than TTL)
    expiry_seconds: float = 0.0  # first deadline -> last leased key gone
    after_last_deadline_seconds: float = 0.0  # last deadline -> last leased key gone
    writes_before: int = 0
    writes_during: int = 0
    write_errors: int = 0
    before_p50_ms: float = 0.0
    during_p50_ms: float = 0.0
    during_p99_ms: float = 0.0
    during_max_ms: float = 0.0
    keys_left: int = -1


def _ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _grant_all(lease: rpc_pb2_grpc.LeaseStub, count: int, ttl: int) -> list[int]:
    ids: list[int] = []
    todo = iter(range(count))

    async def worker() -> None:
        for _ in todo:
            resp = await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=30)
            ids.append(resp.ID)

    await asyncio.gather(*(worker() for _ in range(GRANT_CONCURRENCY)))
    return ids


async def _attach_keys(kv: rpc_pb2_grpc.KVStub, ids: list[int]) -> int:
    """One key per lease, 128 puts per txn; returns how many leases expired before that."""
    batches = [ids[i : i + TXN_OPS] for i in range(0, len(ids), TXN_OPS)]
    sem = asyncio.Semaphore(8)
    missed = [0]

    async def one(batch: list[int]) -> None:
        ops = [
            pb.RequestOp(request_put=pb.PutRequest(key=PREFIX + b"%016x" % i, value=b"v", lease=i))
            for i in batch
        ]
        async with sem:
            try:
                await kv.Txn(pb.TxnRequest(success=ops), timeout=30)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                missed[0] += len(batch)  # the set-up took longer than the TTL

    await asyncio.gather(*(one(b) for b in batches))
    return missed[0]


async def _count_left(kv: rpc_pb2_grpc.KVStub) -> int:
    resp = await kv.Range(
        pb.RangeRequest(key=PREFIX, range_end=PREFIX[:-1] + b"0", count_only=True), timeout=30
    )
    return int(resp.count)


async def measure(endpoint: str, leases: int, ttl: int, timeout: float = 120.0) -> ExpiryReport:
    """Runs the scenario against one server; never raises for slowness, only reports it."""
    report = ExpiryReport(leases=leases, ttl=ttl)
    async with (
        grpc.aio.insecure_channel(endpoint) as setup_ch,
        grpc.aio.insecure_channel(endpoint) as write_ch,
    ):
        kv = rpc_pb2_grpc.KVStub(setup_ch)
        begin = time.monotonic()
        ids = await _grant_all(rpc_pb2_grpc.LeaseStub(setup_ch), leases, ttl)
        granted = time.monotonic()  # every deadline is at most ttl after this
        report.expired_before_attach = await _attach_keys(kv, ids)
        report.setup_seconds = round(time.monotonic() - begin, 3)
        first_deadline = begin + ttl
        last_deadline = granted + ttl

        writer = rpc_pb2_grpc.KVStub(write_ch)
        before: list[float] = []
        during: list[float] = []
        stop = asyncio.Event()

        async def write_loop() -> None:
            n = 0
            while not stop.is_set():
                start = time.monotonic()
                try:
                    await writer.Put(
                        pb.PutRequest(key=b"writer/%d" % (n % 100), value=b"x"), timeout=10
                    )
                except grpc.aio.AioRpcError:
                    report.write_errors += 1
                    continue
                (before if start < first_deadline else during).append(time.monotonic() - start)
                n += 1

        task = asyncio.create_task(write_loop())
        give_up = last_deadline + timeout
        left = await _count_left(kv)
        while left and time.monotonic() < give_up:
            await asyncio.sleep(0.2)
            left = await _count_left(kv)
        gone = time.monotonic()
        stop.set()
        await task
    report.keys_left = left
    report.expiry_seconds = round(max(0.0, gone - first_deadline), 3)
    report.after_last_deadline_seconds = round(max(0.0, gone - last_deadline), 3)
    report.writes_before, report.writes_during = len(before), len(during)
    report.before_p50_ms = round(1000 * statistics.median(before), 3) if before else 0.0
    report.during_p50_ms = _ms(during, 0.5)
    report.during_p99_ms = _ms(during, 0.99)
    report.during_max_ms = _ms(during, 1.0)
    return report


def main(argv: list[str] | None = None) -> int:
    from bench.servers import STARTERS, StartFailed

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="etcdpy,etcd")
    parser.add_argument("--leases", type=int, default=10_000)
    parser.add_argument("--ttl", type=int, default=15, help="longer than the set-up takes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="etcdpy-lease-expiry-") as tmp:
        for target in args.targets.split(","):
            try:
                server = STARTERS[target](Path(tmp) / target)
            except StartFailed as exc:
                print(f"{target}: skipped, could not start: {exc}", file=sys.stderr)
                continue
            try:
                report = asyncio.run(measure(server.endpoint, args.leases, args.ttl))
            finally:
                server.stop()
            print(json.dumps({"target": target, **asdict(report)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
