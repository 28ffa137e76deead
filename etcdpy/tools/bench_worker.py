"""One load-generating process of `etcdpy benchmark`: a share of the clients on grpc.aio.

The parent starts several of these (spawned, not forked: grpc does not survive a fork). Each
connects its channels, reports ready, waits for the common start signal, runs its share of
the requests with `clients` coroutines, and sends back its latencies as raw doubles.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.tls.grpc_credentials import channel_credentials

# How often (in requests) a client publishes its progress to the shared counter.
_PROGRESS_EVERY = 32


@dataclass(frozen=True, slots=True)
class Security:
    """TLS and auth as etcd's benchmark takes them: file paths ("" none), ``user[:password]``."""

    cacert: str = ""
    cert: str = ""
    key: str = ""
    user: str = ""

    def credentials(self, endpoints: tuple[str, ...]) -> grpc.ChannelCredentials | None:
        """TLS credentials when a CA is given or an endpoint is https; None: plain text."""
        return channel_credentials(self.cacert, self.cert, self.key, endpoints)


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What one process does; built by the parent, pickled to the child."""

    index: int
    op: str  # "put" | "range" | "txn-put" | "lease-keepalive"
    endpoints: tuple[str, ...]
    conns: int
    clients: int
    total: int  # requests this process sends
    key_size: int
    val_size: int
    key_space_size: int
    sequential_keys: bool
    serializable: bool
    range_key: bytes
    range_end: bytes
    request_timeout_s: float
    dial_timeout_s: float
    key_offset: int  # where this process starts in the sequential key space
    seed: int
    security: Security = Security()


@dataclass(slots=True)
class WorkerResult:
    index: int
    latencies: bytes  # array('d') of seconds, successful requests only
    ok: int
    errors: dict[str, int]  # gRPC status code name -> count
    txn_succeeded: int
    txn_failed: int
    started: float  # time.perf_counter() (CLOCK_MONOTONIC, shared by all processes)
    finished: float
    cpu_seconds: float = 0.0  # CPU this process spent generating the load
    failure: str = ""  # set when the process could not run at all


def make_key(index: int, key_size: int) -> bytes:
    """A key of exactly key_size bytes naming key number `index`."""
    digits = str(index).encode()
    if len(digits) >= key_size:
        return digits[-key_size:]
    return b"0" * (key_size - len(digits)) + digits


class _Keys:
    """Hands out keys, sequentially or at random, within the key space."""

    def __init__(self, plan: WorkerPlan) -> None:
        self._size = plan.key_size
        self._space = max(1, plan.key_space_size)
        self._sequential = plan.sequential_keys
        self._next = plan.key_offset
        self._rng = random.Random(plan.seed)

    def next(self) -> bytes:
        if self._sequential:
            index = self._next % self._space
            self._next += 1
        else:
            index = self._rng.randrange(self._space)
        return make_key(index, self._size)


def _normalize_endpoint(endpoint: str) -> str:
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :]
    return endpoint


def run_worker(plan: WorkerPlan, ready_queue: Any, start_event: Any, progress: Any) -> None:
    """Process entry point: run the plan and put a WorkerResult on ready_queue."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, WorkerResult]], WorkerResult] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        result = runner(_run(plan, ready_queue, start_event, progress))
    except Exception as exc:  # report, so the parent does not wait forever
        result = _failed(plan, f"{type(exc).__name__}: {exc}")
    ready_queue.put(("result", plan.index, result))


def _failed(plan: WorkerPlan, why: str) -> WorkerResult:
    now = time.perf_counter()
    return WorkerResult(plan.index, b"", 0, {}, 0, 0, now, now, failure=why)


async def _run(plan: WorkerPlan, ready_queue: Any, start_event: Any, progress: Any) -> WorkerResult:
    options = [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        # Without it the channels of one process share one TCP connection: --conns would not
        # be the number of connections (as it is in etcd's benchmark).
        ("grpc.use_local_subchannel_pool", 1),
    ]
    credentials = plan.security.credentials(plan.endpoints)

    def channel(endpoint: str) -> grpc.aio.Channel:
        target = _normalize_endpoint(endpoint)
        if credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, credentials, options=options)

    channels = [
        channel(plan.endpoints[(plan.index + i) % len(plan.endpoints)]) for i in range(plan.conns)
    ]
    try:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(ch.channel_ready() for ch in channels)), plan.dial_timeout_s
            )
        except TimeoutError:
            return _failed(plan, f"could not connect to {', '.join(plan.endpoints)}")
        metadata = await _token_metadata(plan, channels[0])
        ready_queue.put(("ready", plan.index, None))
        # Everyone is connected: wait (briefly blocking this loop) for the common start.
        start_event.wait()
        if plan.op == "lease-keepalive":
            leases = [rpc_pb2_grpc.LeaseStub(ch) for ch in channels]
            return await _drive_keepalives(plan, leases, progress, metadata)
        return await _drive(plan, [rpc_pb2_grpc.KVStub(ch) for ch in channels], progress, metadata)
    finally:
        for ch in channels:
            await ch.close(None)


Metadata = tuple[tuple[str, str], ...] | None


