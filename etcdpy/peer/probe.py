"""Round trips to every peer, for etcd_network_peer_round_trip_time_seconds (etcd's rafthttp
prober, github.com/xiang90/probing).

As etcd does: each peer is probed every 4 s (its ConnReadTimeout less a second) on a connection
of its own, and a smoothed round-trip time is kept (srtt = 7/8 srtt + 1/8 rtt, starting from 0,
so the first reports are low, as etcd's are). A monitor reports the smoothed value into the
histogram 5 s after the peer is added, then every 30 s while the peer answers and every 5 s
while it does not; each report also warns when the peer is unreachable ("prober detected
unhealthy status") or when its clock is more than a second away ("prober found high clock
drift"). etcd runs two probers per peer (one per round tripper) and so reports twice per
interval; we probe and report once.

The probes run off the raft path (their own connection and task), and cost one small frame each
way per peer every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import structlog

from etcdpy.peer.transport import PeerTransport, ping

if TYPE_CHECKING:
    from etcdpy.observability.metrics import PeerStats

log = structlog.get_logger(__name__)

PROBE_INTERVAL: Final = 4.0  # etcd's proberInterval (ConnReadTimeout - 1 s)
PROBE_TIMEOUT: Final = 5.0  # etcd's ConnReadTimeout
FIRST_REPORT: Final = 5.0  # statusErrorInterval: the first report comes early
HEALTHY_REPORT: Final = 30.0  # statusMonitoringInterval
UNHEALTHY_REPORT: Final = 5.0  # statusErrorInterval
SRTT_WEIGHT: Final = 0.125  # probing's alpha
MAX_CLOCK_DRIFT: Final = 1.0


@dataclass(slots=True)
class ProbeStatus:
    """What the probes of one peer found (probing.Status)."""

    srtt: float = 0.0
    total: int = 0
    loss: int = 0
    healthy: bool = False
    error: str = ""
    clock_diff: float = 0.0

    def record(self, rtt: float, remote_unix: float, now_unix: float) -> None:
        self.total += 1
        self.healthy = True
        self.srtt = (1 - SRTT_WEIGHT) * self.srtt + SRTT_WEIGHT * rtt
        self.clock_diff = now_unix - remote_unix - self.srtt / 2
        self.error = ""

    def record_failure(self, error: str) -> None:
        self.total += 1
        self.loss += 1
        self.healthy = False
        self.error = error


@dataclass(frozen=True, slots=True)
class ProbeTimings:
    """The intervals above; tests may shorten them."""

    probe: float = PROBE_INTERVAL
    timeout: float = PROBE_TIMEOUT
    first_report: float = FIRST_REPORT
    healthy_report: float = HEALTHY_REPORT
    unhealthy_report: float = UNHEALTHY_REPORT


class PeerProber:
    """Keeps one probing task per peer of ``transport`` (peers come and go with membership)."""

    def __init__(
        self,
        transport: PeerTransport,
        stats: PeerStats | None,
        timings: ProbeTimings | None = None,
    ) -> None:
        self._transport = transport
        self._stats = stats
        self._timings = timings or ProbeTimings()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self.status: dict[int, ProbeStatus] = {}

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._follow_peers(), name="peer-prober")

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _follow_peers(self) -> None:
        while True:
            current = set(self._transport.peer_ids())
            for member_id in [m for m in self._tasks if m not in current]:
                self._tasks.pop(member_id).cancel()
                self.status.pop(member_id, None)
            for member_id in sorted(current - self._tasks.keys()):
                status = self.status[member_id] = ProbeStatus()
                self._tasks[member_id] = asyncio.create_task(
                    self._probe(member_id, status), name=f"probe-{member_id:x}"
                )
            await asyncio.sleep(self._timings.probe)

    async def _probe(self, member_id: int, status: ProbeStatus) -> None:
        t = self._timings
        clock = time.monotonic
        next_probe = clock() + t.probe
        next_report = clock() + t.first_report
        try:
            while True:
                await asyncio.sleep(max(0.0, min(next_probe, next_report) - clock()))
                if clock() >= next_probe:
                    next_probe += t.probe
                    await self._round_trip(member_id, status)
                if clock() >= next_report:
                    self._report(member_id, status)
                    interval = t.healthy_report if status.healthy else t.unhealthy_report
                    next_report = clock() + interval
        finally:
            self._close(member_id)

    async def _round_trip(self, member_id: int, status: ProbeStatus) -> None:
        """One probe, on the peer's probe connection (dialled again after a failure)."""
        started = time.perf_counter()
        try:
            conn = self._conns.get(member_id)
            if conn is None:
                conn = await self._transport.open_probe(member_id)
                if conn is None:
                    return  # no longer a peer: the supervisor cancels us
                self._conns[member_id] = conn
            remote_ns = await asyncio.wait_for(ping(*conn), self._timings.timeout)
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            status.record_failure(repr(exc))
            self._close(member_id)
            return
        status.record(time.perf_counter() - started, remote_ns / 1e9, time.time())

    def _close(self, member_id: int) -> None:
        conn = self._conns.pop(member_id, None)
        if conn is not None:
            conn[1].close()

    def _report(self, member_id: int, status: ProbeStatus) -> None:
        peer = f"{member_id:x}"
        if not status.healthy:
            log.warning(
                "prober detected unhealthy status",
                remote_peer_id=peer,
                rtt=f"{status.srtt:.6f}s",
                error=status.error,
            )
        if status.clock_diff > MAX_CLOCK_DRIFT:
            log.warning(
                "prober found high clock drift",
                remote_peer_id=peer,
                clock_drift=f"{status.clock_diff:.3f}s",
                rtt=f"{status.srtt:.6f}s",
            )
        if self._stats is not None:
            self._stats.rtt(peer, status.srtt)
