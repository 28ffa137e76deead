"""The peer prober (etcd's rafthttp probing): round trips over the peer transport feed
etcd_network_peer_round_trip_time_seconds{To}; a peer that stops answering turns unhealthy;
partitions (the fault file) block probes as they block raft traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from etcdpy.observability.metrics import PEER_RTT_BUCKETS, PeerStats
from etcdpy.peer.probe import PeerProber, ProbeStatus, ProbeTimings
from etcdpy.peer.transport import PeerTransport
from etcdpy.testing.faults import PeerFaultFile
from etcdpy.testing.processes import free_port
from tests.peer.test_transport import B, _pair

FAST = ProbeTimings(probe=0.05, timeout=0.5, first_report=0.12, healthy_report=0.12)


async def _wait(check: object, timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


def test_smoothed_rtt_starts_from_zero_as_etcds() -> None:
    status = ProbeStatus()
    status.record(0.008, remote_unix=100.0, now_unix=100.0)
    assert status.srtt == pytest.approx(0.001)  # 1/8 of the first round trip
    status.record(0.008, remote_unix=100.0, now_unix=100.0)
    assert status.srtt == pytest.approx(0.001 * 7 / 8 + 0.001)
    assert status.healthy and status.total == 2
    status.record_failure("refused")
    assert not status.healthy and status.loss == 1 and status.error == "refused"


def test_round_trips_to_a_peer_fill_its_histogram(tmp_path: Path) -> None:
    async def run() -> None:
        ta, _ra, tb, _rb, _url = await _pair(tmp_path)
        stats = PeerStats()
        prober = PeerProber(ta, stats, FAST)
        prober.start()
        try:
            await _wait(lambda: f"{B:x}" in stats.round_trip)
            hist = stats.round_trip[f"{B:x}"]
            assert hist.bounds == PEER_RTT_BUCKETS
            assert sum(hist.counts) >= 1
            assert prober.status[B].healthy
            assert prober.status[B].srtt > 0
        finally:
            await prober.stop()
            await ta.stop()
            await tb.stop()

    asyncio.run(run())


def test_a_silent_peer_is_unhealthy_and_a_removed_one_is_no_longer_probed(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        ta, _ra, tb, _rb, _url = await _pair(tmp_path)
        stats = PeerStats()
        prober = PeerProber(ta, stats, FAST)
        prober.start()
        try:
            await _wait(lambda: B in prober.status and prober.status[B].healthy)
            await tb.stop()
            await _wait(lambda: not prober.status[B].healthy)
            assert prober.status[B].loss >= 1
            ta.remove_peer(B)
            await _wait(lambda: B not in prober.status)
        finally:
            await prober.stop()
            await ta.stop()

    asyncio.run(run())


def test_a_partition_blocks_probes(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.write_text("a\n")  # B cannot hear from A (id 0xA)

    async def run() -> None:
        tb = PeerTransport(B, 0xC1, _Null(), faults=PeerFaultFile(str(faults)))
        url_b = f"http://127.0.0.1:{free_port()}"
        await tb.listen([url_b])
        ta = PeerTransport(0xA, 0xC1, _Null())
        await ta.listen([f"http://127.0.0.1:{free_port()}"])
        ta.set_peer(B, [url_b])
        prober = PeerProber(ta, PeerStats(), ProbeTimings(probe=0.05, timeout=0.2))
        prober.start()
        try:
            await _wait(lambda: B in prober.status and prober.status[B].loss >= 1)
            assert not prober.status[B].healthy
        finally:
            await prober.stop()
            await ta.stop()
            await tb.stop()

    asyncio.run(run())


class _Null:
    """A peer handler that ignores everything (only probes are exchanged)."""

    def on_messages(self, messages: object) -> None: ...

    def report_unreachable(self, member_id: int) -> None: ...

    def report_snapshot(self, member_id: int, status: object) -> None: ...

    async def snapshot_db(self) -> Path:
        raise OSError("no snapshots here")

    def snapshot_dir(self) -> Path:
        return Path("/nonexistent")

    def on_snapshot(self, message: object, db_path: Path) -> None: ...

    def handle_rpc(self, request: dict[str, object]) -> dict[str, object]:
        return {}

    def is_removed(self, member_id: int) -> bool:
        return False

    def on_removed(self) -> None: ...
