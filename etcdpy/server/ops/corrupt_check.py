"""The leader's periodic corruption check (--experimental-corrupt-check-time), as etcd 3.4's.

Every period the leader hashes its key space (HashKV at its current revision), asks every
other member for HashKV at that revision (over their client URLs), confirms it is still the
leader with a linearizable read, hashes again, and raises the CORRUPT alarm (member id 0: which
side is wrong is not known) when:

- its own two hashes differ at the same revision and compact revision;
- a member reports a revision or compact revision beyond the leader's;
- a member with the leader's compact revision reports a different hash.

A member that does not answer is skipped. While CORRUPT is active every member refuses
requests (etcdpy.server.ops.alarms), until an operator disarms it.

The initial check (--experimental-initial-corrupt-check, etcd's CheckInitialHashKV) runs once,
when a member restarts on an existing data dir, before it serves peers or clients: it asks
every peer for HashKV at its own revision (over the peer URLs, as etcd asks ``/members/hashkv``)
and refuses to start when a peer with the same compact revision has another hash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import structlog

from etcdpy import errors
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.server.ops.alarms import ACTIVATE, CORRUPT

log = structlog.get_logger(__name__)

PEER_TIMEOUT_SECONDS = 5.0

# Peer RPC answers of the initial check that are not a hash (etcd's rpctypes errors).
FUTURE_REV = "future"
COMPACTED = "compacted"


class InitialCorruption(Exception):
    """A peer has another hash at this member's revision: the member must not start."""


