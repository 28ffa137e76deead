"""Drives the lessor on the server: expiry and checkpoints through the log, keep-alives.

Only the leader decides that a lease has expired: every half second it takes up to half the
revoke rate of expired leases from the lessor and proposes their revokes (at most
``MAX_PENDING_REVOKES`` in flight, so other writes interleave with a mass expiry); every member
applies them. Every ``checkpoint_interval`` it proposes the remaining TTLs of leases that have
run down, so a restarted or new leader starts them from there and not from their full TTL. A
graceful stop records every remaining TTL first.

Keep-alives never go through the log (they only move the leader's deadline), except to clear
a checkpoint on record, which would otherwise shorten the renewed lease after a leader change.
A follower forwards keep-alives and time-to-live queries to the leader's client URL over gRPC
(etcd forwards them over its peer HTTP API).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from etcdpy import errors
from etcdpy.lease.lessor import LEASE_REVOKE_RATE, Expired, Lessor, NotPrimary
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc

log = structlog.get_logger(__name__)

REVOKE_PERIOD_SECONDS = 0.5
MAX_PENDING_REVOKES = 16
CHECKPOINT_BATCH = 1000
DEFAULT_CHECKPOINT_INTERVAL = 5.0
# How often a keep-alive that cannot be answered yet (lease being revoked, leader not yet
# promoted) looks again.
RETRY_SECONDS = 0.05

Propose = Callable[[internalpb.InternalRaftRequest], Awaitable[Any]]
LeaderEndpoint = Callable[[], str | None]


class LeaseDriver:
    def __init__(
        self,
        lessor: Lessor,
        propose: Propose,
        is_leader: Callable[[], bool],
        wait_applied: Callable[[], Awaitable[None]],
        request_timeout: float,
        leader_endpoint: LeaderEndpoint = lambda: None,
    ) -> None:
        self.lessor = lessor
        self._forward = LeaderForwarder(leader_endpoint)
        self._propose = propose
        self._is_leader = is_leader
        self._wait_applied = wait_applied
        self._timeout = request_timeout
        self._tasks: list[asyncio.Task[None]] = []
        self.revoked_expired = 0  # leases this member revoked because they expired

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._expiry_loop(), name="lease-expiry"),
            asyncio.create_task(self._checkpoint_loop(), name="lease-checkpoint"),
        ]

    async def stop(self) -> None:
        """Record every remaining TTL (if leader), then stop the loops."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._forward.close()
        cps = self.lessor.due_checkpoints(every=True)
        if cps:
            try:
                await asyncio.wait_for(self._checkpoint(cps), timeout=2.0)
            except (TimeoutError, errors.EtcdError) as exc:
                log.warning("final lease checkpoint failed", error=repr(exc))

    # -- leadership -----------------------------------------------------------------------

    def promote(self, extend: float) -> None:
        self.lessor.promote(extend)
        log.info("lessor promoted", leases=len(self.lessor), extend=extend)

    def demote(self) -> None:
        self.lessor.demote()

    # -- requests -------------------------------------------------------------------------

    async def renew(self, lease_id: int) -> int:
        """The lease's TTL after a keep-alive; LeaseNotFound once it is gone."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._timeout
        while True:
            if not self._is_leader():
                return await self._forward.renew(lease_id, give_up - loop.time())
            await self._wait_applied()
            try:
                renewal = self.lessor.renew(lease_id)
            except (Expired, NotPrimary):
                # Expired: its revoke is on the way, answer once it has gone through.
                # NotPrimary: just elected, the lessor is promoted when the term's first
                # entry applies.
                if loop.time() > give_up:
                    raise errors.Timeout() from None
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if renewal.clear_checkpoint:
                with contextlib.suppress(errors.EtcdError):
                    await self._checkpoint([(lease_id, 0)])
            return renewal.ttl

    async def time_to_live(self, req: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        """etcd answers an unknown lease with TTL -1 rather than an error."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._timeout
        while True:
            if not self._is_leader():
                return await self._forward.time_to_live(req, give_up - loop.time())
            await self._wait_applied()
            try:
                lease, remaining = self.lessor.time_to_live(req.ID)
            except errors.LeaseNotFound:
                return pb.LeaseTimeToLiveResponse(ID=req.ID, TTL=-1)
            except NotPrimary:
                if loop.time() > give_up:
                    raise errors.Timeout() from None
                await asyncio.sleep(RETRY_SECONDS)
                continue
            resp = pb.LeaseTimeToLiveResponse(ID=req.ID, TTL=remaining, grantedTTL=lease.ttl)
            if req.keys:
                resp.keys.extend(lease.sorted_keys())
            return resp

    def leases(self) -> pb.LeaseLeasesResponse:
        resp = pb.LeaseLeasesResponse()
        for lease in self.lessor.leases():
            resp.leases.add(ID=lease.id)
        return resp

    # -- the loops ------------------------------------------------------------------------

    async def _expiry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pending = asyncio.Semaphore(MAX_PENDING_REVOKES)
        while True:
            began = loop.time()
            expired = self.lessor.find_expired(LEASE_REVOKE_RATE // 2)
            if expired:
                # One batch per period at most: the revoke rate limit.
                await asyncio.gather(*(self._revoke_expired(i, pending) for i in expired))
            await asyncio.sleep(max(0.0, began + REVOKE_PERIOD_SECONDS - loop.time()))

    async def _revoke_expired(self, lease_id: int, pending: asyncio.Semaphore) -> None:
        async with pending:
            if not self.lessor.is_primary or lease_id not in self.lessor:
                return
            try:
                await self._propose(
                    internalpb.InternalRaftRequest(lease_revoke=pb.LeaseRevokeRequest(ID=lease_id))
                )
                self.revoked_expired += 1
            except errors.LeaseNotFound:
                pass  # revoked by a client meanwhile
            except errors.EtcdError as exc:
                # The lessor offers it again after its retry interval.
                log.warning("failed to revoke expired lease", lease=f"{lease_id:016x}", error=exc)

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lessor.checkpoint_interval)
            cps = self.lessor.due_checkpoints()
            if cps:
                try:
                    await self._checkpoint(cps)
                except errors.EtcdError as exc:
                    log.warning("lease checkpoint failed", error=repr(exc))

    async def _checkpoint(self, cps: list[tuple[int, int]]) -> None:
        for start in range(0, len(cps), CHECKPOINT_BATCH):
            req = pb.LeaseCheckpointRequest()
            for lease_id, remaining in cps[start : start + CHECKPOINT_BATCH]:
                req.checkpoints.add(ID=lease_id, remaining_TTL=remaining)
            await self._propose(internalpb.InternalRaftRequest(lease_checkpoint=req))