async def _token_metadata(plan: WorkerPlan, channel: grpc.aio.Channel) -> Metadata:
    """With --user: one Authenticate per process, its token sent on every call (as clientv3)."""
    if not plan.security.user:
        return None
    name, _, password = plan.security.user.partition(":")
    response = await rpc_pb2_grpc.AuthStub(channel).Authenticate(
        rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=plan.dial_timeout_s
    )
    return (("token", response.token),)


async def _drive(
    plan: WorkerPlan, stubs: list[rpc_pb2_grpc.KVStub], progress: Any, metadata: Metadata = None
) -> WorkerResult:
    latencies = array("d")
    errors: Counter[str] = Counter()
    txn_outcome = [0, 0]  # succeeded, failed
    remaining = [plan.total]
    done = [0]
    keys = _Keys(plan)
    value = os.urandom(plan.val_size)
    last_mod_rev: dict[bytes, int] = {}  # txn-put: the mod revision each key had when last seen
    timeout = plan.request_timeout_s
    clock = time.perf_counter

    def one_request(stub: rpc_pb2_grpc.KVStub) -> Callable[[], Awaitable[None]]:
        if plan.op == "put":

            async def put() -> None:
                await stub.Put(
                    rpc_pb2.PutRequest(key=keys.next(), value=value),
                    timeout=timeout,
                    metadata=metadata,
                )

            return put
        if plan.op == "range":
            request = rpc_pb2.RangeRequest(
                key=plan.range_key, range_end=plan.range_end, serializable=plan.serializable
            )

            async def range_() -> None:
                await stub.Range(request, timeout=timeout, metadata=metadata)

            return range_

        async def txn_put() -> None:
            key = keys.next()
            response = await stub.Txn(
                _k8s_update(key, value, last_mod_rev.get(key, 0)),
                timeout=timeout,
                metadata=metadata,
            )
            if response.succeeded:
                txn_outcome[0] += 1
                last_mod_rev[key] = response.header.revision
            else:
                txn_outcome[1] += 1
                kvs = response.responses[0].response_range.kvs
                last_mod_rev[key] = kvs[0].mod_revision if kvs else 0

        return txn_put

    async def client(number: int) -> None:
        send = one_request(stubs[number % len(stubs)])
        since_report = 0
        while remaining[0] > 0:
            remaining[0] -= 1
            begin = clock()
            try:
                await send()
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
            else:
                latencies.append(clock() - begin)
            since_report += 1
            if since_report == _PROGRESS_EVERY:
                done[0] += since_report
                since_report = 0
                progress[plan.index] = done[0]
        done[0] += since_report
        progress[plan.index] = done[0]

    cpu_before = time.process_time()
    started = clock()
    await asyncio.gather(*(client(n) for n in range(plan.clients)))
    finished = clock()
    return WorkerResult(
        index=plan.index,
        latencies=latencies.tobytes(),
        ok=len(latencies),
        errors=dict(errors),
        txn_succeeded=txn_outcome[0],
        txn_failed=txn_outcome[1],
        started=started,
        finished=finished,
        cpu_seconds=time.process_time() - cpu_before,
    )


def _k8s_update(key: bytes, value: bytes, expected_mod_rev: int) -> rpc_pb2.TxnRequest:
    """Kubernetes' optimistic update: write if nobody changed the key since we read it."""
    return rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                key=key,
                target=rpc_pb2.Compare.MOD,
                result=rpc_pb2.Compare.EQUAL,
                mod_revision=expected_mod_rev,
            )
        ],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
    )


async def _drive_keepalives(
    plan: WorkerPlan, stubs: list[rpc_pb2_grpc.LeaseStub], progress: Any, metadata: Metadata = None
) -> WorkerResult:
    """Each client grants its own lease, then renews it on its own keep-alive stream, one
    keep-alive in flight at a time (the latency is the round trip of one renewal)."""
    latencies = array("d")
    errors: Counter[str] = Counter()
    remaining = [plan.total]
    done = [0]
    clock = time.perf_counter

    async def client(number: int) -> None:
        stub = stubs[number % len(stubs)]
        try:
            grant = await stub.LeaseGrant(
                rpc_pb2.LeaseGrantRequest(TTL=60), timeout=plan.request_timeout_s, metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            return
        request = rpc_pb2.LeaseKeepAliveRequest(ID=grant.ID)
        stream = stub.LeaseKeepAlive(metadata=metadata)
        since_report = 0
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                begin = clock()
                await stream.write(request)
                response = await stream.read()
                if not isinstance(response, rpc_pb2.LeaseKeepAliveResponse) or response.TTL <= 0:
                    errors["LEASE_GONE"] += 1
                    return
                latencies.append(clock() - begin)
                since_report += 1
                if since_report == _PROGRESS_EVERY:
                    done[0] += since_report
                    since_report = 0
                    progress[plan.index] = done[0]
            await stream.done_writing()
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
        finally:
            done[0] += since_report
            progress[plan.index] = done[0]
            stream.cancel()

    cpu_before = time.process_time()
    started = clock()
    await asyncio.gather(*(client(n) for n in range(plan.clients)))
    finished = clock()
    return WorkerResult(
        index=plan.index,
        latencies=latencies.tobytes(),
        ok=len(latencies),
        errors=dict(errors),
        txn_succeeded=0,
        txn_failed=0,
        started=started,
        finished=finished,
        cpu_seconds=time.process_time() - cpu_before,
    )