# (hash, revision, compact revision) of the key space up to a revision (0: the current one).
HashKV = Callable[[int], tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class HashAt:
    hash: int
    revision: int
    compact_revision: int


def judge(first: HashAt, second: HashAt, peers: Sequence[tuple[int, HashAt]]) -> list[str]:
    """The reasons to raise CORRUPT (empty: all agree). ``first`` and ``second`` are the
    leader's hashes before and after asking ``peers`` (member id, its answer)."""
    reasons: list[str] = []
    if (
        first.hash != second.hash
        and first.revision == second.revision
        and first.compact_revision == second.compact_revision
    ):
        reasons.append(f"the leader's own hash changed at revision {first.revision}")
    for member, got in peers:
        if got.revision > second.revision:
            reasons.append(
                f"member {member:x} is at revision {got.revision}, beyond the leader's "
                f"{second.revision}"
            )
        if got.compact_revision > second.compact_revision:
            reasons.append(
                f"member {member:x} compacted at {got.compact_revision}, beyond the leader's "
                f"{second.compact_revision}"
            )
        if got.compact_revision == first.compact_revision and got.hash != first.hash:
            reasons.append(
                f"member {member:x} has hash {got.hash} at revision {first.revision}, "
                f"the leader {first.hash}"
            )
    return reasons


def _target(url: str) -> str:
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    return url


@dataclass(frozen=True, slots=True)
class CheckedMember:
    """What the periodic check needs of its member (the wiring in run.py fills it from the
    EtcdServer), so that this module does not import the server."""

    member_id: int
    is_leader: Callable[[], bool]
    hash_kv: HashKV
    peer_client_urls: Callable[[], list[tuple[int, list[str]]]]  # (member id, URLs) of others
    confirm_leader: Callable[[], Awaitable[None]]  # a linearizable read
    alarm: Callable[[pb.AlarmRequest], Awaitable[object]]


class CorruptionChecker:
    def __init__(self, member: CheckedMember, period: float) -> None:
        self._member = member
        self._period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._period > 0:
            self._task = asyncio.create_task(self._run(), name="corrupt-check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                await self.check_once()
            except errors.EtcdError as exc:
                log.warning("corruption check failed", error=exc.message)

    def _local(self) -> HashAt:
        h, rev, crev = self._member.hash_kv(0)
        return HashAt(h, rev, crev)

    async def check_once(self) -> list[str]:
        """One round; returns the reasons found (and raises the alarm for them)."""
        member = self._member
        if not member.is_leader():
            return []
        first = self._local()
        peers = await self._ask_peers(first.revision)
        await member.confirm_leader()
        second = self._local()
        reasons = judge(first, second, peers)
        for reason in reasons:
            log.warning("found data inconsistency", reason=reason)
        if reasons:
            await member.alarm(
                pb.AlarmRequest(action=ACTIVATE, memberID=0, alarm=CORRUPT)  # type: ignore[arg-type]
            )
        else:
            log.info("finished peer corruption check", number_of_peers_checked=len(peers))
        return reasons

    async def _ask_peers(self, revision: int) -> list[tuple[int, HashAt]]:
        asks = [
            self._ask(member_id, urls, revision)
            for member_id, urls in self._member.peer_client_urls()
            if urls
        ]
        answers = await asyncio.gather(*asks)
        return [a for a in answers if a is not None]

    async def _ask(self, member: int, urls: list[str], revision: int) -> tuple[int, HashAt] | None:
        for url in urls:
            async with grpc.aio.insecure_channel(_target(url)) as channel:
                stub = rpc_pb2_grpc.MaintenanceStub(channel)
                try:
                    resp = await stub.HashKV(
                        pb.HashKVRequest(revision=revision), timeout=PEER_TIMEOUT_SECONDS
                    )
                except grpc.aio.AioRpcError as exc:
                    log.warning(
                        "cannot fetch hash from member",
                        member=f"{member:x}",
                        url=url,
                        error=exc.details(),
                    )
                    continue
                return member, HashAt(resp.hash, resp.header.revision, resp.compact_revision)
        return None


def answer_peer_hash_kv(hash_kv: HashKV, member_id: int, revision: int) -> dict[str, object]:
    """A peer's answer to the initial check's question (the peer transport's ``hashkv`` op)."""
    try:
        h, rev, crev = hash_kv(revision)
    except errors.FutureRev:
        return {"error": FUTURE_REV}
    except errors.Compacted:
        return {"error": COMPACTED}
    return {"member_id": member_id, "hash": h, "revision": rev, "compact_revision": crev}


class PeerAsker(Protocol):
    async def __call__(self, urls: Sequence[str], request: dict[str, object]) -> dict[str, Any]:
        """The first answer of the member at ``urls``; ConnectionError if none answers."""
        ...


async def check_initial_hash_kv(
    member_id: int,
    local: HashAt,
    peers: Sequence[tuple[int, Sequence[str]]],
    ask: PeerAsker,
    timeout: float,
) -> None:
    """etcd's CheckInitialHashKV: raises InitialCorruption on a mismatch, with etcd's lines."""
    me = f"{member_id:016x}"
    log.info(
        "starting initial corruption check", **{"local-member-id": me, "timeout": f"{timeout}s"}
    )
    local_fields = {
        "local-member-id": me,
        "local-member-revision": local.revision,
        "local-member-compact-revision": local.compact_revision,
        "local-member-hash": local.hash,
    }
    mismatch = 0
    for peer_id, urls in peers:
        if not urls:
            continue
        peer_fields = {
            **local_fields,
            "remote-peer-id": f"{peer_id:016x}",
            "remote-peer-endpoints": list(urls),
        }
        try:
            answer = await ask(urls, {"op": "hashkv", "revision": local.revision})
        except ConnectionError as exc:
            log.warning(
                "failed hash kv request",
                **peer_fields,
                **{"requested-revision": local.revision, "error": str(exc)},
            )
            continue
        error = answer.get("error")
        if error == FUTURE_REV:
            log.warning("cannot fetch hash from slow remote peer", **peer_fields)
            continue
        if error == COMPACTED:
            log.warning("cannot fetch hash from remote peer; local member is behind", **peer_fields)
            continue
        if error is not None or "hash" not in answer:
            log.warning("failed hash kv request", error=str(error), **peer_fields)
            continue
        got = HashAt(int(answer["hash"]), int(answer["revision"]), int(answer["compact_revision"]))
        fields = {
            **peer_fields,
            "remote-peer-revision": got.revision,
            "remote-peer-compact-revision": got.compact_revision,
            "remote-peer-hash": got.hash,
        }
        if got.hash == local.hash:
            continue
        if got.compact_revision == local.compact_revision:
            log.warning("found different hash values from remote peer", **fields)
            mismatch += 1
        else:
            log.warning("found different compact revision values from remote peer", **fields)
    if mismatch:
        raise InitialCorruption(f"{me} found data inconsistency with peers")
    log.info("initial corruption checking passed; no corruption", **{"local-member-id": me})
