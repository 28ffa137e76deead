"""The peer transport between two members in one event loop: batches, reconnects, snapshots,
rejection of removed members, request/response, and the fault file."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from etcdpy.peer.transport import PeerTransport, peer_rpc
from etcdpy.raft.types import (
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
)
from etcdpy.testing.processes import free_port

A, B = 0xA, 0xB
CLUSTER = 0xC1


class Recorder:
    def __init__(self, tmp: Path, removed: set[int] | None = None) -> None:
        self.tmp = tmp
        self.messages: list[Message] = []
        self.unreachable: list[int] = []
        self.snap_status: list[tuple[int, SnapshotStatus]] = []
        self.snapshots: list[tuple[Message, bytes]] = []
        self.removed = removed or set()
        self.told_removed = False
        self.arrived = asyncio.Event()

    def on_messages(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)
        self.arrived.set()

    def report_unreachable(self, member_id: int) -> None:
        self.unreachable.append(member_id)

    def report_snapshot(self, member_id: int, status: SnapshotStatus) -> None:
        self.snap_status.append((member_id, status))
        self.arrived.set()

    async def snapshot_db(self) -> Path:
        path = self.tmp / "send.db"
        path.write_bytes(b"backend-bytes" * 300_000)  # several chunks
        return path

    def snapshot_dir(self) -> Path:
        return self.tmp

    def on_snapshot(self, message: Message, db_path: Path) -> None:
        self.snapshots.append((message, db_path.read_bytes()))
        self.arrived.set()

    def handle_rpc(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"echo": request}

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def on_removed(self) -> None:
        self.told_removed = True
        self.arrived.set()


async def _until(check: Any, event: asyncio.Event, timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not check():
            event.clear()
            await event.wait()

    await asyncio.wait_for(loop(), timeout)


def _app(to: int, index: int) -> Message:
    return Message(
        MessageType.APP, to=to, from_=A, term=2, index=index, entries=(Entry(2, index + 1),)
    )


async def _pair(
    tmp: Path, removed: set[int] | None = None, url_b: str = ""
) -> tuple[PeerTransport, Recorder, PeerTransport, Recorder, str]:
    url_b = url_b or f"http://127.0.0.1:{free_port()}"
    rec_a = Recorder(tmp / "a")
    rec_b = Recorder(tmp / "b", removed)
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    ta = PeerTransport(A, CLUSTER, rec_a)
    tb = PeerTransport(B, CLUSTER, rec_b)
    await ta.listen([f"http://127.0.0.1:{free_port()}"])
    await tb.listen([url_b])
    ta.set_peer(B, [url_b])
    return ta, rec_a, tb, rec_b, url_b


def test_messages_arrive_in_order_in_batches(tmp_path: Path) -> None:
    async def run() -> None:
        ta, _ra, tb, rb, _url = await _pair(tmp_path)
        try:
            for i in range(50):
                ta.send([_app(B, i), _app(B, 1000 + i)])
            await _until(lambda: len(rb.messages) == 100, rb.arrived)
            sent = [m.index for i in range(50) for m in (_app(B, i), _app(B, 1000 + i))]
            assert [m.index for m in rb.messages] == sent
            assert ta.active_since(B) is not None
        finally:
            await ta.stop()
            await tb.stop()

    asyncio.run(run())


def test_unix_peer_urls_use_the_socket_file_host_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd's unix://host:port: the socket is the file "host:port" in the working directory;
    anything already there is replaced, and the socket is removed on stop."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Peer.sock:7").write_text("stale")

    async def run() -> None:
        ta, _ra, tb, rb, url = await _pair(tmp_path, url_b="unix://Peer.sock:7")
        try:
            assert (tmp_path / "Peer.sock:7").is_socket()
            for i in range(10):
                ta.send([_app(B, i)])
            await _until(lambda: len(rb.messages) == 10, rb.arrived)
            assert await peer_rpc([url], {"op": "x"}) == {"echo": {"op": "x"}}
        finally:
            await ta.stop()
            await tb.stop()
        assert not (tmp_path / "Peer.sock:7").exists()

    asyncio.run(run())


def test_a_peer_that_comes_back_is_redialled(tmp_path: Path) -> None:
    async def run() -> None:
        ta, ra, tb, rb, url_b = await _pair(tmp_path)
        try:
            ta.send([_app(B, 1)])
            await _until(lambda: len(rb.messages) == 1, rb.arrived)
            await tb.stop()
            ta.send([_app(B, 2)])  # lost with the connection: raft retransmits
            for _ in range(40):
                if ta.active_since(B) is None:
                    break
                await asyncio.sleep(0.05)
            assert ta.active_since(B) is None
            assert B in ra.unreachable
            tb2 = PeerTransport(B, CLUSTER, rb)
            await tb2.listen([url_b])
            try:
                for _ in range(100):  # backoff is at most a second
                    ta.send([_app(B, 3)])
                    if any(m.index == 3 for m in rb.messages):
                        break
                    await asyncio.sleep(0.05)
                assert any(m.index == 3 for m in rb.messages)
            finally:
                await tb2.stop()
        finally:
            await ta.stop()

    asyncio.run(run())


def test_snapshot_is_streamed_with_the_backend_file(tmp_path: Path) -> None:
    async def run() -> None:
        ta, ra, tb, rb, _url = await _pair(tmp_path)
        try:
            snap = Snapshot(b"", SnapshotMetadata(index=77, term=3))
            ta.send([Message(MessageType.SNAP, to=B, from_=A, term=3, snapshot=snap)])
            await _until(lambda: bool(ra.snap_status), ra.arrived, timeout=10)
            assert ra.snap_status == [(B, SnapshotStatus.FINISH)]
            [(message, data)] = rb.snapshots
            assert message.snapshot is not None and message.snapshot.metadata.index == 77
            assert data == b"backend-bytes" * 300_000
            assert not (tmp_path / "a" / "send.db").exists()  # the sender's copy is deleted
        finally:
            await ta.stop()
            await tb.stop()

    asyncio.run(run())


def test_a_removed_member_is_told_and_its_messages_are_dropped(tmp_path: Path) -> None:
    async def run() -> None:
        ta, ra, tb, rb, _url = await _pair(tmp_path, removed={A})
        try:
            ta.send([_app(B, 1)])
            await _until(lambda: ra.told_removed, ra.arrived)
            assert rb.messages == []
        finally:
            await ta.stop()
            await tb.stop()

    asyncio.run(run())


def test_peer_rpc_gets_an_answer(tmp_path: Path) -> None:
    async def run() -> None:
        ta, _ra, tb, _rb, url_b = await _pair(tmp_path)
        try:
            dead = f"http://127.0.0.1:{free_port()}"
            answer = await peer_rpc([dead, url_b], {"op": "members"})
            assert answer == {"echo": {"op": "members"}}
            with pytest.raises(ConnectionError):
                await peer_rpc([dead], {"op": "members"}, timeout=1.0)
        finally:
            await ta.stop()
            await tb.stop()

    asyncio.run(run())