class LeaderForwarder:
    """A follower's channel to the leader's client URL, for the lease calls only it answers."""

    def __init__(self, leader_endpoint: LeaderEndpoint) -> None:
        self._leader_endpoint = leader_endpoint
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self) -> rpc_pb2_grpc.LeaseStub:
        endpoint = self._leader_endpoint()
        if endpoint is None:
            raise errors.NoLeader()
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = grpc.aio.insecure_channel(endpoint)
            self._channels[endpoint] = channel
        return rpc_pb2_grpc.LeaseStub(channel)

    async def renew(self, lease_id: int, timeout: float) -> int:
        call = self._stub().LeaseKeepAlive(timeout=max(0.1, timeout))
        try:
            await call.write(pb.LeaseKeepAliveRequest(ID=lease_id))
            resp = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise _etcd_error(exc) from None
        finally:
            call.cancel()
        if not isinstance(resp, pb.LeaseKeepAliveResponse) or resp.TTL <= 0:
            raise errors.LeaseNotFound()
        return int(resp.TTL)

    async def time_to_live(
        self, req: pb.LeaseTimeToLiveRequest, timeout: float
    ) -> pb.LeaseTimeToLiveResponse:
        try:
            resp: pb.LeaseTimeToLiveResponse = await self._stub().LeaseTimeToLive(
                req, timeout=max(0.1, timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise _etcd_error(exc) from None
        resp.ClearField("header")  # the answering member fills in its own
        return resp

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)


def _etcd_error(exc: grpc.aio.AioRpcError) -> errors.EtcdError:
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.Timeout()  # the leader is unreachable or slow: retryable for a client
    return errors.from_grpc_status(exc.code(), exc.details() or "")
